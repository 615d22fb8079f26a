"""Many metric histories in one request, whole or downsampled, and windowed single histories.

``POST /api/runstream/v1/history/bulk`` with
``{"series": [{"run_id", "key"}, ...], "points"?: N, "start_step"?: s, "end_step"?: e}``
answers ``{"series": [{"run_id", "key", "steps", "timestamps", "values"}, ...]}`` in request
order, as JSON or (``Accept: application/msgpack``) msgpack with packed little-endian columns.
``GET .../runs/{run_id}/history?key=&points=&start_step=&end_step=`` is the same read for one
series, in the history route's format.

Whole histories: one query returns every chunk of every requested series (chunks outside the
step range are skipped by their summaries). Downsampled: one query returns the summaries of
every series (as arrays, one row per series), ``downsample.plan_read`` picks the chunks to
unpack, and one more query fetches those for all series at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import orjson
from aiohttp import web

from runstream.api.native import downsample as ds
from runstream.api.native.history import (
    MSGPACK_CONTENT_TYPE,
    History,
    get_whole_history,
    history_key,
    history_response,
    json_values,
    wants_msgpack,
)
from runstream.api.queries import Executor
from runstream.api.reads import await_token, run_not_found
from runstream.resources import PG_POOL
from runstream.schemas.errors import InvalidParameterValue
from runstream.schemas.validation import invalid_value, missing_value
from runstream.web import read_body

MAX_BULK_SERIES = 1_000
"""Series in one bulk request."""
MAX_BULK_BODY_BYTES = 1 << 20

_I64 = (-(2**63), 2**63 - 1)

_WHOLE = """
SELECT u.i, r.run_id IS NOT NULL AS run_exists, c.steps, c.timestamps, c.vals
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(run_id, key, i)
LEFT JOIN runs r ON r.run_id = u.run_id
LEFT JOIN metric_series s ON s.run_id = u.run_id AND s.key = u.key
LEFT JOIN metric_chunks c ON c.series_id = s.series_id AND c.max_step >= $3 AND c.min_step <= $4
ORDER BY u.i, c.chunk_no
"""

# NULLs become NaN / -1 so that the arrays decode straight into numpy.
_SUMMARIES = """
SELECT u.i, r.run_id IS NOT NULL AS run_exists, s.series_id,
       array_agg(c.chunk_no ORDER BY c.chunk_no) AS chunk_no,
       array_agg(c.n ORDER BY c.chunk_no) AS n,
       array_agg(c.min_step ORDER BY c.chunk_no) AS min_step,
       array_agg(c.max_step ORDER BY c.chunk_no) AS max_step,
       array_agg(COALESCE(c.min_value, 'NaN') ORDER BY c.chunk_no) AS min_value,
       array_agg(COALESCE(c.max_value, 'NaN') ORDER BY c.chunk_no) AS max_value,
       array_agg(COALESCE(c.min_value_pos, -1) ORDER BY c.chunk_no) AS min_pos,
       array_agg(COALESCE(c.max_value_pos, -1) ORDER BY c.chunk_no) AS max_pos,
       array_agg(COALESCE(c.min_value_step, 0) ORDER BY c.chunk_no) AS min_value_step,
       array_agg(COALESCE(c.max_value_step, 0) ORDER BY c.chunk_no) AS max_value_step,
       array_agg(COALESCE(c.min_value_ts, 0) ORDER BY c.chunk_no) AS min_value_ts,
       array_agg(COALESCE(c.max_value_ts, 0) ORDER BY c.chunk_no) AS max_value_ts
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(run_id, key, i)
LEFT JOIN runs r ON r.run_id = u.run_id
LEFT JOIN metric_series s ON s.run_id = u.run_id AND s.key = u.key
LEFT JOIN metric_chunks c ON c.series_id = s.series_id AND c.max_step >= $3 AND c.min_step <= $4
GROUP BY u.i, r.run_id, s.series_id
ORDER BY u.i
"""

_CHUNKS = """
SELECT c.series_id, c.chunk_no, c.steps, c.timestamps, c.vals
FROM unnest($1::bigint[], $2::integer[]) AS u(series_id, chunk_no)
JOIN metric_chunks c ON c.series_id = u.series_id AND c.chunk_no = u.chunk_no
"""

_SUMMARY_COLUMNS = (
    ("n", np.int64),
    ("min_step", np.int64),
    ("max_step", np.int64),
    ("min_value", np.float64),
    ("max_value", np.float64),
    ("min_pos", np.int64),
    ("max_pos", np.int64),
    ("min_value_step", np.int64),
    ("max_value_step", np.int64),
    ("min_value_ts", np.int64),
    ("max_value_ts", np.int64),
)


@dataclass(frozen=True, slots=True)
class Window:
    """What to read of each series: a step range, and at most ``points`` points (or all)."""

    points: int | None = None
    start_step: int | None = None
    end_step: int | None = None

    @property
    def bounds(self) -> tuple[int, int]:
        lo = _I64[0] if self.start_step is None else self.start_step
        hi = _I64[1] if self.end_step is None else self.end_step
        return lo, hi

    @property
    def is_whole(self) -> bool:
        return self.points is None and self.start_step is None and self.end_step is None


def _int_param(name: str, raw: Any, low: int, high: int) -> int:
    if isinstance(raw, bool):
        raise InvalidParameterValue(invalid_value(name, raw))
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidParameterValue(invalid_value(name, raw)) from None
    if isinstance(raw, float) and raw != value:
        raise InvalidParameterValue(invalid_value(name, raw))
    if not low <= value <= high:
        raise InvalidParameterValue(invalid_value(name, raw, f"must be between {low} and {high}"))
    return value


def parse_window(params: Mapping[str, Any]) -> Window:
    """``points``, ``start_step``, ``end_step`` from query parameters or a JSON body."""

    def get(name: str, low: int, high: int) -> int | None:
        raw = params.get(name)
        return None if raw is None or raw == "" else _int_param(name, raw, low, high)

    window = Window(
        points=get("points", ds.MIN_POINTS, ds.MAX_POINTS),
        start_step=get("start_step", *_I64),
        end_step=get("end_step", *_I64),
    )
    if (
        window.start_step is not None
        and window.end_step is not None
        and window.start_step > window.end_step
    ):
        raise InvalidParameterValue(
            invalid_value("end_step", window.end_step, "must not be less than start_step")
        )
    return window


def _summaries(row: Any) -> ds.ChunkSummaries:
    empty = row["chunk_no"] is None or row["chunk_no"][0] is None
    cols: dict[str, Any] = {
        name: np.empty(0, dtype) if empty else np.array(row[name], dtype)
        for name, dtype in _SUMMARY_COLUMNS
    }
    return ds.ChunkSummaries(**cols)


async def read_series(
    db: Executor, series: Sequence[tuple[str, str]], window: Window
) -> list[ds.Points]:
    """Points of each (run_id, key) in ``window``, in request order; 404 for an unknown run."""
    if not series:
        return []
    runs = [s[0] for s in series]
    keys = [s[1] for s in series]
    lo, hi = window.bounds
    if window.points is None:
        return await _read_whole(db, series, window, runs, keys, lo, hi)
    rows = await db.fetch(_SUMMARIES, runs, keys, lo, hi)
    summaries: list[ds.ChunkSummaries] = []
    plans: list[ds.ReadPlan] = []
    wanted_series: list[int] = []
    wanted_chunks: list[int] = []
    for row, (run_id, _) in zip(rows, series, strict=True):
        if not row["run_exists"]:
            raise run_not_found(run_id)
        summ = _summaries(row)
        plan = ds.plan_read(summ, window.points, window.start_step, window.end_step)
        summaries.append(summ)
        plans.append(plan)
        if len(summ):
            numbers = np.array(row["chunk_no"], np.int64)[plan.unpack]
            wanted_series += [row["series_id"]] * len(numbers)
            wanted_chunks += numbers.tolist()
    packed: dict[tuple[int, int], ds.Points] = {}
    if wanted_chunks:
        for r in await db.fetch(_CHUNKS, wanted_series, wanted_chunks):
            packed[(r[0], r[1])] = ds.Points.from_packed(r[2], r[3], r[4])
    out = []
    for row, summ, plan in zip(rows, summaries, plans, strict=True):
        if not len(summ):
            out.append(ds.Points.empty())
            continue
        numbers = row["chunk_no"]
        unpacked = {
            int(i): packed[(row["series_id"], numbers[i])] for i in np.flatnonzero(plan.unpack)
        }
        out.append(
            ds.assemble(summ, plan, unpacked, window.points, window.start_step, window.end_step)
        )
    return out


async def _read_whole(
    db: Executor,
    series: Sequence[tuple[str, str]],
    window: Window,
    runs: list[str],
    keys: list[str],
    lo: int,
    hi: int,
) -> list[ds.Points]:
    rows = await db.fetch(_WHOLE, runs, keys, lo, hi)
    parts: list[tuple[list[bytes], list[bytes], list[bytes]]] = [([], [], []) for _ in series]
    for row in rows:
        i = row[0] - 1
        if not row[1]:
            raise run_not_found(series[i][0])
        if row[2] is not None:
            parts[i][0].append(row[2])
            parts[i][1].append(row[3])
            parts[i][2].append(row[4])
    out = []
    for steps, stamps, values in parts:
        points = ds.Points.from_packed(b"".join(steps), b"".join(stamps), b"".join(values))
        if not window.is_whole:
            points = points.take(ds.in_range(points.steps, window.start_step, window.end_step))
        out.append(points)
    return out


def points_to_history(key: str, points: ds.Points) -> History:
    return History.from_chunks(
        key,
        [points.steps.astype("<i8", copy=False).tobytes()],
        [points.timestamps.astype("<i8", copy=False).tobytes()],
        [points.values.astype("<f8", copy=False).tobytes()],
    )


async def get_history(request: web.Request) -> web.Response:
    """``GET /api/runstream/v1/runs/{run_id}/history?key=<key>``: whole, or windowed and
    downsampled with ``points`` / ``start_step`` / ``end_step``."""
    key = history_key(request)
    if wants_window(request.query):
        return await get_history_window(request, key)
    return await get_whole_history(request, key)


async def get_history_window(request: web.Request, key: str) -> web.Response:
    window = parse_window(request.query)
    await await_token(request)
    run_id = request.match_info["run_id"]
    (points,) = await read_series(request.app[PG_POOL], [(run_id, key)], window)
    return history_response(request, points_to_history(key, points))


def wants_window(query: Mapping[str, str]) -> bool:
    return any(query.get(name) for name in ("points", "start_step", "end_step"))


def parse_bulk_body(body: Any) -> tuple[list[tuple[str, str]], Window]:
    if not isinstance(body, dict):
        raise InvalidParameterValue("Request body must be an object")
    raw = body.get("series")
    if raw is None:
        raise InvalidParameterValue(missing_value("series"))
    if not isinstance(raw, list):
        raise InvalidParameterValue(invalid_value("series", raw, "expected a list"))
    if len(raw) > MAX_BULK_SERIES:
        raise InvalidParameterValue(
            invalid_value("series", len(raw), f"at most {MAX_BULK_SERIES} series per request")
        )
    series = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidParameterValue(invalid_value(f"series[{i}]", item, "expected an object"))
        run_id, key = item.get("run_id"), item.get("key")
        for name, value in (("run_id", run_id), ("key", key)):
            if not isinstance(value, str) or not value:
                raise InvalidParameterValue(missing_value(f"series[{i}].{name}"))
        series.append((str(run_id), str(key)))
    return series, parse_window(body)


def bulk_to_json(series: Sequence[tuple[str, str]], points: Sequence[ds.Points]) -> bytes:
    return orjson.dumps(
        {
            "series": [
                {
                    "run_id": run_id,
                    "key": key,
                    "steps": p.steps,
                    "timestamps": p.timestamps,
                    "values": json_values(p.values),
                }
                for (run_id, key), p in zip(series, points, strict=True)
            ]
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def bulk_to_msgpack(series: Sequence[tuple[str, str]], points: Sequence[ds.Points]) -> bytes:
    packed: bytes = msgpack.packb(
        {
            "series": [
                {
                    "run_id": run_id,
                    "key": key,
                    "steps": p.steps.astype("<i8", copy=False).tobytes(),
                    "timestamps": p.timestamps.astype("<i8", copy=False).tobytes(),
                    "values": p.values.astype("<f8", copy=False).tobytes(),
                }
                for (run_id, key), p in zip(series, points, strict=True)
            ]
        },
        use_bin_type=True,
    )
    return packed


async def post_bulk_history(request: web.Request) -> web.Response:
    """``POST /api/runstream/v1/history/bulk``."""
    raw = await read_body(request, MAX_BULK_BODY_BYTES)
    try:
        if request.content_type in ("application/msgpack", "application/x-msgpack"):
            body = msgpack.unpackb(raw, raw=False) if raw else {}
        else:
            body = orjson.loads(raw) if raw else {}
    except (ValueError, msgpack.UnpackException) as exc:
        raise InvalidParameterValue(f"Request body cannot be parsed: {exc}") from exc
    series, window = parse_bulk_body(body)
    await await_token(request)
    points = await read_series(request.app[PG_POOL], series, window)
    if wants_msgpack(request.headers.get("Accept", "")):
        return web.Response(
            body=bulk_to_msgpack(series, points),
            content_type=MSGPACK_CONTENT_TYPE,
            headers={"Vary": "Accept"},
        )
    return web.Response(
        body=bulk_to_json(series, points),
        content_type="application/json",
        headers={"Vary": "Accept"},
    )
