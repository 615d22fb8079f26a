"""``Client``: reading runs and metric histories back from a runstream server."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from runstream.client.config import ClientConfig
from runstream.client.transport import MSGPACK, Transport
from runstream.schemas.metrics import unpack_float64, unpack_int64

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

API = "/api/runstream/v1"
SEARCH_RUNS = "/api/2.0/mlflow/runs/search"
SEARCH_PAGE = 1000
"""Runs per page of ``search_runs`` (MLflow's server allows up to 50,000)."""


@dataclass(frozen=True, slots=True)
class History:
    """Every point of one metric of one run, in logged order, as numpy arrays."""

    key: str
    steps: npt.NDArray[np.int64]
    timestamps: npt.NDArray[np.int64]
    """Milliseconds since the epoch."""
    values: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.values)

    def points(self) -> list[tuple[int, int, float]]:
        """``(step, timestamp, value)`` per point as Python numbers."""
        return list(
            zip(self.steps.tolist(), self.timestamps.tolist(), self.values.tolist(), strict=True)
        )


def _column(data: Any, kind: str) -> Any:
    import numpy as np

    dtype = np.dtype("<i8") if kind == "q" else np.dtype("<f8")
    if isinstance(data, bytes):
        return np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="), copy=False)
    if kind == "q":
        return np.asarray(data, dtype=np.int64)
    return np.asarray([float(v) for v in data], dtype=np.float64)


class Client:
    """Reads from a runstream server: ``Client(url)`` (same URL rules as ``start_run``).

    Thread-safe (requests are serialised on one keep-alive connection). Every read takes an
    optional ``wait_for`` write token (``run.write_token`` after ``run.flush()``): the server
    answers once everything up to that write is applied, so a read sees your own writes.
    """

    def __init__(
        self, url: str | None = None, *, timeout: float = 60.0, token: str | None = None
    ) -> None:
        """``token``: an API token of a server with auth on (else RUNSTREAM_TOKEN, else
        MLflow's ``MLFLOW_TRACKING_TOKEN`` / ``_USERNAME`` and ``_PASSWORD``)."""
        config = ClientConfig.from_env(url, token=token)
        self.url = config.url
        self._transport = Transport(config.url, timeout, dict(config.headers))

    def close(self) -> None:
        """Close the connection."""
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query(self, wait_for: str | None, **more: str) -> dict[str, str]:
        query = dict(more)
        if wait_for:
            query["wait_for"] = wait_for
        return query

    def get_run(self, run_id: str, *, wait_for: str | None = None) -> dict[str, Any]:
        """A run as MLflow's GetRun shows it: ``{"info": {...}, "data": {"params", "tags",
        "metrics"}}`` (latest metric values). Raises ``HTTPError`` (404 for an unknown id)."""
        answer = self._transport.request_json(
            "GET", f"{API}/runs/{quote(run_id, safe='')}", query=self._query(wait_for)
        )
        run: dict[str, Any] = (
            answer["run"] if isinstance(answer, dict) and "run" in answer else answer
        )
        return run

    def history(
        self,
        run_id: str,
        key: str,
        downsample: int | None = None,
        *,
        wait_for: str | None = None,
    ) -> History:
        """Every point of metric ``key`` of run ``run_id``, bit-exact (NaN, ±inf, -0.0).

        Read over the packed msgpack path. ``downsample=N`` asks the server for about N
        points (``?points=N``, min/max buckets for charts); servers that do not support it
        yet answer every point. Use ``History.points()`` for ``(step, timestamp, value)``
        tuples.
        """
        query = self._query(wait_for, key=key)
        if downsample is not None:
            if downsample < 1:
                raise ValueError("downsample must be a positive number of points")
            query["points"] = str(downsample)
        response = self._transport.request(
            "GET", f"{API}/runs/{quote(run_id, safe='')}/history", None, {"Accept": MSGPACK}, query
        )
        if response.status >= 400:
            raise response.error()
        data = response.decode()
        return History(
            str(data.get("key", key)),
            _column(data["steps"], "q"),
            _column(data["timestamps"], "q"),
            _column(data["values"], "d"),
        )

    def history_columns(
        self, run_id: str, key: str, *, wait_for: str | None = None
    ) -> tuple[Sequence[int], Sequence[int], Sequence[float]]:
        """Like ``history`` without numpy: ``array('q')`` steps and timestamps, ``array('d')``
        values."""
        response = self._transport.request(
            "GET",
            f"{API}/runs/{quote(run_id, safe='')}/history",
            None,
            {"Accept": MSGPACK},
            self._query(wait_for, key=key),
        )
        if response.status >= 400:
            raise response.error()
        data = response.decode()
        if not all(isinstance(data[c], bytes) for c in ("steps", "timestamps", "values")):
            raise ValueError("server answered without packed columns")
        return (
            unpack_int64(data["steps"]),
            unpack_int64(data["timestamps"]),
            unpack_float64(data["values"]),
        )

    def search_runs(
        self,
        experiment_ids: Iterable[str] | str,
        filter_string: str = "",
        order_by: Sequence[str] = (),
        max_results: int = 1000,
        *,
        run_view_type: str = "ACTIVE_ONLY",
    ) -> list[dict[str, Any]]:
        """Runs matching an MLflow filter (``"metrics.loss < 0.1 and params.lr = '0.01'"``),
        through MLflow's ``POST /api/2.0/mlflow/runs/search``; pages are followed up to
        ``max_results`` runs. Each run is MLflow's JSON form (``info``, ``data``)."""
        ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
        runs: list[dict[str, Any]] = []
        token: str | None = None
        while len(runs) < max_results:
            payload: dict[str, Any] = {
                "experiment_ids": [str(i) for i in ids],
                "filter": filter_string,
                "order_by": list(order_by),
                "max_results": min(SEARCH_PAGE, max_results - len(runs)),
                "run_view_type": run_view_type,
            }
            if token:
                payload["page_token"] = token
            answer = self._transport.request_json("POST", SEARCH_RUNS, payload)
            runs.extend(answer.get("runs", []))
            token = answer.get("next_page_token")
            if not token:
                break
        return runs[:max_results]
