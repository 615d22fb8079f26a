"""Benchmarks of runstream, side by side with a real MLflow server (``python -m bench``).

Modules:

- ``harness``: start/stop a ``runstream server`` and an ``mlflow server`` on fresh databases
  (``start_runstream``, ``start_mlflow`` context managers yielding the URL).
- ``write_workloads``: the write path (issue 5): SDK call cost, ingest acceptance,
  end-to-end throughput and latency, the MLflow client's calls against both servers.
- ``report``: results as JSON lines, ``bench/results/<timestamp>.json`` and the tables of
  ``docs/benchmarks.md``.

Another module joins ``python -m bench`` by exposing
``WORKLOADS: dict[str, Callable[[bench.report.Context], Iterable[bench.report.Result]]]``
(see ``bench.__main__``); standalone scripts (``ingest_throughput``, ``search_scale``) still
run on their own.
"""
