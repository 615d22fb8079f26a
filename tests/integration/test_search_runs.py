"""search_runs and search_experiments against a real database, rows inserted directly."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from runstream.api import queries
from runstream.api.mlflow import messages as rq
from runstream.api.mlflow import pagination, search
from runstream.api.mlflow import search_filter as sf
from runstream.api.mlflow import search_sql as sq
from runstream.api.mlflow.search import search_experiments, search_runs
from runstream.schemas.errors import InvalidParameterValue

NAN = float("nan")

# run_id: (experiment, stage, start, end, status, user, name, params, tags, metrics)
RUNS: dict[str, tuple[Any, ...]] = {
    "ra": (1, "active", 100, 150, "FINISHED", "alice", "alpha",
           {"lr": "0.1", "model": "cnn"}, {"team": "vision"}, {"acc": 0.9, "loss": 0.5}),
    "rb": (1, "active", 200, None, "RUNNING", "bob", "beta",
           {"lr": "0.01", "model": "rnn"}, {"team": "nlp"}, {"acc": 0.7, "loss": NAN}),
    "rc": (1, "active", 300, None, "FAILED", "alice", "gamma",
           {"lr": "0.1"}, {}, {"acc": NAN}),
    "rd": (1, "active", 300, None, "FINISHED", "carol", "delta",
           {"model": "CNN-big"}, {"team": "Vision"}, {"loss": 0.1}),
    "re": (1, "deleted", 400, None, "FINISHED", "bob", "eps",
           {}, {}, {"acc": 0.95, "loss": 0.2}),
    "rf": (2, "active", 500, None, "FINISHED", "alice", "zeta",
           {"lr": "0.1"}, {}, {"acc": 0.5}),
    "rg": (1, "active", 50, None, "RUNNING", "dave", "eta",
           {}, {}, {"acc": 0.9}),
}  # fmt: skip


async def insert_runs(conn: asyncpg.Connection, runs: dict[str, tuple[Any, ...]]) -> None:
    await conn.executemany(
        "INSERT INTO experiments (experiment_id, name, artifact_location, creation_time,"
        " last_update_time) VALUES ($1, $2, '', 0, 0) ON CONFLICT DO NOTHING",
        [(e, f"exp{e}") for e in {r[0] for r in runs.values()}],
    )
    await conn.executemany(
        "INSERT INTO runs (run_id, experiment_id, lifecycle_stage, start_time, end_time, status,"
        " user_id, name, artifact_uri) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [(rid, *r[:7], f"s3://bucket/{rid}") for rid, r in runs.items()],
    )
    for table, col in (("params", 7), ("run_tags", 8)):
        await conn.executemany(
            f"INSERT INTO {table} (run_id, key, value) VALUES ($1, $2, $3)",
            [(rid, k, v) for rid, r in runs.items() for k, v in r[col].items()],
        )
    await conn.executemany(
        "INSERT INTO metric_series (run_id, key, point_count, latest_step, latest_timestamp,"
        " latest_value) VALUES ($1, $2, 1, 0, 0, $3)",
        [(rid, k, v) for rid, r in runs.items() for k, v in r[9].items()],
    )


@pytest.fixture(autouse=True, params=["sort", "walk"])
def metric_order_shape(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every search twice: a metric first order key of these small experiments is one sort,
    and with ``SORT_RUNS_UP_TO`` at 0 the index walk of large ones (the same answers)."""
    if request.param == "walk":
        monkeypatch.setattr(search, "SORT_RUNS_UP_TO", 0)
    return str(request.param)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def seeded(conn: asyncpg.Connection) -> asyncpg.Connection:
    await insert_runs(conn, RUNS)
    return conn


async def ids(conn: asyncpg.Connection, filter_string: str = "", **kw: Any) -> list[str]:
    kw.setdefault("experiment_ids", ["1"])
    found, token = await search_runs(conn, filter_string=filter_string, **kw)
    assert token is None
    return found


DEFAULT = ["rc", "rd", "rb", "ra", "rg"]


FILTER_CASES = [
    ("", DEFAULT),
    ("metrics.acc > 0.8", ["ra", "rg"]),
    ("metrics.acc >= 0.9", ["ra", "rg"]),
    ("metrics.acc != 0.9", ["rc", "rb"]),  # NaN satisfies != only
    ("metrics.acc < 1", ["rb", "ra", "rg"]),
    ("metrics.acc <= 0.7", ["rb"]),
    ("metrics.acc = 0.7", ["rb"]),
    ("metrics.loss > -1", ["rd", "ra"]),
    ("metrics.`loss` != 0", ["rd", "rb", "ra"]),
    ("params.lr = '0.1'", ["rc", "ra"]),
    ("params.lr != '0.1'", ["rb"]),
    ("params.model LIKE 'cnn%'", ["ra"]),
    ("params.model ILIKE 'cnn%'", ["rd", "ra"]),
    ("params.lr IS NULL", ["rd", "rg"]),
    ("params.lr IS NOT NULL", ["rc", "rb", "ra"]),
    ("tags.team = 'vision'", ["ra"]),
    ("tags.team ILIKE 'VISION'", ["rd", "ra"]),
    ("tags.team != 'nlp'", ["rd", "ra"]),
    ("tags.team IS NULL", ["rc", "rg"]),
    ("attributes.status = 'FINISHED'", ["rd", "ra"]),
    ("status != 'FINISHED'", ["rc", "rb", "rg"]),
    ("attributes.run_id IN ('ra', 'rb', 're', 'rf')", ["rb", "ra"]),
    ("run_id NOT IN ('ra', 'rb')", ["rc", "rd", "rg"]),
    ("attributes.start_time >= 200", ["rc", "rd", "rb"]),
    ("created < 100", ["rg"]),
    ("attributes.start_time > 99.5", ["rc", "rd", "rb", "ra"]),
    ("attributes.end_time > 0", ["ra"]),
    ("attributes.end_time != 150", []),
    ("attributes.run_name = 'beta'", ["rb"]),
    ("`Run Name` LIKE '%ta'", ["rd", "rb", "rg"]),
    ("attributes.user_id = 'alice'", ["rc", "ra"]),
    ("attributes.artifact_uri LIKE 's3://bucket/r_'", DEFAULT),
    ("attributes.artifact_uri LIKE 's3://bucket/ra'", ["ra"]),
    ("metrics.acc > 0.5 and params.lr = '0.1' and tags.team = 'vision'", ["ra"]),
    ("metrics.acc > 0.5 and metrics.acc < 0.8", ["rb"]),
    ("datasets.name = 'd'", []),
    ("params.nope = 'x'", []),
]


DATASET_CASES = [
    ("datasets.name = 'train'", ["rb", "ra"]),
    ("datasets.name = 'train' AND datasets.digest = 'd2'", ["rb"]),
    ("datasets.digest IN ('d1', 'e1')", ["rd", "ra"]),
    ("datasets.name LIKE 'ev%'", ["rd"]),
    ("datasets.name != 'train'", ["rd"]),
    ("datasets.context = 'training'", ["ra"]),
    ("datasets.context ILIKE 'EVAL%'", ["rd"]),
    ("datasets.context = 'training' AND datasets.name = 'eval'", []),
]


async def test_dataset_filters(seeded: asyncpg.Connection) -> None:
    """A run matches when one of its dataset inputs does; each condition on its own input."""
    inputs = [
        ("ra", "train", "d1"),
        ("rb", "train", "d2"),
        ("rd", "eval", "e1"),
        ("rf", "train", "d1"),
    ]
    await seeded.executemany(
        "INSERT INTO run_dataset_inputs (run_id, experiment_id, name, digest, logged_time)"
        " VALUES ($1, $2, $3, $4, 0)",
        [(rid, RUNS[rid][0], name, digest) for rid, name, digest in inputs],
    )
    await seeded.executemany(
        "INSERT INTO run_dataset_input_tags (run_id, experiment_id, name, digest, key, value)"
        " VALUES ($1, $2, $3, $4, 'mlflow.data.context', $5)",
        [("ra", 1, "train", "d1", "training"), ("rd", 1, "eval", "e1", "evaluation"),
         ("rf", 2, "train", "d1", "training")],
    )  # fmt: skip
    got = {f: await ids(seeded, f) for f, _ in DATASET_CASES}
    assert got == dict(DATASET_CASES)


async def test_filters(seeded: asyncpg.Connection) -> None:
    # One database for all cases: creating one per case would dominate the run time.
    got = {f: await ids(seeded, f) for f, _ in FILTER_CASES}
    assert got == dict(FILTER_CASES)


ORDER_CASES = [
    # numbers, then NaN, then missing, whatever the direction; ties by start_time DESC
    (["metrics.acc DESC"], ["ra", "rg", "rb", "rc", "rd"]),
    (["metrics.acc"], ["rb", "ra", "rg", "rc", "rd"]),
    (["metrics.loss ASC"], ["rd", "ra", "rb", "rc", "rg"]),
    (["metrics.loss DESC"], ["ra", "rd", "rb", "rc", "rg"]),
    (["params.model ASC"], ["rd", "ra", "rb", "rc", "rg"]),
    (["params.model DESC"], ["rb", "ra", "rd", "rc", "rg"]),
    (["tags.team DESC", "metrics.loss ASC"], ["ra", "rb", "rd", "rc", "rg"]),
    (["tags.team", "params.lr DESC"], ["rd", "rb", "ra", "rc", "rg"]),
    (["attributes.start_time ASC"], ["rg", "ra", "rb", "rc", "rd"]),
    (["created DESC"], ["rc", "rd", "rb", "ra", "rg"]),
    (["end_time DESC"], ["ra", "rc", "rd", "rb", "rg"]),
    (["end_time ASC"], ["ra", "rc", "rd", "rb", "rg"]),
    (["attributes.run_name"], ["ra", "rb", "rd", "rg", "rc"]),
    (["status DESC", "user_id"], ["rb", "rg", "ra", "rd", "rc"]),
    (["run_id DESC"], ["rg", "rd", "rc", "rb", "ra"]),
]


async def test_order_by(seeded: asyncpg.Connection) -> None:
    got = [(o, await ids(seeded, order_by=o)) for o, _ in ORDER_CASES]
    assert got == ORDER_CASES


async def test_view_types_and_experiments(seeded: asyncpg.Connection) -> None:
    assert await ids(seeded, run_view_type="DELETED_ONLY") == ["re"]
    assert await ids(seeded, run_view_type="ALL") == ["re", *DEFAULT]
    assert await ids(seeded, experiment_ids=["1", "2"]) == ["rf", *DEFAULT]
    assert await ids(seeded, experiment_ids=["2"]) == ["rf"]
    assert await ids(seeded, experiment_ids=[]) == []
    assert await ids(seeded, "metrics.acc > 0.9", run_view_type="ALL") == ["re"]


async def test_pages(seeded: asyncpg.Connection) -> None:
    pages, token = [], None
    while True:
        found, token = await search_runs(
            seeded, experiment_ids=["1", "2"], run_view_type="ALL", max_results=2,
            order_by=["metrics.acc DESC"], page_token=token,
        )  # fmt: skip
        pages.append(found)
        if token is None:
            break
        assert pagination.decode(token).offset == 2 * len(pages)
    assert pages == [["re", "ra"], ["rg", "rb"], ["rf", "rc"], ["rd"]]
    found, token = await search_runs(seeded, experiment_ids=["1"], max_results=5)
    assert (found, token) == (DEFAULT, None)  # exactly a page: no token, as MLflow


async def test_errors(seeded: asyncpg.Connection) -> None:
    for kwargs, message in [
        ({"filter_string": "metrics.acc LIKE 5"}, "Invalid comparator 'LIKE'"),
        ({"order_by": ["metrics.x sideways"]}, "Invalid ordering key"),
        ({"max_results": 50001}, "It must be at most 50000"),
        ({"max_results": 0}, "It must be a positive integer"),
        ({"page_token": "!!!"}, "Invalid page token"),
        ({"page_token": pagination.encode(0)}, "Invalid page token"),
        ({"experiment_ids": ["x"]}, "Invalid experiment ID 'x'"),
        ({"run_view_type": "SOME"}, "Invalid view type"),
    ]:
        kwargs.setdefault("experiment_ids", ["1"])
        with pytest.raises(InvalidParameterValue, match=message):
            await search_runs(seeded, **kwargs)


def _reference_order(runs: dict[str, tuple[Any, ...]], metric: str, asc: bool) -> list[str]:
    """MLflow's SQL ordering for ``metrics.<metric>``, written out in Python."""

    def key(rid: str) -> tuple[Any, ...]:
        v = runs[rid][9].get(metric)
        group = 2 if v is None else 1 if math.isnan(v) else 0
        value = 0.0 if group else (v if asc else -v)
        return (group, value, -runs[rid][2], rid)

    return sorted(runs, key=key)


async def test_random_runs_page_without_gaps(conn: asyncpg.Connection) -> None:
    rnd = random.Random(7)
    runs: dict[str, tuple[Any, ...]] = {}
    for i in range(137):
        metrics = {}
        if rnd.random() < 0.8:
            metrics["m"] = NAN if rnd.random() < 0.1 else float(rnd.randint(0, 20))
        runs[f"run{i:03d}"] = (
            1, "active", rnd.randint(0, 30), None, "FINISHED", "u", f"n{i}",
            {"p": str(rnd.randint(0, 3))}, {}, metrics,
        )  # fmt: skip
    await insert_runs(conn, runs)
    for asc in (True, False):
        order = ["metrics.m " + ("ASC" if asc else "DESC")]
        pages: list[str] = []
        token = None
        while True:
            found, token = await search_runs(
                conn, experiment_ids=["1"], max_results=10, order_by=order, page_token=token
            )
            pages.extend(found)
            if token is None:
                break
        assert pages == _reference_order(runs, "m", asc)
    expected = [r for r in _reference_order(runs, "m", False) if runs[r][7]["p"] == "2"]
    found, _ = await search_runs(
        conn, experiment_ids=["1"], filter_string="params.p = '2'", order_by=["metrics.m DESC"]
    )
    assert found == expected


async def test_search_run_rows_are_the_runs_of_the_ids_in_order(
    seeded: asyncpg.Connection,
) -> None:
    for kw in (
        {"order_by": ["metrics.acc DESC"], "max_results": 2},
        {"order_by": ["metrics.loss ASC"], "filter_string": "params.lr = '0.1'"},
        {"order_by": ["params.model DESC"], "run_view_type": "ALL"},
        {"experiment_ids": ["1", "2"], "max_results": 3},
    ):
        kw.setdefault("experiment_ids", ["1"])
        found, token = await search_runs(seeded, **kw)
        req = rq.SearchRuns(
            experiment_ids=tuple(kw["experiment_ids"]),
            filter_string=kw.get("filter_string", ""),
            run_view_type=kw.get("run_view_type", "ACTIVE_ONLY"),
            max_results=kw.get("max_results", 1000),
            order_by=tuple(kw.get("order_by", ())),
            page_token=None,
        )
        rows, row_token = await search.search_run_rows(seeded, req)
        assert [r["run_id"] for r in rows] == found and row_token == token
        expected = [await queries.run(seeded, run_id) for run_id in found]
        assert repr([dict(r) for r in rows]) == repr([dict(r) for r in expected if r])  # NaN


@pytest.mark.parametrize("remembered", [True, False])
async def test_a_stale_size_answer_changes_no_result(
    seeded: asyncpg.Connection, remembered: bool
) -> None:
    """``ExperimentSizes`` remembers whether experiments are small for a while; a wrong answer
    picks the other plan, and both plans answer alike."""
    sizes = search.ExperimentSizes()
    sizes._small[((1,), ("active",))] = remembered
    for order in (["metrics.acc DESC"], ["metrics.loss ASC"]):
        for max_results in (1, 2, 3, 10):
            expected = await search_runs(
                seeded, experiment_ids=["1"], order_by=order, max_results=max_results
            )
            got = await search_runs(
                seeded, experiment_ids=["1"], order_by=order, max_results=max_results, sizes=sizes
            )
            assert got == expected


async def test_small_searches_keep_a_generic_plan_and_walks_plan_each_time(
    seeded: asyncpg.Connection,
) -> None:
    """``PlanModes``: a small experiment's search runs on a generic plan, every other on a
    custom one (a generic plan of the metric walk is a hundred times slower), with the same
    answers as a connection left as it is."""
    modes, sizes = search.PlanModes(), search.ExperimentSizes()
    kw: dict[str, Any] = {"experiment_ids": ["1"], "order_by": ["metrics.acc DESC"]}
    for small in (True, False, True, True, False):
        sizes._small[((1,), ("active",))] = small
        for max_results in (1, 3, 10):
            expected = await search_runs(seeded, max_results=max_results, **kw)
            got = await search_runs(seeded, max_results=max_results, sizes=sizes, modes=modes, **kw)
            assert got == expected
            mode = await seeded.fetchval("SHOW plan_cache_mode")
            assert mode == ("force_generic_plan" if small else "force_custom_plan")


async def test_long_param_values_are_stored_and_found(conn: asyncpg.Connection) -> None:
    value = "".join(
        random.Random(1).choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(6000)
    )
    runs = {"long": (1, "active", 1, None, "FINISHED", "u", "n", {"p": value}, {"t": value}, {})}
    await insert_runs(conn, runs)
    assert await ids(conn, f"params.p = '{value}' and tags.t = '{value}'") == ["long"]
    assert await ids(conn, f"params.p = '{value[:-1]}'") == []
    # Short filters are answered from the 200-character index prefix alone: a long value
    # must not match its own beginning, and LIKE 'literal%' must match it.
    assert await ids(conn, f"params.p = '{value[:10]}'") == []
    assert await ids(conn, f"params.p = '{value[:200]}'") == []
    assert await ids(conn, f"params.p LIKE '{value[:10]}'") == []
    assert await ids(conn, f"params.p LIKE '{value[:10]}%' and tags.t LIKE '%'") == ["long"]
    assert await ids(conn, f"params.p LIKE '{value[:199]}%%'") == ["long"]
    assert await ids(conn, f"params.p LIKE '{value[:250]}%'") == ["long"]
    assert await ids(conn, f"params.p LIKE '{value[:9]}X%'") == []


async def test_param_and_tag_filters_compare_bytewise_and_a_prefix_like_is_a_range(
    conn: asyncpg.Connection,
) -> None:
    """Param and tag filters compare under "C" (migration 0010), with the answers of any
    collation (case and accents count), and a prefix LIKE reads a range of the index."""
    values = ["äpfel", "Äpfel", "apfel", "äpfelkuchen", "b", "ä"]
    runs = {
        f"u{i}": (1, "active", i, None, "FINISHED", "u", "n", {"p": v}, {"t": v}, {})
        for i, v in enumerate(values)
    }
    await insert_runs(conn, runs)
    assert await ids(conn, "params.p LIKE 'äpfel%'") == ["u3", "u0"]
    assert await ids(conn, "tags.t LIKE 'ä%'") == ["u5", "u3", "u0"]
    assert await ids(conn, "params.p = 'Äpfel' and tags.t = 'Äpfel'") == ["u1"]
    assert await ids(conn, "params.p ILIKE 'äPFEL'") == ["u1", "u0"]
    query = sq.runs_query(
        experiment_ids=[1],
        stages=sq.view_stages("ACTIVE_ONLY"),
        filters=sf.parse_runs_filter("params.p LIKE 'äp%'"),
        order_by=sf.parse_runs_order_by([]),
        offset=0,
        limit=10,
        plan=sq.Plan.SORT,
    )
    await conn.execute("SET enable_seqscan = off")
    plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + query.sql, *query.args))
    assert "params_search" in plan and ">= 'äp'::text" in plan, plan


@pytest.fixture
async def experiments(conn: asyncpg.Connection) -> asyncpg.Connection:
    await conn.execute("DELETE FROM experiments")
    await conn.executemany(
        "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage,"
        " creation_time, last_update_time) VALUES ($1, $2, '', $3, $4, $5)",
        [
            (1, "alpha", "active", 10, 50),
            (2, "Beta", "active", 30, 40),
            (3, "gamma", "deleted", 20, 30),
            (4, "delta", "active", 30, 10),
        ],
    )
    await conn.executemany(
        "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3)",
        [(1, "team", "vision"), (2, "team", "nlp"), (3, "team", "vision")],
    )
    return conn


async def exp_ids(conn: asyncpg.Connection, **kw: Any) -> list[int]:
    rows, token = await search_experiments(conn, **kw)
    assert token is None
    return [r["experiment_id"] for r in rows]


EXPERIMENT_CASES: list[tuple[dict[str, Any], list[int]]] = [
    ({}, [2, 4, 1]),  # creation_time DESC, experiment_id ASC
    ({"view_type": "ALL"}, [2, 4, 3, 1]),
    ({"view_type": "DELETED_ONLY"}, [3]),
    ({"filter_string": "name = 'alpha'"}, [1]),
    ({"filter_string": "name ILIKE 'b%'"}, [2]),
    ({"filter_string": "name LIKE '%a'"}, [2, 4, 1]),
    ({"filter_string": "tags.team = 'vision'", "view_type": "ALL"}, [3, 1]),
    ({"filter_string": "tags.team IS NULL"}, [4]),
    ({"filter_string": "tags.team != 'vision'"}, [2]),
    ({"filter_string": "experiment_id IN ('1', '4')"}, [4, 1]),
    ({"filter_string": "experiment_id != '4'"}, [2, 1]),
    ({"filter_string": "creation_time >= 20 and last_update_time < 40"}, [4]),
    ({"order_by": ["name"]}, [2, 1, 4]),
    ({"order_by": ["last_update_time DESC"]}, [1, 2, 4]),
    ({"order_by": ["creation_time"]}, [1, 4, 2]),  # tie broken by experiment_id DESC
]


async def test_search_experiments(experiments: asyncpg.Connection) -> None:
    got = [(kw, await exp_ids(experiments, **kw)) for kw, _ in EXPERIMENT_CASES]
    assert got == EXPERIMENT_CASES


async def test_search_experiments_pages(experiments: asyncpg.Connection) -> None:
    rows, token = await search_experiments(experiments, max_results=2, view_type="ALL")
    assert [r["experiment_id"] for r in rows] == [2, 4]
    rows, token = await search_experiments(
        experiments, max_results=2, view_type="ALL", page_token=token
    )
    assert ([r["experiment_id"] for r in rows], token) == ([3, 1], None)
    # MLflow's experiment search takes comparators case-sensitively
    with pytest.raises(InvalidParameterValue, match="Invalid comparator 'like' not one of"):
        await search_experiments(experiments, filter_string="name like 'a'")
