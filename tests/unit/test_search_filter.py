"""The search grammar against MLflow's own SearchUtils as the oracle.

Each string is parsed by both; they must agree on accepting it, on what it means, and (up to
the order in which MLflow prints Python sets) on the error message.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.utils.search_utils import SearchExperimentsUtils, SearchUtils

from runstream.api.mlflow import search_filter as sf
from runstream.schemas.errors import InvalidParameterValue

RUN_FILTERS_OK = [
    "",
    "metrics.acc > 0.9",
    "metrics.acc > -1",
    "metrics.acc >= 1e5",
    "metrics.acc < 1E-5",
    "metrics.acc <= .5",
    "metrics.acc = 5.",
    "metrics.acc != -.5",
    "metrics.acc > -1e-3",
    "metric.acc > 1",
    "metrics.acc>=5 AND params.x='a'",
    'metrics.acc >= 5 and params.x = "a"',
    "metrics.`train/loss` < 1",
    'metrics."train/loss" < 1',
    "metrics.'train/loss' < 1",
    "`metrics`.acc < 1",
    "params.x = 'it''s'",
    "params.x = 'a\\'b'",
    "params.x = ''",
    'params.x = "it\'s"',
    "params.x = 'é'",
    "params.é = 'x'",
    "params.x LIKE '%a%'",
    "params.x like '%a%'",
    "params.x ILIKE '%A_'",
    "params.x != 'a'",
    "params.x!='a'",
    "params.x IS NULL",
    "params.x is null",
    "params.x IS NOT NULL",
    "params.x is not null",
    "tags.x IS NULL",
    'tags.x ILIKE "%A%"',
    "param.x = 'a'",
    "parameter.x = 'a'",
    "parameters.x = 'a'",
    "tag.x = 'a'",
    "tags.\"mlflow.runName\" = 'x'",
    "tags.mlflow.runName = 'x'",
    "tags.`mlflow.runName` = 'x'",
    "tags.mlflow.source.name = 'x'",
    "tags.`a.b`.c = 'x'",
    "params.x.y = 'a'",
    "params.1x = 'a'",
    "params.x_1 = 'a'",
    "params.`x y` = 'a'",
    "params.\"x y\" = 'a'",
    "params.select = 'a'",
    "params.True = 'a'",
    "params.null = 'a'",
    "metrics.and > 1",
    "attributes.run_id IN ('a', 'b')",
    "attributes.run_id in ('a','b')",
    "attributes.run_id NOT IN ('a', 'b')",
    "attributes.run_id not in ('a')",
    "attributes.run_id IN ('a',)",
    'attributes.run_id IN ("a", "b")',
    "attributes.run_id IN('a')",
    "run_id IN ('a')",
    "run_id = 'a'",
    "run_id LIKE 'a%'",
    "status = 'FINISHED'",
    "attr.status = 'FINISHED'",
    "run.status != 'FINISHED'",
    "attribute.status ILIKE 'fin%'",
    "attributes.user_id LIKE 'a'",
    "attributes.artifact_uri = 'a'",
    "attributes.start_time > 5",
    "attributes.start_time = 1.5",
    "start_time > -5",
    "attributes.end_time != 5",
    "attributes.created > 5",
    "created >= 1",
    "Created >= 1",
    "attributes.run_name = 'x'",
    "attributes.`run name` = 'x'",
    "\"run name\" = 'x'",
    "\"Run Name\" = 'x'",
    "`Run name` = 'x'",
    "dataset.name = 'a'",
    "datasets.digest IN ('a')",
    "datasets.context != 'train'",
    "params.x = 'a' and",
    "and params.x = 'a'",
    "params.x = 'a' and and params.y = 'b'",
    "params.x = 'a' params.y = 'b'",
    "params.x = 'a' And params.y='b'",
    "params.x = 'a'\tand\tparams.y = 'b'",
    "metrics.x = 5 and metrics.y = 6 AND params.p != 'z' and tags.t LIKE 'v%'",
    "metrics.a >= 1 and metrics.a <= 2",
    " metrics.x = 5 ",
]

RUN_FILTERS_BAD = [
    "   ",
    "metrics.acc > - 1",
    "metrics.acc > +1",
    "metrics.train/loss < 1",
    "params.model-type = 'x'",
    "params.x IS 'a'",
    "params.x IS NOT 'a'",
    "metrics.x IS NULL",
    "attributes.status IS NULL",
    "attributes.status IN ('a', 'b')",
    "attributes.run_id IN ()",
    "attributes.run_id IN ('a', 1)",
    "attributes.run_id IN 'a'",
    "attributes.start_time > '5'",
    "attributes.lifecycle_stage = 'active'",
    "attributes.experiment_id = '1'",
    "metrics.acc > 1 OR metrics.b < 1",
    "(metrics.acc > 1)",
    "metrics.acc > 1;",
    "metrics.acc > 1; metrics.b < 2",
    "metrics.acc",
    "metrics.acc > ",
    "metrics.acc = 'a'",
    "metrics.acc LIKE 5",
    "params.x > 'a'",
    "params.x = 5",
    "tags.x = 5",
    "foo.x = 'a'",
    "params.x == 'a'",
    "params.x <> 'a'",
    "metrics.x <> 1",
    "metrics.acc > 0x10",
    "metrics.acc > 1_000",
    "metrics.a > 1e",
    "metrics.a > 1.e5",
    "metrics.a > 1.2.3",
    "metrics.a > --1",
    "metrics.a >1and params.b = 'x'",
    "params.x = `a`",
    "params.x = abc",
    "params.x = null",
    "metrics.x = null",
    "params.x IN ('a')",
    "tags.x NOT IN ('a')",
    "metrics.x IN (1)",
    "attributes.end_time LIKE 5",
    "attributes.status > 'a'",
    "params.x NOT LIKE 'a'",
    "params.x LIKE",
    "params.x LIKE 'a' 'b'",
    "params.x = 'a' -- comment",
    "params.x = 'a' /* c */",
    "params.x = '",
    "\"params.x\" = 'a'",
    "`params.x` = 'a'",
    "metrics.a > 1 AND NOT metrics.b > 2",
    "tags.`a b`c = 'x'",
    "dataset.foo = 'a'",
    "dataset.name > 'a'",
    "params.x RLIKE 'a'",
    "attributes.run_id = 'a' and attributes.start_time LIKE 5 and params.x = 1",
]

# MLflow accepts these while parsing and then fails in SQL; we reject them up front.
RUN_FILTERS_STRICTER = [
    "attributes.run_id = ('a')",
    "run_id LIKE ('a', 'b')",
]
# sqlparse rejects reserved words as bare keys and several spaces in NOT NULL; we need not.
RUN_FILTERS_LENIENT = [
    "params.from = 'a'",
    "metrics.in > 1",
    "params.x IS  NOT   NULL",
]


def _normalise_message(message: str) -> str:
    """Python sets print in hash order: compare their members sorted."""

    def sort_set(m: re.Match[str]) -> str:
        items = sorted(x.strip() for x in m.group(1).split(","))
        return "{" + ", ".join(items) + "}"

    return re.sub(r"\{('[^{}]*')\}", sort_set, message)


def _mlflow_runs(filter_string: str) -> Any:
    try:
        parsed = SearchUtils.parse_search_filter(filter_string)
        out = []
        for c in parsed:
            comparator = c["comparator"].upper()
            key = SearchUtils.translate_key_alias(c["key"])
            # What MLflow's SQL store checks before it queries (_get_sqlalchemy_filter_clauses).
            if not (
                SearchUtils.is_string_attribute(c["type"], key, comparator)
                or SearchUtils.is_numeric_attribute(c["type"], key, comparator)
                or SearchUtils.is_metric(c["type"], comparator)
                or SearchUtils.is_param(c["type"], comparator)
                or SearchUtils.is_tag(c["type"], comparator)
                or SearchUtils.is_dataset(c["type"], comparator)
            ):
                raise AssertionError(c)
            value = float(c["value"]) if c["type"] == "metric" else c["value"]
            out.append((c["type"], c["key"], comparator, value))
        return ("ok", out)
    except MlflowException as exc:
        return ("error", _normalise_message(exc.message))


def _ours_runs(filter_string: str) -> Any:
    try:
        parsed = sf.parse_runs_filter(filter_string)
    except InvalidParameterValue as exc:
        return ("error", _normalise_message(exc.message))
    return ("ok", [(c.entity, c.key, c.comparator, c.value) for c in parsed])


def _same_error(ours: str, theirs: str) -> bool:
    # sqlparse decides which fragments an unparseable clause lists; we name it our way.
    prefix = "Invalid clause(s) in filter string:"
    if theirs.startswith(prefix) or theirs.startswith("Invalid comparison clause"):
        return ours.startswith(prefix) or ours.startswith("Invalid comparison clause")
    return ours == theirs


@pytest.mark.parametrize("filter_string", RUN_FILTERS_OK + RUN_FILTERS_BAD)
def test_runs_filter_matches_mlflow(filter_string: str) -> None:
    theirs, ours = _mlflow_runs(filter_string), _ours_runs(filter_string)
    expected_ok = filter_string in RUN_FILTERS_OK
    assert theirs[0] == ("ok" if expected_ok else "error"), theirs
    assert ours[0] == theirs[0], (ours, theirs)
    if ours[0] == "ok":
        assert ours[1] == theirs[1]
    else:
        assert _same_error(ours[1], theirs[1]), (ours[1], theirs[1])


@pytest.mark.parametrize("filter_string", RUN_FILTERS_STRICTER)
def test_runs_filter_rejects_what_mlflow_fails_on_in_sql(filter_string: str) -> None:
    assert _mlflow_runs(filter_string)[0] == "ok"
    with pytest.raises(InvalidParameterValue):
        sf.parse_runs_filter(filter_string)


@pytest.mark.parametrize("filter_string", RUN_FILTERS_LENIENT)
def test_runs_filter_accepts_what_only_sqlparse_rejects(filter_string: str) -> None:
    assert _mlflow_runs(filter_string)[0] == "error"
    assert len(sf.parse_runs_filter(filter_string)) == 1


def test_parsed_values_and_aliases() -> None:
    (metric, param, created, name, ids) = sf.parse_runs_filter(
        "metrics.`train/loss` <= 2 and params.p ILIKE '%x' and created > 7 "
        "and `Run Name` = 'n' and run_id NOT IN ('a', \"b\")"
    )
    assert metric == sf.Comparison("metric", "train/loss", "<=", 2.0)
    assert param == sf.Comparison("parameter", "p", "ILIKE", "%x")
    assert (created.column, created.value) == ("start_time", 7)
    assert isinstance(created.value, int)
    assert name.column == "run_name"
    assert ids == sf.Comparison("attribute", "run_id", "NOT IN", ("a", "b"))


ORDER_BYS = [
    "metrics.x",
    "metrics.x DESC",
    "metrics.x desc",
    "metrics.x ASC",
    "metrics.x  DESC",
    "metrics.x\tDESC",
    "metrics.x DESCENDING",
    "metrics.x foo",
    "metrics.`my key` DESC",
    'metrics."my key" DESC',
    "metrics.'my key' DESC",
    "metrics.`train/loss`",
    "metrics.train/loss",
    "params.p ASC",
    "tags.t",
    "tags.mlflow.runName",
    'tags."a.b" DESC',
    "tags.`a b` asc",
    "attributes.start_time",
    "start_time",
    "start_time DESC",
    "created",
    "Created DESC",
    "run_name",
    "attributes.run_name",
    "`Run Name`",
    "attributes.run_id",
    "status",
    "user_id",
    "end_time ASC",
    "artifact_uri",
    "attributes.lifecycle_stage",
    "attributes.experiment_id",
    "metric.x",
    "param.p",
    "foo.x",
    "metrics.x DESC, params.y",
    "metrics.x DESC ASC",
    "",
    " metrics.x ",
    "metrics.x DESC ",
    "metrics.x NULLS LAST",
    "metrics.x DESC NULLS LAST",
    "timestamp",
    "metrics.x > 1",
    '"metrics.x"',
]


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return ("ok", fn(*args))
    except (MlflowException, InvalidParameterValue) as exc:
        return ("error", _normalise_message(exc.message))


@pytest.mark.parametrize("order_by", ORDER_BYS)
def test_runs_order_by_matches_mlflow(order_by: str) -> None:
    theirs = _outcome(SearchUtils.parse_order_by_for_search_runs, order_by)
    ours = _outcome(sf.parse_runs_order_by, [order_by])
    assert ours[0] == theirs[0], (ours, theirs)
    if ours[0] == "ok":
        (item,) = ours[1]
        assert (item.entity, item.key, item.ascending) == theirs[1]
    else:
        assert ours[1] == theirs[1]


def test_runs_order_by_rejects_duplicates_and_datasets() -> None:
    with pytest.raises(InvalidParameterValue, match="duplicate fields"):
        sf.parse_runs_order_by(["created DESC", "start_time"])
    with pytest.raises(InvalidParameterValue, match="Invalid identifier type 'dataset'"):
        sf.parse_runs_order_by(["dataset.name"])
    assert sf.parse_runs_order_by(None) == ()


EXPERIMENT_FILTERS = [
    "name = 'a'",
    "name != 'a'",
    "name LIKE 'a%'",
    "name ILIKE 'A%'",
    "name like 'a'",
    "attribute.name = 'a'",
    "attributes.name = 'a'",
    "experiment_id IN ('1','2')",
    "experiment_id NOT IN ('1')",
    "experiment_id in ('1')",
    "experiment_id = '1'",
    "experiment_id = 'x'",
    "experiment_id = 1",
    "experiment_id LIKE '1'",
    "tags.x = 'a'",
    "tag.x IS NULL",
    "tags.x IS NOT NULL",
    "tags.x LIKE '%a'",
    "tags.x like '%a'",
    "tags.`x y` = 'a'",
    "`tags`.x = 'a'",
    "creation_time > 5",
    "creation_time > 1.5",
    "creation_time LIKE 5",
    "last_update_time >= 0",
    "name IN ('a')",
    "name IS NULL",
    "name > 'a'",
    "metrics.x > 1",
    "lifecycle_stage = 'active'",
    "name = 'a' and tags.k != 'v' and creation_time <= 10",
]


def _mlflow_experiments(filter_string: str) -> Any:
    from mlflow.store.tracking.sqlalchemy_store import _get_search_experiments_filter_clauses

    try:
        parsed = SearchExperimentsUtils.parse_search_filter(filter_string)
        _get_search_experiments_filter_clauses(parsed, "postgresql")
    except MlflowException as exc:
        return ("error", _normalise_message(exc.message))
    return ("ok", [(c["type"], c["key"], c["comparator"]) for c in parsed])


@pytest.mark.parametrize("filter_string", EXPERIMENT_FILTERS)
def test_experiments_filter_matches_mlflow(filter_string: str) -> None:
    theirs = _mlflow_experiments(filter_string)
    try:
        ours: Any = (
            "ok",
            [(c.entity, c.key, c.comparator) for c in sf.parse_experiments_filter(filter_string)],
        )
    except InvalidParameterValue as exc:
        ours = ("error", _normalise_message(exc.message))
    assert ours == theirs


def test_experiment_filter_values() -> None:
    (ids, t, ct) = sf.parse_experiments_filter(
        "experiment_id IN ('1', '22') and tags.k = 'v' and creation_time > 5"
    )
    assert ids.value == (1, 22)
    assert t == sf.Comparison("tag", "k", "=", "v")
    assert ct.value == 5


EXPERIMENT_ORDER_BYS = [
    "name",
    "name DESC",
    "experiment_id",
    "tags.x",
    "attributes.name",
    "attribute.name",
    "creation_time ASC",
    "last_update_time desc",
    "lifecycle_stage",
    "name sideways",
]


@pytest.mark.parametrize("order_by", EXPERIMENT_ORDER_BYS)
def test_experiments_order_by_matches_mlflow(order_by: str) -> None:
    from mlflow.store.tracking.sqlalchemy_store import _get_search_experiments_order_by_clauses

    theirs = _outcome(_get_search_experiments_order_by_clauses, [order_by])
    ours = _outcome(sf.parse_experiments_order_by, [order_by])
    assert ours[0] == theirs[0], (ours, theirs)
    if ours[0] == "error":
        assert ours[1] == theirs[1]
    else:
        (parsed,) = ours[1]
        assert (parsed.entity, parsed.key, parsed.ascending) == (
            SearchExperimentsUtils.parse_order_by_for_search_experiments(order_by)
        )


def test_experiments_default_order() -> None:
    assert sf.parse_experiments_order_by([]) == (
        sf.OrderBy("attribute", "creation_time", False),
        sf.OrderBy("attribute", "experiment_id", True),
    )


def test_parsed_runs_filters_are_cached_and_refusals_are_not() -> None:
    text = "metrics.acc > 0.9 and attributes.run_id IN ('a', 'b')"
    first = sf.parse_runs_filter(text)
    assert sf.parse_runs_filter(text) is first
    assert isinstance(first, tuple) and isinstance(first[1].value, tuple)  # immutable
    for _ in range(2):
        with pytest.raises(InvalidParameterValue):
            sf.parse_runs_filter("metrics.acc LIKE 5")
