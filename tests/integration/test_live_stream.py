"""Live Server-Sent Events through the real in-process server (ingest, projector, api)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import msgpack
import numpy as np
import orjson

from runstream.api.native import live, sse

V1 = "/api/runstream/v1"


async def post_events(
    http: aiohttp.ClientSession, url: str, events: list[dict[str, Any]], wait: bool = True
) -> None:
    async with http.post(
        f"{url}{V1}/events",
        data=msgpack.packb({"events": events}, use_bin_type=True),
        params={"wait": "1"} if wait else {},
        headers={"Content-Type": "application/msgpack"},
    ) as resp:
        assert resp.status == 200, await resp.text()


def points(run_id: str, key: str, lo: int, hi: int) -> dict[str, Any]:
    steps = np.arange(lo, hi, dtype="<i8")
    return {
        "type": "metrics_logged",
        "run_id": run_id,
        "series": [
            {
                "key": key,
                "steps": steps.tobytes(),
                "timestamps": (steps + 1000).tobytes(),
                "values": (steps * 0.5).astype("<f8").tobytes(),
            }
        ],
    }


async def create_run(http: aiohttp.ClientSession, url: str) -> str:
    run_id = uuid.uuid4().hex
    event = {
        "type": "run_created",
        "run_id": run_id,
        "experiment_id": "0",
        "user_id": "t",
        "run_name": "live",
        "start_time": 1,
        "artifact_uri": "",
        "tags": [],
    }
    await post_events(http, url, [event])
    return run_id


class Events:
    """A tiny SSE reader: (event, id, data) tuples, comments skipped."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def next(self) -> tuple[str, str | None, Any]:
        return await asyncio.wait_for(self._next(), 10.0)

    async def _next(self) -> tuple[str, str | None, Any]:
        event, event_id, data = "message", None, b""
        async for raw in self.resp.content:
            line = raw.rstrip(b"\n")
            if not line:
                if data:
                    return event, event_id, orjson.loads(data)
                continue
            if line.startswith(b":"):
                continue
            name, _, value = line.partition(b": ")
            if name == b"event":
                event = value.decode()
            elif name == b"id":
                event_id = value.decode()
            elif name == b"data":
                data += value
        raise EOFError


async def collect_steps(events: Events, key: str, count: int) -> tuple[list[int], str | None]:
    steps: list[int] = []
    last_id = None
    while len(steps) < count:
        kind, event_id, data = await events.next()
        if kind == "metric" and data["key"] == key:
            assert data["offset"] == steps[-1] + 1 if steps else True
            steps += data["steps"]
            assert data["values"] == [s * 0.5 for s in data["steps"]]
            last_id = event_id
    return steps, last_id


async def test_client_receives_every_point_written_after_connect_in_order(
    server: str, http: aiohttp.ClientSession
) -> None:
    run_id = await create_run(http, server)
    await post_events(http, server, [points(run_id, "loss", 0, 50)])  # before: not streamed
    async with http.get(f"{server}{V1}/live", params={"runs": run_id, "keys": "loss"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = Events(resp)
        kind, _, ready = await events.next()
        assert kind == "ready" and ready["runs"][0]["status"] == "RUNNING"
        for lo in range(50, 3050, 300):  # tail fills and new chunks
            await post_events(http, server, [points(run_id, "loss", lo, lo + 300)], wait=False)
            await post_events(http, server, [points(run_id, "other", lo, lo + 1)], wait=False)
        steps, _ = await collect_steps(events, "loss", 3000)
        assert steps == list(range(50, 3050))
        await post_events(
            http,
            server,
            [{"type": "run_updated", "run_id": run_id, "status": "FINISHED", "end_time": 9}],
        )
        kind, _, change = await events.next()
        assert kind == "run" and change["status"] == "FINISHED" and change["end_time"] == 9


async def test_reconnect_with_last_event_id_receives_exactly_the_missed_points(
    server: str, http: aiohttp.ClientSession
) -> None:
    run_id = await create_run(http, server)
    await post_events(http, server, [points(run_id, "loss", 0, 10)])
    params = {"runs": run_id}
    async with http.get(f"{server}{V1}/live", params=params) as resp:
        events = Events(resp)
        await events.next()
        await post_events(http, server, [points(run_id, "loss", 10, 20)])
        steps, last_id = await collect_steps(events, "loss", 10)
        assert steps == list(range(10, 20))
    assert last_id is not None
    # Missed while away: more points of the known series and a new series.
    await post_events(http, server, [points(run_id, "loss", 20, 1500)])
    await post_events(http, server, [points(run_id, "new", 0, 5)])
    async with http.get(
        f"{server}{V1}/live", params=params, headers={"Last-Event-ID": last_id}
    ) as resp:
        events = Events(resp)
        assert (await events.next())[0] == "ready"
        await post_events(http, server, [points(run_id, "loss", 1500, 1600)])
        await post_events(http, server, [points(run_id, "new", 5, 7)])
        got: dict[str, list[int]] = {"loss": [], "new": []}
        while len(got["loss"]) < 1580 or len(got["new"]) < 7:
            kind, _, data = await events.next()
            if kind == "metric":
                assert data["offset"] == len(got[data["key"]]) + (
                    20 if data["key"] == "loss" else 0
                )
                got[data["key"]] += data["steps"]
        # Caught up from the stored offsets: nothing missed, nothing twice, in order; a series
        # created while away comes from its first point.
        assert got == {"loss": list(range(20, 1600)), "new": list(range(7))}


async def test_unknown_run_and_bad_ids(server: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{server}{V1}/live", params={"runs": "e" * 32}) as resp:
        assert resp.status == 404
    async with http.get(f"{server}{V1}/live") as resp:
        assert resp.status == 400
    run_id = await create_run(http, server)
    async with http.get(
        f"{server}{V1}/live", params={"runs": run_id}, headers={"Last-Event-ID": "x:y"}
    ) as resp:
        assert resp.status == 400


def test_slow_client_is_dropped_with_a_final_item() -> None:
    client = live.LiveClient(frozenset({"r"}), None, limit=2)
    assert client.offer({"a": 1}) and client.offer({"a": 2})
    assert not client.offer({"a": 3})
    assert client.dropped and client.queue.qsize() == 3
    assert isinstance(list(client.queue._queue)[-1], live._Dropped)  # type: ignore[attr-defined]
    assert not client.offer({"a": 4})


def test_positions_round_trip() -> None:
    positions = {3: 10, 12: 0, 7: 1_000_000}
    assert sse.parse_positions(sse.format_positions(positions)) == positions
    assert sse.parse_positions("") == {}


async def test_event_ids_do_not_grow_with_the_number_of_series(
    server: str, http: aiohttp.ClientSession
) -> None:
    run_id = await create_run(http, server)
    keys = [f"k{i}" for i in range(2_000)]
    many = [points(run_id, k, 0, 1) for k in keys]
    await post_events(http, server, many)
    async with http.get(f"{server}{V1}/live", params={"runs": run_id}) as resp:
        events = Events(resp)
        kind, ready_id, _ = await events.next()
        assert kind == "ready" and ready_id is not None and len(ready_id) < 50
        await post_events(http, server, [points(run_id, "k7", 1, 3)])
        steps, last_id = await collect_steps(events, "k7", 2)
        assert steps == [1, 2] and last_id is not None and len(last_id) < 50
    # The short id still resumes exactly: only what came after it.
    await post_events(http, server, [points(run_id, "k9", 1, 4)])
    async with http.get(
        f"{server}{V1}/live", params={"runs": run_id}, headers={"Last-Event-ID": last_id}
    ) as resp:
        events = Events(resp)
        assert (await events.next())[0] == "ready"
        steps, _ = await collect_steps(events, "k9", 3)
        assert steps == [1, 2, 3]


async def test_more_clients_than_redis_pool_connections_all_receive_every_point(
    server: str,
) -> None:
    """redis-py's asyncio pool holds 100 connections: with one cursor round trip per client
    per event, 150 clients woken by one write needed ~150 at once ("Too many connections",
    the stream broken). The cursors of a fan-out are one pipeline (api/native/live_cursors)."""
    clients, writes = 150, 5
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        run_id = await create_run(http, server)
        ready = asyncio.Semaphore(0)

        async def client() -> list[int]:
            async with http.get(
                f"{server}{V1}/live", params={"runs": run_id, "keys": "loss"}
            ) as resp:
                assert resp.status == 200, await resp.text()
                events = Events(resp)
                assert (await events.next())[0] == "ready"
                ready.release()
                steps, _ = await collect_steps(events, "loss", writes * 10)
                return steps

        tasks = [asyncio.create_task(client()) for _ in range(clients)]
        for _ in range(clients):
            await asyncio.wait_for(ready.acquire(), 30)
        for w in range(writes):
            await post_events(http, server, [points(run_id, "loss", 10 * w, 10 * w + 10)])
        received = await asyncio.wait_for(asyncio.gather(*tasks), 60)
    assert received == [list(range(writes * 10))] * clients
