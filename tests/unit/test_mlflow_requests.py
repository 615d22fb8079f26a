"""MLflow request parsing: the fields, the schema's messages and the store's rules."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from multidict import MultiDict

from runstream.api.mlflow import messages as rq
from runstream.api.mlflow import pagination
from runstream.api.mlflow.names import MAX_LENGTH, random_run_name
from runstream.schemas.errors import InvalidParameterValue, MalformedRequest, ResourceDoesNotExist
from runstream.schemas.validation import parse_experiment_id

HINT = rq.API_DOCS_HINT


def message_of(call: Any, *args: Any) -> str:
    with pytest.raises(InvalidParameterValue) as exc:
        call(*args)
    return exc.value.message


def test_query_fields_keep_repeated_keys_as_lists() -> None:
    query = MultiDict(
        [("run_ids", "a"), ("run_ids", "b"), ("metric_key", "m"), ("metric_key", "n")]
    )
    assert rq.fields_from_query(query, ("run_ids",)) == {"run_ids": ["a", "b"], "metric_key": "m"}


def test_body_fields_accept_double_encoded_json_and_refuse_lists() -> None:
    assert rq.fields_from_body('{"a": 1}') == {"a": 1}
    assert rq.fields_from_body(None) == {}
    with pytest.raises(MalformedRequest):
        rq.fields_from_body([1])


def test_schema_messages_are_mlflows() -> None:
    assert message_of(rq.parse_log_metric, {}) == (
        "Missing value for required parameter 'run_id'." + HINT
    )
    assert message_of(rq.parse_create_experiment, {"name": 5}) == (
        "Invalid value 5 for parameter 'name' supplied:  Hint: Value was of type 'int'." + HINT
    )
    # run_uuid stands in for run_id where the message has both.
    got = rq.parse_log_param({"run_uuid": "r1", "key": "k", "value": "v"})
    assert (got.run_id, got.key, got.value) == ("r1", "k", "v")


def test_log_metric_takes_nan_literals_and_strings() -> None:
    fields = {"run_id": "r", "key": "k", "value": math.nan, "timestamp": "12"}
    got = rq.parse_log_metric(fields)
    assert math.isnan(got.metric.value) and got.metric.timestamp == 12 and got.metric.step == 0
    fields.update(value="-Infinity", step=3)
    assert rq.parse_log_metric(fields).metric == rq.Metric("k", -math.inf, 12, 3)
    fields.update(timestamp=-1)
    assert "Timestamp must be a nonnegative long" in message_of(rq.parse_log_metric, fields)


def test_metric_names_follow_mlflows_rules() -> None:
    assert message_of(rq.check_metric, "a" * 251, 1.0, 1, 0) == (
        "'Metric name' exceeds the maximum length of 250 characters"
    )
    assert message_of(rq.check_metric, "a&b", 1.0, 1, 0, "metrics[2]").startswith(
        "Invalid value \"a&b\" for parameter 'metrics[2].name' supplied: Names may only contain"
    )


def test_log_batch_limits_and_duplicate_params() -> None:
    metric = {"key": "m", "value": 1.0, "timestamp": 1}
    assert message_of(rq.parse_log_batch, {"run_id": "r", "metrics": [metric] * 1001}) == (
        "A batch logging request can contain at most 1000 metrics. Got 1001 metrics. Please"
        " split up metrics across multiple requests and try again."
    )
    params = [{"key": f"p{i}", "value": "v"} for i in range(101)]
    assert "at most 100 params" in message_of(rq.parse_log_batch, {"run_id": "r", "params": params})
    both = {"run_id": "r", "metrics": [metric] * 950, "params": params[:60]}
    assert "at most 1000 metrics, params, and tags" in message_of(rq.parse_log_batch, both)
    dup = {"run_id": "r", "params": [{"key": "a", "value": "1"}, {"key": "a", "value": "1"}]}
    assert message_of(rq.parse_log_batch, dup).startswith(
        "Duplicate parameter keys have been submitted: ['a']."
    )
    assert message_of(rq.parse_log_batch, {"run_id": "r", "tags": [{"value": "x"}]}) == (
        "Missing value for required parameter 'tags[0].key'." + HINT
    )


def test_log_batch_counts_come_before_any_per_item_check() -> None:
    """An oversized batch is refused from its lists' lengths: no item is looked at, so what
    the items hold (not dicts, missing fields, bad names, a bad run id) does not change the
    answer. MLflow's server names the bad item instead; same status and code."""
    good = {"key": "m", "value": 1.0, "timestamp": 1}
    for bad in ("not a dict", {"value": 1.0}, {"key": "../m", "value": 1.0, "timestamp": 1}):
        fields = {"run_id": "r", "metrics": [good] * 1000 + [bad]}
        assert message_of(rq.parse_log_batch, fields).startswith(
            "A batch logging request can contain at most 1000 metrics. Got 1001 metrics."
        )
    params = [{"key": "p"}] * 101  # duplicate keys too: still the count first
    assert "at most 100 params. Got 101" in message_of(
        rq.parse_log_batch, {"run_id": "bad id!", "params": params}
    )
    tags = [{"value": "no key"}] * 101
    assert "at most 100 tags. Got 101" in message_of(
        rq.parse_log_batch, {"run_id": "r", "tags": tags}
    )
    mixed = {"run_id": "r", "metrics": [{}] * 901, "tags": [{}] * 100}
    assert "at most 1000 metrics, params, and tags. Got 1001" in message_of(
        rq.parse_log_batch, mixed
    )
    # Within the limits, MLflow's order again: required fields before the run id.
    fields = {"run_id": "bad id!", "metrics": [{"key": "m", "value": 1.0}]}
    assert message_of(rq.parse_log_batch, fields).startswith(
        "Missing value for required parameter 'metrics[0].timestamp'."
    )


def test_long_param_and_tag_values_are_truncated_as_mlflow_does() -> None:
    batch = rq.parse_log_batch(
        {"run_id": "r", "params": [{"key": "p", "value": "x" * 7000}], "tags": [{"key": "t"}]}
    )
    assert len(batch.params[0][1]) == 6000
    assert batch.tags == (("t", ""),)


def test_run_names_resolve_as_create_run_does() -> None:
    assert rq.resolve_run_name("a", (), lambda: "gen") == ("a", (("mlflow.runName", "a"),))
    tagged = (("mlflow.runName", "b"),)
    assert rq.resolve_run_name("", tagged, lambda: "gen") == ("b", tagged)
    assert rq.resolve_run_name("", (), lambda: "gen") == ("gen", (("mlflow.runName", "gen"),))
    assert "Both 'run_name' argument and 'mlflow.runName' tag" in message_of(
        rq.resolve_run_name, "a", tagged, lambda: "gen"
    )


def test_generated_names_have_mlflows_shape() -> None:
    rng = random.Random(1)
    for _ in range(200):
        name = random_run_name(rng)
        adjective, noun, number = name.split("-")
        assert len(name) <= MAX_LENGTH and 0 <= int(number) <= 1000
        assert adjective.isalpha() and noun.isalpha()


def test_history_page_tokens() -> None:
    token = pagination.encode(30)
    assert message_of(
        rq.parse_get_metric_history, {"run_id": "r", "metric_key": "m", "page_token": "abc"}
    ) == ("Invalid page token, could not base64-decode")
    got = rq.parse_get_metric_history({"run_id": "r", "metric_key": "m", "page_token": token})
    assert (got.offset, got.max_results) == (30, None)


def test_bulk_interval_validation() -> None:
    parse = rq.parse_get_metric_history_bulk_interval
    assert message_of(parse, {"metric_key": "m"}) == (
        "Missing value for required parameter 'run_ids'." + HINT
    )
    assert message_of(parse, {"run_ids": ["r"] * 101, "metric_key": "m"}).startswith(
        "GetMetricHistoryBulkInterval request must specify at most 100 run_ids."
    )
    assert message_of(parse, {"run_ids": ["r"], "metric_key": "m", "max_results": "0"}) == (
        "max_results must be between 1 and 2500." + HINT
    )
    fields = {"run_ids": ["r"], "metric_key": "m", "start_step": "5", "end_step": "1"}
    assert message_of(parse, fields).startswith("end_step must be greater than start_step.")
    assert parse({"run_ids": "r", "metric_key": "m"}).max_results == 2500


def test_search_runs_defaults_and_limits() -> None:
    got = rq.parse_search_runs({"experiment_ids": ["1"]})
    assert (got.max_results, got.run_view_type, got.order_by) == (1000, "ACTIVE_ONLY", ())
    assert rq.parse_search_runs({"run_view_type": 3}).run_view_type == "ALL"
    assert message_of(rq.parse_search_runs, {"max_results": 50001}) == (
        "Invalid value 50001 for parameter 'max_results' supplied:  Hint: Value was of type"
        " 'int'." + HINT
    )
    assert "It must be a positive integer" in message_of(rq.parse_search_experiments, {})


def test_update_run_reads_status_names_and_numbers() -> None:
    assert rq.parse_update_run({"run_id": "r", "status": "KILLED"}).status == "KILLED"
    assert rq.parse_update_run({"run_id": "r", "status": 3, "end_time": 9}) == rq.UpdateRun(
        "r", "FINISHED", 9, None
    )


@pytest.mark.parametrize("value", ["12", " 12 ", 12, "+12"])
def test_experiment_ids_are_read_as_mlflow_reads_them(value: object) -> None:
    assert parse_experiment_id(value) == 12


@pytest.mark.parametrize("value", ["abc", "1.5", "", None, True, 1.0])
def test_experiment_ids_that_are_not_integers_are_400(value: object) -> None:
    with pytest.raises(InvalidParameterValue) as exc:
        parse_experiment_id(value)
    assert exc.value.message == (
        f"Invalid experiment ID '{value}'. Experiment ID must be a valid integer."
    )


def test_experiment_ids_past_int64_name_no_experiment() -> None:
    with pytest.raises(ResourceDoesNotExist) as exc:
        parse_experiment_id(str(2**63))
    assert exc.value.message == f"No Experiment with id={2**63} exists"
    # Every request that names experiments reads them with this one parser.
    assert message_of(rq.parse_experiment_ref, {"experiment_id": "x"}).startswith(
        "Invalid experiment ID 'x'"
    )
    assert message_of(rq.parse_search_runs, {"experiment_ids": ["1", "y"]}).startswith(
        "Invalid experiment ID 'y'"
    )


def test_log_batch_fast_path_keeps_what_the_per_metric_checks_give() -> None:
    """What MLflow's client sends takes the columnar path; the columns equal the metrics."""
    raw = [
        {"key": f"m{i % 3}", "value": i / 7, "timestamp": 1000 + i, "step": i} for i in range(10)
    ]
    raw.append({"key": "m0", "value": float("nan"), "timestamp": 5})  # no step: step 0
    batch = rq.parse_log_batch({"run_id": "r", "metrics": raw})
    assert batch.metrics == ()
    expected: dict[str, tuple[list[int], list[int], list[float]]] = {}
    for m in raw:
        steps, stamps, values = expected.setdefault(m["key"], ([], [], []))
        steps.append(m.get("step", 0))
        stamps.append(m["timestamp"])
        values.append(m["value"])
    assert list(batch.series) == ["m0", "m1", "m2"]
    for key, (steps, stamps, values) in expected.items():
        got = batch.series[key]
        assert got[0] == steps and got[1] == stamps
        assert [repr(v) for v in got[2]] == [repr(v) for v in values]
    assert batch.metric_count == len(raw)


@pytest.mark.parametrize(
    "odd",
    [
        {"key": "m", "value": 1, "timestamp": 1, "step": 0},  # an int value
        {"key": "m", "value": "NaN", "timestamp": 1},  # a protobuf special-value string
        {"key": "m", "value": 0.5, "timestamp": "7", "step": "3"},  # int64 as JSON strings
        {"key": "m", "value": 0.5, "timestamp": 1, "model_id": "m-1"},
    ],
)
def test_log_batch_slow_path_takes_what_the_fast_path_does_not(odd: dict[str, Any]) -> None:
    first = {"key": "m", "value": 0.25, "timestamp": 1, "step": 1}
    batch = rq.parse_log_batch({"run_id": "r", "metrics": [first, odd]})
    assert len(batch.metrics) == 2
    assert batch.series["m"][0] == [1, int(odd.get("step", 0))]
    assert batch.series["m"][1] == [1, int(odd["timestamp"])]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"key": "m", "value": 0.5}, "Missing value for required parameter 'metrics[1].timestamp'"),
        ({"key": "bad/../key", "value": 0.5, "timestamp": 1}, "Invalid value"),
        ({"key": ["m"], "value": 0.5, "timestamp": 1}, "metrics[1].name"),
        ({"key": "m", "value": 0.5, "timestamp": -1}, "Timestamp must be a nonnegative long"),
        ({"key": "m", "value": 0.5, "timestamp": 1, "step": 2**63}, "Step must be a valid long"),
    ],
)
def test_log_batch_refusals_keep_mlflows_wording(bad: dict[str, Any], message: str) -> None:
    first = {"key": "m", "value": 0.25, "timestamp": 1, "step": 1}
    assert message in message_of(rq.parse_log_batch, {"run_id": "r", "metrics": [first, bad]})
