# One image for every runstream service: `runstream ingest|projector|api` (compose.yaml).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY runstream runstream
COPY schemas schemas
COPY ingest ingest
COPY projector projector
COPY api api
# The runstream wheel and the wheels of its [server] dependencies.
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[server]'

FROM python:3.11-slim
RUN useradd --create-home --uid 1000 runstream
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'runstream[server]' \
    && rm -rf /wheels
USER runstream
WORKDIR /home/runstream
ENV PYTHONUNBUFFERED=1 \
    RUNSTREAM_HOST=0.0.0.0 \
    RUNSTREAM_PORT=5000 \
    RUNSTREAM_HOME=/home/runstream/data
EXPOSE 5000
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=3)"]
ENTRYPOINT ["runstream"]
CMD ["server"]
