"""Bulk and windowed history through the real in-process server (ingest, projector, api)."""

from __future__ import annotations

import math
import uuid
from typing import Any

import aiohttp
import msgpack
import numpy as np
import pytest

from runstream.api.native import downsample as ds

V1 = "/api/runstream/v1"


async def post_events(
    http: aiohttp.ClientSession, url: str, events: list[dict[str, Any]]
) -> dict[str, Any]:
    async with http.post(
        f"{url}{V1}/events",
        data=msgpack.packb({"events": events}, use_bin_type=True),
        params={"wait": "1"},
        headers={"Content-Type": "application/msgpack"},
    ) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return body  # type: ignore[no-any-return]


def series(key: str, steps: np.ndarray, values: np.ndarray) -> dict[str, Any]:
    return {
        "key": key,
        "steps": steps.astype("<i8").tobytes(),
        "timestamps": (steps * 2 + 1_700_000_000_000).astype("<i8").tobytes(),
        "values": values.astype("<f8").tobytes(),
    }


async def create_run(http: aiohttp.ClientSession, url: str) -> str:
    run_id = uuid.uuid4().hex
    await post_events(
        http,
        url,
        [
            {
                "type": "run_created",
                "run_id": run_id,
                "experiment_id": "0",
                "user_id": "t",
                "run_name": "r",
                "start_time": 1,
                "artifact_uri": "",
                "tags": [],
            }
        ],
    )
    return run_id


async def log(
    http: aiohttp.ClientSession, url: str, run_id: str, key: str, steps: np.ndarray, v: np.ndarray
) -> None:
    # Several entries per series so that tail fills and new chunks both occur.
    for part in np.array_split(np.arange(len(v)), 3):
        if len(part):
            await post_events(
                http,
                url,
                [
                    {
                        "type": "metrics_logged",
                        "run_id": run_id,
                        "series": [series(key, steps[part], v[part])],
                    }
                ],
            )


async def history(http: aiohttp.ClientSession, url: str, run_id: str, **params: Any) -> ds.Points:
    async with http.get(
        f"{url}{V1}/runs/{run_id}/history",
        params={k: str(v) for k, v in params.items()},
        headers={"Accept": "application/msgpack"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        body = msgpack.unpackb(await resp.read(), raw=False)
    return ds.Points.from_packed(body["steps"], body["timestamps"], body["values"])


def same(a: ds.Points, b: ds.Points) -> bool:
    return (
        a.steps.tolist() == b.steps.tolist()
        and a.timestamps.tolist() == b.timestamps.tolist()
        and a.values.astype("<f8").tobytes() == b.values.astype("<f8").tobytes()
    )


async def test_bulk_history_is_exact_in_json_and_msgpack(
    server: str, http: aiohttp.ClientSession
) -> None:
    rng = np.random.default_rng(0)
    runs = [await create_run(http, server) for _ in range(3)]
    logged: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for i, run_id in enumerate(runs):
        for key in ("loss", "acc"):
            n = 2_500 + 700 * i
            steps = np.arange(n, dtype=np.int64) // 2  # duplicate steps
            values = rng.standard_normal(n)
            values[::97] = math.nan
            values[5] = math.inf
            await log(http, server, run_id, key, steps, values)
            logged[(run_id, key)] = (steps, values)
    wanted = [{"run_id": r, "key": k} for r, k in logged] + [{"run_id": runs[0], "key": "none"}]

    async with http.post(
        f"{server}{V1}/history/bulk",
        json={"series": wanted},
        headers={"Accept": "application/msgpack"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        packed = msgpack.unpackb(await resp.read(), raw=False)["series"]
    async with http.post(f"{server}{V1}/history/bulk", json={"series": wanted}) as resp:
        assert resp.status == 200
        as_json = (await resp.json())["series"]
    assert [(s["run_id"], s["key"]) for s in packed] == [(w["run_id"], w["key"]) for w in wanted]
    for got, js, want in zip(packed, as_json, wanted, strict=True):
        steps, values = logged.get((want["run_id"], want["key"]), (np.empty(0), np.empty(0)))
        assert got["steps"] == steps.astype("<i8").tobytes()
        assert got["values"] == values.astype("<f8").tobytes()
        assert js["steps"] == steps.tolist()
        assert [float(v) for v in js["values"]] == pytest.approx(values.tolist(), nan_ok=True)

    # Downsampled and windowed: the same answer as the single-series route and as the
    # pure function on the full series.
    body = {"series": wanted[:-1], "points": 100, "start_step": 100, "end_step": 1500}
    async with http.post(
        f"{server}{V1}/history/bulk", json=body, headers={"Accept": "application/msgpack"}
    ) as resp:
        assert resp.status == 200
        down = msgpack.unpackb(await resp.read(), raw=False)["series"]
    for got, want in zip(down, wanted, strict=False):
        pts = ds.Points.from_packed(got["steps"], got["timestamps"], got["values"])
        single = await history(
            http, server, want["run_id"], key=want["key"], points=100, start_step=100, end_step=1500
        )
        assert same(pts, single)
        assert len(pts) <= 100
        steps, values = logged[(want["run_id"], want["key"])]
        full = ds.Points(steps, steps * 2 + 1_700_000_000_000, values)
        inside = full.take(ds.in_range(full.steps, 100, 1500))
        assert (pts.steps[0], pts.steps[-1]) == (inside.steps[0], inside.steps[-1])
        assert np.nanmax(inside.values) in pts.values
        assert np.nanmin(inside.values) in pts.values


async def test_bulk_errors(server: str, http: aiohttp.ClientSession) -> None:
    run_id = await create_run(http, server)
    for body, status in (
        ({"series": [{"run_id": "f" * 32, "key": "k"}]}, 404),
        ({"series": [{"run_id": run_id}]}, 400),
        ({"series": "x"}, 400),
        ({"series": [], "points": 1}, 400),
        ({"series": [], "start_step": 5, "end_step": 4}, 400),
    ):
        async with http.post(f"{server}{V1}/history/bulk", json=body) as resp:
            assert resp.status == status, body
            assert "error_code" in await resp.json()
    async with http.get(
        f"{server}{V1}/runs/{run_id}/history", params={"key": "k", "points": "x"}
    ) as resp:
        assert resp.status == 400
