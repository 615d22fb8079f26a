"""``Client``: reading runs and metric histories back from a runstream server."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from runstream.client.config import ClientConfig
from runstream.client.transport import MSGPACK, Transport
from runstream.schemas.metrics import (
    column_arrays,
    pack_float64,
    pack_int64,
    unpack_float64,
    unpack_int64,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

API = "/api/runstream/v1"
SEARCH_RUNS = "/api/2.0/mlflow/runs/search"
SEARCH_PAGE = 1000
"""Runs per page of ``search_runs`` (MLflow's server allows up to 50,000)."""


@dataclass(frozen=True, slots=True)
class History:
    """Every point of one metric of one run, in logged order: the SDK's one points type.

    Holds the packed little-endian columns as the server sent them (bit-exact: NaN payloads,
    ±inf, -0.0) and reads them on demand: ``steps``, ``timestamps`` and ``values`` as numpy
    arrays (read-only views, no copy), ``arrays()`` as ``array.array`` without numpy,
    ``points()`` as tuples.
    """

    key: str
    packed_steps: bytes
    """int64 steps, little-endian."""
    packed_timestamps: bytes
    """int64 milliseconds since the epoch, little-endian."""
    packed_values: bytes
    """float64 values, little-endian."""

    @classmethod
    def from_answer(cls, data: Any, key: str) -> History:
        """The history in a server's answer ``{"key", "steps", "timestamps", "values"}``:
        packed ``bin`` columns, or lists of numbers (values may be "NaN"/"Infinity"/...)."""
        if not isinstance(data, dict):
            raise ValueError("history answer is not a map")
        steps, stamps, values = data["steps"], data["timestamps"], data["values"]
        history = cls(
            str(data.get("key", key)),
            steps if isinstance(steps, bytes) else pack_int64(steps),
            stamps if isinstance(stamps, bytes) else pack_int64(stamps),
            values if isinstance(values, bytes) else pack_float64(float(v) for v in values),
        )
        n = len(history.packed_values)
        if n % 8 or len(history.packed_steps) != n or len(history.packed_timestamps) != n:
            raise ValueError("history answer has columns of different lengths")
        return history

    def __len__(self) -> int:
        return len(self.packed_values) // 8

    @property
    def steps(self) -> npt.NDArray[np.int64]:
        return self._columns()[0]

    @property
    def timestamps(self) -> npt.NDArray[np.int64]:
        """Milliseconds since the epoch."""
        return self._columns()[1]

    @property
    def values(self) -> npt.NDArray[np.float64]:
        return self._columns()[2]

    def _columns(
        self,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        return column_arrays(self.packed_steps, self.packed_timestamps, self.packed_values)

    def arrays(self) -> tuple[array[int], array[int], array[float]]:
        """``array('q')`` steps and timestamps, ``array('d')`` values (no numpy needed)."""
        return (
            unpack_int64(self.packed_steps),
            unpack_int64(self.packed_timestamps),
            unpack_float64(self.packed_values),
        )

    def points(self) -> list[tuple[int, int, float]]:
        """``(step, timestamp, value)`` per point as Python numbers."""
        return list(zip(*self.arrays(), strict=True))


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
        return History.from_answer(response.decode(), key)

    def history_columns(
        self, run_id: str, key: str, *, wait_for: str | None = None
    ) -> tuple[Sequence[int], Sequence[int], Sequence[float]]:
        """``history(run_id, key).arrays()``: ``array('q')`` steps and timestamps,
        ``array('d')`` values, without numpy (kept for the code that calls it)."""
        return self.history(run_id, key, wait_for=wait_for).arrays()

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
