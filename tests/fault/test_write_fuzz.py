"""Property: every write is refused whole (4xx, nothing appended) or acknowledged and then
readable, never dead-lettered (issue 14). Hypothesis generates requests for every write
route, MLflow's and the native ones, against a real ``runstream server`` process.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import msgpack
import pytest
import redis
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstream.schemas import constants as c

pytestmark = pytest.mark.slow

MLFLOW = "/api/2.0/mlflow"
NATIVE = "/api/runstream/v1"
EXAMPLES = 400

NASTY = [
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "",
    " ",
    "é漢字🙂",
    "../x",
    "a/../../b",
    "%",
    "'",
    '"',
    "\\",
    "\u202e",
    "a" * 251,
    "a" * 257,
    "a" * 501,
    "v" * 6001,
    "v" * 8001,
    "v" * 20001,
]
text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(NASTY),
    st.builds(
        lambda a, n, b: a + n + b, st.text(max_size=4), st.sampled_from(NASTY), st.text(max_size=4)
    ),
)
key = st.one_of(st.from_regex(r"[a-z][a-z0-9_.]{0,12}", fullmatch=True), text)
integer = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([2**63, -(2**63) - 1, 2**64, -1, 0, 10**30, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.none(),
)
number = st.one_of(st.floats(), st.integers(-(2**70), 2**70), st.sampled_from(["NaN", "x"]))
pairs = st.lists(st.fixed_dictionaries({"key": key, "value": text}), max_size=3)


class World:
    """The ids the routes write to, and what acknowledged writes said (to read it back)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.run_tags: dict[tuple[str, str], str | None] = {}
        self.params: dict[tuple[str, str], str] = {}
        self.experiment_tags: dict[tuple[str, str], str | None] = {}
        self.acknowledged = 0
        self.refused = 0
        exp = self.post(f"{MLFLOW}/experiments/create", {"name": f"fuzz-{uuid.uuid4().hex}"})
        self.experiment_id = exp["experiment_id"]
        run = self.post(f"{MLFLOW}/runs/create", {"experiment_id": self.experiment_id})
        self.run_id = run["run"]["info"]["run_id"]
        model = self.post(f"{MLFLOW}/logged-models", {"experiment_id": self.experiment_id})
        self.model_id = model["model"]["info"]["model_id"]

    def post(self, path: str, body: Any) -> Any:
        resp = self.http.post(self.url + path, json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.json()


def write_calls() -> st.SearchStrategy[tuple[str, str, Any]]:
    """(body encoding, path, body) for every write route; "RUN"/"EXP" name the live ones."""
    run = st.sampled_from(["RUN", "RUN", "RUN", "0" * 32, "x"])
    exp = st.sampled_from(["EXP", "EXP", "0", "999999", "9" * 30, "x"])
    metric = st.fixed_dictionaries(
        {"key": key, "value": number, "timestamp": integer, "step": integer}
    )
    model = st.sampled_from(["MODEL", "MODEL", "m-" + "0" * 32, "x"])
    plain_key = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)

    def route(path: str, body: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[str, str, Any]]:
        return st.tuples(st.just("json"), st.just(path), body)

    lifecycle_and_models = st.one_of(
        route(f"{MLFLOW}/runs/delete", st.fixed_dictionaries({"run_id": run})),
        route(f"{MLFLOW}/runs/restore", st.fixed_dictionaries({"run_id": run})),
        route(f"{MLFLOW}/experiments/delete", st.fixed_dictionaries({"experiment_id": exp})),
        route(f"{MLFLOW}/experiments/restore", st.fixed_dictionaries({"experiment_id": exp})),
        route(
            f"{MLFLOW}/runs/outputs",
            st.fixed_dictionaries(
                {
                    "run_id": run,
                    "models": st.lists(
                        st.fixed_dictionaries({"model_id": model, "step": integer}), max_size=2
                    ),
                }
            ),
        ),
        route(
            f"{MLFLOW}/runs/log-model",
            st.fixed_dictionaries({"run_id": run, "model_json": text}),
        ),
        route(
            f"PATCH {MLFLOW}/logged-models/MODEL",
            st.fixed_dictionaries(
                {"model_id": model, "status": st.sampled_from(["READY", "FAILED", "BAD", 1])}
            ),
        ),
        route(f"PATCH {MLFLOW}/logged-models/MODEL/tags", st.fixed_dictionaries({"tags": pairs})),
        route(
            f"POST {MLFLOW}/logged-models/MODEL/params", st.fixed_dictionaries({"params": pairs})
        ),
        plain_key.flatmap(
            lambda k: route(f"DELETE {MLFLOW}/logged-models/MODEL/tags/{k}", st.just({}))
        ),
        route(f"DELETE {MLFLOW}/logged-models/MODEL", st.just({})),
    )
    return st.one_of(
        lifecycle_and_models,
        st.tuples(
            st.just("json"),
            st.just(f"{MLFLOW}/experiments/create"),
            st.fixed_dictionaries({"name": text, "tags": pairs}),
        ),
        st.tuples(
            st.just("json"),
            st.just(f"{MLFLOW}/experiments/update"),
            st.fixed_dictionaries({"experiment_id": exp, "new_name": text}),
        ),
        st.tuples(
            st.just("json"),
            st.just(f"{MLFLOW}/experiments/set-experiment-tag"),
            st.fixed_dictionaries({"experiment_id": exp, "key": key, "value": text}),
        ),
        st.tuples(
            st.just("json"),
            st.just(f"{MLFLOW}/experiments/delete-experiment-tag"),
            st.fixed_dictionaries({"experiment_id": exp, "key": key}),
        ),
        st.tuples(
            st.just("json"),
            st.just(f"{MLFLOW}/runs/create"),
            st.fixed_dictionaries(
                {
                    "experiment_id": exp,
                    "user_id": text,
                    "run_name": text,
                    "start_time": integer,
                    "tags": pairs,
                }
            ),
        ),
        st.tuples(
            st.just("json"),
            st.just(f"{MLFLOW}/runs/update"),
            st.fixed_dictionaries(
                {
                    "run_id": run,
                    "status": st.sampled_from(["RUNNING", "FINISHED", "BAD"]),
                    "end_time": integer,
                    "run_name": text,
                }
            ),
        ),
        st.tuples(
            st.just("json"),
            st.just(f"{MLFLOW}/runs/set-tag"),
            st.fixed_dictionaries({"run_id": run, "key": key, "value": text}),
        ),
        st.tuples(
            st.just("json"),
            st.just(f"{MLFLOW}/runs/delete-tag"),
            st.fixed_dictionaries({"run_id": run, "key": key}),
        ),
        st.tuples(
            st.just("json"),
            st.just(f"{MLFLOW}/runs/log-metric"),
            st.fixed_dictionaries(
                {"run_id": run, "key": key, "value": number, "timestamp": integer, "step": integer}
            ),
        ),
        st.tuples(
            st.just("json"),
            st.just(f"{MLFLOW}/runs/log-parameter"),
            st.fixed_dictionaries({"run_id": run, "key": key, "value": text}),
        ),
        st.tuples(
            st.just("json"),
            st.just(f"{MLFLOW}/runs/log-batch"),
            st.fixed_dictionaries(
                {
                    "run_id": run,
                    "metrics": st.lists(metric, max_size=3),
                    "params": pairs,
                    "tags": pairs,
                }
            ),
        ),
        st.tuples(
            st.just("json"),
            st.just(f"{MLFLOW}/runs/log-inputs"),
            st.fixed_dictionaries(
                {
                    "run_id": run,
                    "datasets": st.lists(
                        st.fixed_dictionaries(
                            {
                                "dataset": st.fixed_dictionaries(
                                    {
                                        "name": text,
                                        "digest": text,
                                        "source_type": text,
                                        "source": text,
                                        "schema": text,
                                        "profile": text,
                                    }
                                ),
                                "tags": pairs,
                            }
                        ),
                        max_size=2,
                    ),
                }
            ),
        ),
        st.tuples(
            st.just("json"),
            st.just(f"{MLFLOW}/logged-models"),
            st.fixed_dictionaries(
                {
                    "experiment_id": exp,
                    "name": text,
                    "model_type": text,
                    "source_run_id": run,
                    "tags": pairs,
                    "params": pairs,
                }
            ),
        ),
        st.tuples(
            st.just("json"),
            st.just(f"{NATIVE}/experiments/get-or-create"),
            st.fixed_dictionaries({"name": text}),
        ),
        st.tuples(
            st.sampled_from(["json", "msgpack"]),
            st.just(f"{NATIVE}/events"),
            st.fixed_dictionaries(
                {
                    "events": st.lists(
                        st.one_of(
                            st.fixed_dictionaries(
                                {
                                    "type": st.just("params_logged"),
                                    "run_id": run,
                                    "params": st.lists(st.tuples(key, text), max_size=2),
                                }
                            ),
                            st.fixed_dictionaries(
                                {
                                    "type": st.just("run_tags_set"),
                                    "run_id": run,
                                    "tags": st.lists(st.tuples(key, text), max_size=2),
                                }
                            ),
                            st.fixed_dictionaries(
                                {
                                    "type": st.just("run_updated"),
                                    "run_id": run,
                                    "end_time": integer,
                                    "run_name": text,
                                }
                            ),
                            st.fixed_dictionaries(
                                {
                                    "type": st.just("metrics_logged"),
                                    "run_id": run,
                                    "series": st.lists(
                                        st.fixed_dictionaries(
                                            {
                                                "key": key,
                                                "steps": st.lists(integer, min_size=1, max_size=1),
                                                "timestamps": st.just([1]),
                                                "values": st.just([1.0]),
                                            }
                                        ),
                                        max_size=2,
                                    ),
                                }
                            ),
                        ),
                        min_size=1,
                        max_size=3,
                    )
                }
            ),
        ),
    )


def substitute(value: Any, world: World) -> Any:
    if value == "RUN":
        return world.run_id
    if value == "EXP":
        return world.experiment_id
    if value == "MODEL":
        return world.model_id
    if isinstance(value, dict):
        return {k: substitute(v, world) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [substitute(v, world) for v in value]
    return value


def encode(kind: str, body: Any) -> tuple[bytes, str]:
    if kind == "msgpack":
        try:
            packed = msgpack.packb(body, use_bin_type=True, unicode_errors="surrogatepass")
        except OverflowError:
            pass  # msgpack has no integers past 64 bits: the same body goes as JSON
        else:
            return packed, "application/msgpack"
    # ensure_ascii escapes lone surrogates as \\udXXX: valid JSON text that decodes to them.
    return json.dumps(body, ensure_ascii=True).encode(), "application/json"


def stream_marks(r: redis.Redis, prefix: str, shards: int) -> list[Any]:
    """Per shard, the id of the newest entry ever added (the projector trims the stream, so
    its length says nothing) and the tail ingest recorded."""
    out = []
    for s in range(shards):
        try:
            last = r.xinfo_stream(c.stream_key(prefix, s))["last-generated-id"]
        except redis.ResponseError:  # no such stream yet
            last = None
        out.append((last, r.get(c.tail_key(prefix, s))))
    return out


def remember(world: World, path: str, body: dict[str, Any]) -> None:
    """What an acknowledged write must make readable (MLflow's own keys left aside)."""
    tags: list[tuple[str, str | None]] = []
    params: list[tuple[str, str]] = []
    if path.endswith(("/set-experiment-tag", "/delete-experiment-tag")):
        if body["experiment_id"] == world.experiment_id:
            world.experiment_tags[(body["experiment_id"], body["key"])] = body.get("value")
        return
    if path.endswith("/events"):
        for event in body["events"]:
            if event["run_id"] != world.run_id:
                continue
            if event["type"] == "run_tags_set":
                tags += [(k, v) for k, v in event["tags"]]
            elif event["type"] == "params_logged":
                params += [(k, v) for k, v in event["params"]]
    elif body.get("run_id") != world.run_id:
        return
    elif path.endswith("/runs/set-tag"):
        tags.append((body["key"], body["value"]))
    elif path.endswith("/runs/delete-tag"):
        tags.append((body["key"], None))
    elif path.endswith("/runs/log-parameter"):
        params.append((body["key"], body["value"]))
    elif path.endswith("/runs/log-batch"):
        params += [(p["key"], p["value"]) for p in body["params"]]
        tags += [(t["key"], t["value"]) for t in body["tags"]]
    mlflow = path.startswith(MLFLOW)  # MLflow's routes truncate long values, as MLflow does
    for k, v in tags:
        if not k.startswith("mlflow."):
            cut = v[: c.MAX_TAG_VALUE_LENGTH] if mlflow and v is not None else v
            world.run_tags[(world.run_id, k)] = cut
    for k, v in params:
        world.params.setdefault((world.run_id, k), v[: c.MAX_PARAM_VALUE_LENGTH] if mlflow else v)


def test_every_write_is_refused_whole_or_applied(server_process: Any) -> None:
    s = server_process.settings
    r = redis.Redis.from_url(str(s.redis_url))
    try:
        world = World(server_process.url)

        # One server for every example: the state they build up is part of what is tested.
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(call=write_calls())
        def one(call: tuple[str, str, Any]) -> None:
            kind, path, raw = call
            method, _, path = path.rpartition(" ")
            path = path.replace("MODEL", world.model_id)
            body = substitute(raw, world)
            data, content_type = encode(kind, body)
            before = stream_marks(r, s.stream_prefix, s.shards)
            resp = world.http.request(
                method or "POST",
                world.url + path,
                data=data,
                headers={"Content-Type": content_type},
                timeout=60,
            )
            assert resp.status_code < 500, (path, body, resp.status_code, resp.text)
            if resp.status_code >= 400:
                world.refused += 1
                after = stream_marks(r, s.stream_prefix, s.shards)
                assert after == before, (path, resp.text, before, after)
            else:
                world.acknowledged += 1
                remember(world, path, body)

        one()
        assert world.acknowledged > 20 and world.refused > 20, vars(world)

        # Everything appended is applied: watermarks reach the tails, no dead letters.
        deadline = time.monotonic() + 60
        for shard in range(s.shards):
            tail = r.get(c.tail_key(s.stream_prefix, shard))
            while tail is not None:
                mark = r.get(c.watermark_key(s.stream_prefix, shard))
                if mark is not None and _entry(mark) >= _entry(tail):
                    break
                assert time.monotonic() < deadline, f"shard {shard} not applied"
                time.sleep(0.1)
            assert r.xlen(c.dead_letter_key(s.stream_prefix, shard)) == 0
        # And readable, as sent.
        got = world.http.get(
            f"{world.url}{MLFLOW}/runs/get", params={"run_id": world.run_id}, timeout=30
        ).json()["run"]["data"]
        tags = {t["key"]: t["value"] for t in got.get("tags", [])}
        params = {p["key"]: p["value"] for p in got.get("params", [])}
        for (_, k), v in world.run_tags.items():
            assert tags.get(k) == v, k
        for (_, k), v in world.params.items():
            assert params.get(k) == v, k
        exp = world.http.get(
            f"{world.url}{MLFLOW}/experiments/get",
            params={"experiment_id": world.experiment_id},
            timeout=30,
        ).json()["experiment"]
        exp_tags = {t["key"]: t["value"] for t in exp.get("tags", [])}
        for (_, k), v in world.experiment_tags.items():
            assert exp_tags.get(k) == v, k
        print(
            f"write fuzz: {world.acknowledged + world.refused} requests, "
            f"{world.acknowledged} acknowledged, {world.refused} refused, 0 dead letters"
        )
    finally:
        r.close()


def _entry(raw: bytes) -> tuple[int, int]:
    ms, seq = raw.decode().split("-")
    return int(ms), int(seq)
