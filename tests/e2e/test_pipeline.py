"""The whole write path in one process: HTTP → ingest → Redis stream → projector → PostgreSQL → api.

Everything is real: the aiohttp app that ``runstream server`` runs, on a real port, against
the test's own PostgreSQL database and Redis prefix.
"""

from __future__ import annotations

import math
import struct
import time
import uuid
from typing import Any

import aiohttp
import msgpack
import numpy as np
import pytest

from runstream.schemas import constants
from runstream.schemas.metrics import MetricSeries
from runstream.schemas.sharding import WriteToken
from runstream.settings import Settings

EVENTS = "/api/runstream/v1/events"
V1 = "/api/runstream/v1"


async def post_events(
    http: aiohttp.ClientSession, url: str, events: list[dict[str, Any]], **params: str
) -> dict[str, Any]:
    body = msgpack.packb({"events": events}, use_bin_type=True)
    async with http.post(
        url + EVENTS,
        data=body,
        params=params,
        headers={"Content-Type": "application/msgpack"},
    ) as resp:
        payload = await resp.json()
        assert resp.status == 200, payload
        return payload  # type: ignore[no-any-return]


async def get_json(http: aiohttp.ClientSession, url: str, path: str, **params: str) -> Any:
    async with http.get(url + path, params=params) as resp:
        payload = await resp.json()
        assert resp.status == 200, payload
        return payload


async def history(
    http: aiohttp.ClientSession, url: str, run_id: str, key: str, token: str | None = None
) -> dict[str, Any]:
    params = {"key": key}
    if token:
        params["wait_for"] = token
    async with http.get(
        f"{url}{V1}/runs/{run_id}/history",
        params=params,
        headers={"Accept": "application/msgpack"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        return msgpack.unpackb(await resp.read(), raw=False)  # type: ignore[no-any-return]


def series_obj(
    key: str, steps: list[int], stamps: list[int], values: list[float]
) -> dict[str, Any]:
    s = MetricSeries.from_lists(key, steps, stamps, values)
    return {"key": s.key, "steps": s.steps, "timestamps": s.timestamps, "values": s.values}


def new_run_id() -> str:
    return uuid.uuid4().hex


def tags_of(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


async def test_every_event_type_round_trips(server: str, http: aiohttp.ClientSession) -> None:
    created = await post_events(
        http,
        server,
        [
            {
                "type": "experiment_created",
                "experiment_id": "",
                "name": "round trip",
                "artifact_location": "",
                "creation_time": 1_700_000_000_000,
                "tags": [["team", "ml"], ["gone", "soon"]],
            }
        ],
        wait="1",
    )
    experiments = await get_json(http, server, f"{V1}/experiments")
    exp = next(e for e in experiments["experiments"] if e["name"] == "round trip")
    exp_id = exp["experiment_id"]
    assert created["events"] == 1
    run_id = new_run_id()
    nan_bits = struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]
    steps = [0, 1, 1, 2**63 - 1, -(2**63)]
    stamps = [1, 2, 3, 4, 2**62]
    values = [0.5, math.nan, nan_bits, -0.0, math.inf]
    result = await post_events(
        http,
        server,
        [
            {"type": "experiment_renamed", "experiment_id": exp_id, "name": "renamed", "time": 5},
            {"type": "experiment_tag_set", "experiment_id": exp_id, "key": "k", "value": "v"},
            {"type": "experiment_tag_deleted", "experiment_id": exp_id, "key": "gone"},
            {
                "type": "run_created",
                "run_id": run_id,
                "experiment_id": exp_id,
                "user_id": "tester",
                "run_name": "first",
                "start_time": 10,
                "artifact_uri": "",
                "tags": [["mlflow.runName", "first"], ["drop", "me"]],
            },
            {"type": "params_logged", "run_id": run_id, "params": [["lr", "0.1"], ["ü", "ß"]]},
            {"type": "run_tags_set", "run_id": run_id, "tags": [["t", "1"], ["t", "2"]]},
            {"type": "run_tag_deleted", "run_id": run_id, "key": "drop"},
            {
                "type": "metrics_logged",
                "run_id": run_id,
                "series": [series_obj("loss/train", steps, stamps, values)],
            },
            {"type": "run_updated", "run_id": run_id, "status": "FINISHED", "end_time": 20},
        ],
        wait="1",
    )
    assert result["events"] == 9
    assert result["points"] == 5

    exp = (await get_json(http, server, f"{V1}/experiments/{exp_id}"))["experiment"]
    assert exp["name"] == "renamed"
    assert {t["key"]: t["value"] for t in exp["tags"]} == {"team": "ml", "k": "v"}

    run = (await get_json(http, server, f"{V1}/runs/{run_id}"))["run"]
    assert run["info"]["status"] == "FINISHED"
    assert run["info"]["end_time"] == 20
    assert run["info"]["run_name"] == "first"
    assert run["info"]["artifact_uri"].endswith(f"/{run_id}/artifacts")
    assert {p["key"]: p["value"] for p in run["data"]["params"]} == {"lr": "0.1", "ü": "ß"}
    assert tags_of(run) == {"mlflow.runName": "first", "t": "2"}

    got = await history(http, server, run_id, "loss/train")
    assert got["steps"] == struct.pack("<5q", *steps)
    assert got["timestamps"] == struct.pack("<5q", *stamps)
    assert got["values"] == struct.pack("<5d", *values)

    runs = await get_json(http, server, f"{V1}/experiments/{exp_id}/runs")
    assert [r["info"]["run_id"] for r in runs["runs"]] == [run_id]

    await post_events(
        http,
        server,
        [
            {"type": "run_deleted", "run_id": run_id, "time": 30},
            {"type": "experiment_deleted", "experiment_id": exp_id, "time": 31},
        ],
        wait="1",
    )
    run = (await get_json(http, server, f"{V1}/runs/{run_id}"))["run"]
    assert run["info"]["lifecycle_stage"] == "deleted"
    exp = (await get_json(http, server, f"{V1}/experiments/{exp_id}"))["experiment"]
    assert exp["lifecycle_stage"] == "deleted"

    await post_events(
        http,
        server,
        [
            {"type": "experiment_restored", "experiment_id": exp_id, "time": 40},
            {"type": "run_restored", "run_id": run_id, "time": 41},
        ],
        wait="1",
    )
    run = (await get_json(http, server, f"{V1}/runs/{run_id}"))["run"]
    assert run["info"]["lifecycle_stage"] == "active"
    exp = (await get_json(http, server, f"{V1}/experiments/{exp_id}"))["experiment"]
    assert exp["lifecycle_stage"] == "active"


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        (b"\xc1\xc1", "application/msgpack", "msgpack"),
        (b"{not json", "application/json", "JSON"),
        (
            msgpack.packb({"events": [{"type": "nope"}]}),
            "application/msgpack",
            "unknown event type",
        ),
        (
            msgpack.packb({"events": [{"type": "run_deleted", "run_id": "x" * 32, "time": "t"}]}),
            "application/msgpack",
            "time",
        ),
        (
            msgpack.packb(
                {
                    "events": [
                        {
                            "type": "metrics_logged",
                            "run_id": "a" * 32,
                            "series": [
                                {"key": "../x", "steps": [1], "timestamps": [1], "values": [1.0]}
                            ],
                        }
                    ]
                }
            ),
            "application/msgpack",
            "../x",
        ),
    ],
)
async def test_malformed_bodies_are_refused_and_append_nothing(
    server: str,
    http: aiohttp.ClientSession,
    settings: Settings,
    body: bytes,
    content_type: str,
    fragment: str,
) -> None:
    async with http.post(
        server + EVENTS, data=body, headers={"Content-Type": content_type}
    ) as resp:
        assert 400 <= resp.status < 500
        payload = await resp.json()
    assert payload["error_code"] in {"MALFORMED_REQUEST", "INVALID_PARAMETER_VALUE", "BAD_REQUEST"}
    assert fragment in payload["message"]
    import redis.asyncio as aioredis

    client = aioredis.from_url(settings.redis_url or "")
    try:
        for shard in range(settings.shards):
            assert await client.xlen(constants.stream_key(settings.stream_prefix, shard)) == 0
    finally:
        await client.aclose()


@pytest.mark.slow
async def test_a_million_points_across_100_runs_read_back_exactly(
    server: str, http: aiohttp.ClientSession
) -> None:
    """Issue 3's bar: 1,000,000 points over 100 runs, every one read back equal."""
    runs = [new_run_id() for _ in range(100)]
    await post_events(
        http,
        server,
        [
            {
                "type": "run_created",
                "run_id": run_id,
                "experiment_id": "0",
                "user_id": "bench",
                "run_name": f"r{i}",
                "start_time": i,
                "artifact_uri": "",
            }
            for i, run_id in enumerate(runs)
        ],
    )
    rng = np.random.default_rng(7)
    keys = ["loss", "acc"]
    per_series = 1_000_000 // (len(runs) * len(keys))  # 5,000
    batch_steps = 1_000
    sent: dict[tuple[str, str], list[np.ndarray]] = {}
    token = WriteToken(())
    started = time.perf_counter()
    for offset in range(0, per_series, batch_steps):
        events = []
        for run_id in runs:
            series = []
            for key in keys:
                steps = np.arange(offset, offset + batch_steps, dtype="<i8")
                stamps = 1_700_000_000_000 + steps * 10
                values = rng.standard_normal(batch_steps).astype("<f8")
                sent.setdefault((run_id, key), []).append(values)
                series.append(
                    {
                        "key": key,
                        "steps": steps.tobytes(),
                        "timestamps": stamps.astype("<i8").tobytes(),
                        "values": values.tobytes(),
                    }
                )
            events.append({"type": "metrics_logged", "run_id": run_id, "series": series})
        result = await post_events(http, server, events)
        token = token.merged(WriteToken.parse(result["token"]))
    accepted = time.perf_counter() - started
    total = 0
    for run_id in runs:
        for key in keys:
            got = await history(http, server, run_id, key, token=str(token))
            expected_values = np.concatenate(sent[(run_id, key)])
            assert got["values"] == expected_values.tobytes()
            steps = np.frombuffer(got["steps"], dtype="<i8")
            assert np.array_equal(steps, np.arange(per_series))
            stamps = np.frombuffer(got["timestamps"], dtype="<i8")
            assert np.array_equal(stamps, 1_700_000_000_000 + np.arange(per_series) * 10)
            total += len(steps)
    elapsed = time.perf_counter() - started
    assert total == 1_000_000
    print(
        f"\n1,000,000 points: accepted in {accepted:.2f} s, all queryable and read back in "
        f"{elapsed:.2f} s ({total / elapsed:,.0f} points/s end to end)"
    )
