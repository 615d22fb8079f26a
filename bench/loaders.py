"""Data written straight into the servers' databases, for reads at sizes an API would take
hours to fill: runstream's read tables (chunks laid out exactly as the projector writes them,
by COPY) and MLflow's schema (``runs``, ``params``, ``tags``, ``metrics``,
``latest_metrics``, ``experiments`` rows as its SQL store writes them).

Pure generators (``training_curve``, ``generate``) and the loaders that COPY them; used by
``bench/read_workloads.py``. Nothing here starts a server.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import numpy as np

from runstream.projector.chunks import CHUNK_COLUMNS, SeriesState, layout
from runstream.projector.plan import MetricAppends

CHUNK_POINTS = 1024
"""Points per chunk, as the projector's default settings lay them out."""
SEARCH_PARAMS = 10
SEARCH_METRICS = 10


def training_curve(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1.0 / np.sqrt(1 + np.arange(n) / 100) + 0.05 * rng.standard_normal(n)


async def load_series(
    conn: asyncpg.Connection,
    run_id: str,
    key: str,
    values: np.ndarray,
    start_ms: int = 1_700_000_000_000,
) -> None:
    """A series laid out exactly as the projector writes it (``chunks.layout``), by COPY."""
    n = len(values)
    steps = np.arange(n, dtype="<i8")
    stamps = (start_ms + steps * 10).astype("<i8")
    series_id = await conn.fetchval(
        "INSERT INTO metric_series (run_id, key) VALUES ($1, $2) RETURNING series_id", run_id, key
    )
    appends = MetricAppends(
        ((run_id, key),), (0, n), steps.tobytes(), stamps.tobytes(), values.astype("<f8").tobytes()
    )
    writes = layout(appends, [SeriesState(series_id)], CHUNK_POINTS)
    await conn.copy_records_to_table(
        "metric_chunks",
        records=[p.record() for p in writes.new_chunks],
        columns=list(CHUNK_COLUMNS),
    )
    s = writes.series[0]
    await conn.execute(
        "UPDATE metric_series SET point_count = $2, chunk_count = $3, tail_count = $4,"
        " latest_step = $5, latest_timestamp = $6, latest_value = $7, min_value = $8,"
        " max_value = $9 WHERE series_id = $1",
        series_id, s.point_count, s.chunk_count, s.tail_count, s.latest_step,
        s.latest_timestamp, s.latest_value, s.min_value, s.max_value,
    )  # fmt: skip


async def insert_run(conn: asyncpg.Connection, run_id: str) -> None:
    await conn.execute(
        "INSERT INTO runs (run_id, experiment_id, status, start_time) VALUES ($1, 0, 'RUNNING', 0)",
        run_id,
    )


async def mlflow_experiment(conn: asyncpg.Connection, name: str) -> int:
    """An experiment row in MLflow's schema (``experiments.experiment_id`` is a serial)."""
    return int(
        await conn.fetchval(
            "INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time,"
            " last_update_time) VALUES ($1, 'x', 'active', 0, 0) RETURNING experiment_id",
            name,
        )
    )


async def insert_mlflow_run(conn: asyncpg.Connection, run_id: str, experiment_id: int = 0) -> None:
    """A run row in MLflow's schema (as ``mlflow db upgrade`` creates it)."""
    await conn.execute(
        "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name,"
        " user_id, status, start_time, source_version, lifecycle_stage, artifact_uri,"
        " experiment_id) VALUES ($1, 'r', 'LOCAL', '', '', 'u', 'RUNNING', 0, '',"
        " 'active', 'x', $2)",
        run_id,
        experiment_id,
    )


async def load_mlflow_series(
    conn: asyncpg.Connection,
    run_id: str,
    key: str,
    values: np.ndarray,
    start_ms: int = 1_700_000_000_000,
) -> None:
    """A series as MLflow's SQL store keeps it: one ``metrics`` row per point (COPY) and
    its ``latest_metrics`` row. The same steps and timestamps as ``load_series``."""
    n = len(values)
    steps = np.arange(n)
    stamps = start_ms + steps * 10
    await conn.copy_records_to_table(
        "metrics",
        records=zip(
            [key] * n, values.tolist(), stamps.tolist(), [run_id] * n, steps.tolist(),
            [False] * n, strict=True,
        ),
        columns=["key", "value", "timestamp", "run_uuid", "step", "is_nan"],
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
        " VALUES ($1, $2, $3, $4, false, $5)",
        key, float(values[-1]), int(stamps[-1]), n - 1, run_id,
    )  # fmt: skip


@dataclass
class SearchData:
    """Rows of a search population, in runstream's column order (see ``populate``)."""

    experiments: dict[int, str]
    runs: list[tuple[Any, ...]] = field(default_factory=list)
    params: list[tuple[Any, ...]] = field(default_factory=list)
    metrics: list[tuple[Any, ...]] = field(default_factory=list)
    tags: list[tuple[Any, ...]] = field(default_factory=list)


def generate(sizes: dict[int, int], seed: int, first: int = 1) -> SearchData:
    """``sizes[experiment_id]`` runs each: 10 params, 10 latest metrics, 3 tags (module doc).

    Run ids are ``f"{n:032x}"`` counting from ``first``."""
    rnd = random.Random(seed)
    data = SearchData({e: f"bench-{e}" for e in sizes})
    runs, params, metrics, tags = data.runs, data.params, data.metrics, data.tags
    n = first - 1
    for experiment_id, count in sizes.items():
        for _ in range(count):
            n += 1
            rid = f"{n:032x}"
            stage = "deleted" if rnd.random() < 0.05 else "active"
            status = "FAILED" if rnd.random() < 0.1 else "FINISHED"
            start = 1_700_000_000_000 + (n - first + 1) * 1000
            runs.append((rid, experiment_id, f"run-{n}", "bench", status, start, start + 500,
                         stage, f"s3://bench/{rid}"))  # fmt: skip
            for k in range(10):
                params.append((rid, experiment_id, f"p{k}", str(rnd.randrange(10))))
                if rnd.random() < 0.97:
                    value = float("nan") if rnd.random() < 0.01 else rnd.random()
                    metrics.append((rid, experiment_id, f"m{k}", 100, 99, start, value))
            tags.append((rid, experiment_id, "mlflow.runName", f"run-{n}"))
            tags.append((rid, experiment_id, "mlflow.user", "bench"))
            tags.append((rid, experiment_id, "team", f"t{rnd.randrange(5)}"))
    return data


async def load_runstream(conn: asyncpg.Connection, data: SearchData) -> None:
    """COPY a population into runstream's tables (migrated like production)."""
    for experiment_id, name in data.experiments.items():
        await conn.execute(
            "INSERT INTO experiments (experiment_id, name, artifact_location, creation_time,"
            " last_update_time) VALUES ($1, $2, '', 0, 0) ON CONFLICT DO NOTHING",
            experiment_id,
            name,
        )
    await conn.copy_records_to_table(
        "runs",
        records=data.runs,
        columns=["run_id", "experiment_id", "name", "user_id", "status", "start_time",
                 "end_time", "lifecycle_stage", "artifact_uri"],
    )  # fmt: skip
    # experiment_id as the projector writes it (migration 0006): the run's experiment.
    keyed = ["run_id", "experiment_id", "key", "value"]
    await conn.copy_records_to_table("params", records=data.params, columns=keyed)
    await conn.copy_records_to_table("run_tags", records=data.tags, columns=keyed)
    await conn.copy_records_to_table(
        "metric_series",
        records=data.metrics,
        columns=["run_id", "experiment_id", "key", "point_count", "latest_step",
                 "latest_timestamp", "latest_value"],
    )  # fmt: skip


async def load_mlflow(conn: asyncpg.Connection, data: SearchData) -> dict[int, int]:
    """COPY the same population into MLflow's tables (a database ``mlflow db upgrade`` or
    ``mlflow server`` migrated): experiments, runs, params, tags, latest_metrics and one
    ``metrics`` row per latest value, NaN stored as MLflow does (0 with ``is_nan``).
    Returns MLflow's experiment id for each of ``data``'s (MLflow's ids are a serial)."""
    ids: dict[int, int] = {}
    for experiment_id, name in data.experiments.items():
        ids[experiment_id] = int(
            await conn.fetchval(
                "INSERT INTO experiments (name, artifact_location, lifecycle_stage,"
                " creation_time, last_update_time) VALUES ($1, 'x', 'active', 0, 0)"
                " RETURNING experiment_id",
                f"{name}-{uuid.uuid4().hex[:8]}",
            )
        )
    await conn.copy_records_to_table(
        "runs",
        records=[(rid, name, "LOCAL", "", "", user, status, start, end, "", stage, uri,
                  ids[e], start if stage == "deleted" else None)
                 for rid, e, name, user, status, start, end, stage, uri in data.runs],
        columns=["run_uuid", "name", "source_type", "source_name", "entry_point_name",
                 "user_id", "status", "start_time", "end_time", "source_version",
                 "lifecycle_stage", "artifact_uri", "experiment_id", "deleted_time"],
    )  # fmt: skip
    keyed = ["run_uuid", "key", "value"]
    await conn.copy_records_to_table(
        "params", records=[(r, k, v) for r, _, k, v in data.params], columns=keyed
    )
    await conn.copy_records_to_table(
        "tags", records=[(r, k, v) for r, _, k, v in data.tags], columns=keyed
    )
    points = [
        (r, k, 0.0 if math.isnan(v) else v, ts, step, math.isnan(v))
        for r, _, k, _count, step, ts, v in data.metrics
    ]
    columns = ["run_uuid", "key", "value", "timestamp", "step", "is_nan"]
    await conn.copy_records_to_table("latest_metrics", records=points, columns=columns)
    await conn.copy_records_to_table("metrics", records=points, columns=columns)
    return ids
