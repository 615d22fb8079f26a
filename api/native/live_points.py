"""What live streams show, read from PostgreSQL: new points of series from a point offset
on, runs' status rows, and the series of runs. Shared by the hub's fan-out and a stream's
catch-up; no I/O besides the queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from runstream.api.native.downsample import Points
from runstream.api.native.history import json_values
from runstream.api.queries import Executor

SeriesKey = tuple[str, str]
"""(run_id, key)"""

# Points of each (run, key) from an offset on, with each chunk's offset in the series. The
# window sums only summary columns; packed columns are fetched for the chunks needed.
POINTS_AFTER = """
WITH u AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
        WITH ORDINALITY AS u(run_id, key, from_offset, i)
), c AS (
    SELECT u.i, u.from_offset, s.series_id, ch.chunk_no, ch.n,
           sum(ch.n) OVER (PARTITION BY u.i ORDER BY ch.chunk_no) - ch.n AS start_offset
    FROM u
    JOIN metric_series s ON s.run_id = u.run_id AND s.key = u.key
    JOIN metric_chunks ch ON ch.series_id = s.series_id
)
SELECT c.i, c.series_id, c.start_offset, m.steps, m.timestamps, m.vals
FROM c JOIN metric_chunks m ON m.series_id = c.series_id AND m.chunk_no = c.chunk_no
WHERE c.start_offset + c.n > c.from_offset
ORDER BY c.i, c.chunk_no
"""

RUNS = """
SELECT run_id, status, end_time, lifecycle_stage FROM runs WHERE run_id = ANY($1::text[])
"""

SERIES_OF_RUNS = """
SELECT run_id, key, series_id, point_count FROM metric_series
WHERE run_id = ANY($1::text[])
"""


@dataclass(frozen=True, slots=True)
class SeriesPoints:
    run_id: str
    key: str
    series_id: int
    start: int
    """Offset of the first point in the series."""
    points: Points

    @property
    def end(self) -> int:
        return self.start + len(self.points)

    def since(self, offset: int) -> SeriesPoints:
        skip = max(0, offset - self.start)
        if skip == 0:
            return self
        keep = np.arange(skip, len(self.points))
        return SeriesPoints(
            self.run_id, self.key, self.series_id, self.start + skip, self.points.take(keep)
        )

    def event_data(self) -> bytes:
        return orjson.dumps(
            {
                "run_id": self.run_id,
                "key": self.key,
                "offset": self.start,
                "steps": self.points.steps,
                "timestamps": self.points.timestamps,
                "values": json_values(self.points.values),
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )


async def points_after(db: Executor, wanted: Sequence[tuple[str, str, int]]) -> list[SeriesPoints]:
    """Points of each ``(run_id, key, from_offset)`` from that offset to the newest applied
    (series without new points are left out)."""
    if not wanted:
        return []
    rows = await db.fetch(
        POINTS_AFTER, [w[0] for w in wanted], [w[1] for w in wanted], [w[2] for w in wanted]
    )
    grouped: dict[int, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(row)
    out = []
    for i, chunk_rows in grouped.items():
        run_id, key, from_offset = wanted[i - 1]
        first = chunk_rows[0][2]
        points = Points.from_packed(
            b"".join(r[3] for r in chunk_rows),
            b"".join(r[4] for r in chunk_rows),
            b"".join(r[5] for r in chunk_rows),
        )
        sp = SeriesPoints(run_id, key, chunk_rows[0][1], first, points).since(from_offset)
        if len(sp.points):
            out.append(sp)
    return out


def run_json(row: Any) -> dict[str, Any]:
    return {
        "run_id": row["run_id"],
        "status": row["status"],
        "end_time": row["end_time"],
        "lifecycle_stage": row["lifecycle_stage"],
    }
