"""search_logged_models' grammar, order, page tokens; the JSON shapes; request parsing."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from runstream.api.mlflow import logged_model_requests as mr
from runstream.api.mlflow import logged_model_search as lms
from runstream.api.mlflow import pagination
from runstream.api.mlflow.logged_model_views import logged_model_to_json
from runstream.api.mlflow.messages import Metric
from runstream.api.mlflow.run_io_views import run_io_to_json
from runstream.api.views import run_row_to_json
from runstream.schemas.errors import InvalidParameterValue
from runstream.schemas.models import LoggedModelMetricLogged

M1 = "m-" + "1" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name = 'model'", [("attributes", "name", "=", "model")]),
        ("attributes.name != \"x\"", [("attributes", "name", "!=", "x")]),
        ("creation_time > 5", [("attributes", "creation_timestamp_ms", ">", 5.0)]),
        ("metrics.`my loss` <= -1.5e2", [("metrics", "my loss", "<=", -150.0)]),
        ("params.lr = '0.01' and tags.team LIKE 'ml%'", [
            ("params", "lr", "=", "0.01"), ("tags", "team", "LIKE", "ml%")]),
        ("name IN ('a', 'b''c')", [("attributes", "name", "IN", ("a", "b'c"))]),
        ("source_run_id not in ('r1')", [("attributes", "source_run_id", "NOT IN", ("r1",))]),
        ("status = 'READY'", [("attributes", "status", "=", "READY")]),
        ("tags.git-sha = abc-1", [("tags", "git-sha", "=", "abc-1")]),
        ("metrics.x <> 1", [("metrics", "x", "!=", 1.0)]),
        ("model_id IN (\"m-1\")", [("attributes", "model_id", "IN", ("m-1",))]),
        ("", []),
    ],
)  # fmt: skip
def test_filters_parse(text: str, expected: list[tuple[str, str, str, Any]]) -> None:
    got = [(c.entity, c.key, c.op, c.value) for c in lms.parse_filter(text)]
    assert got == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name LIKE 1 OR name = 'b'", "separated by 'AND'"),
        ("metrics.loss LIKE 'a'", "Invalid comparison operator for metrics.loss"),
        ("name > 'a'", "Invalid comparison operator for attributes.name"),
        ("foo.bar = 'x'", "Invalid entity type: 'foo'"),
        ("nope = 'x'", "Invalid attribute key"),
        ("metrics.loss > 'abc'", "Expected a number"),
        ("name = ", "Expected a value"),
        ("name IN 'a'", "Expected a list of strings"),
        ("name IN ('a', b)", "Invalid list of strings ('a', b)."),
        ("name = 'a' AND", "Expected an identifier."),
        ("name = 'a' name = 'b'", "separated by 'AND'"),
        ("name IS NULL", "Invalid comparison operator for attributes.name: 'IS NULL'"),
        ("metrics.x >= +5", "Unexpected value +."),
    ],
)
def test_bad_filters_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(InvalidParameterValue) as exc:
        lms.parse_filter(text)
    assert fragment in exc.value.message


def request(**kw: Any) -> lms.SearchRequest:
    fields: dict[str, Any] = {"experiment_ids": ["1", "2"], **kw}
    return mr.parse_search_logged_models(fields)


def test_query_binds_every_value_and_orders_like_mlflow() -> None:
    req = request(
        filter="name = 'x' AND metrics.acc > 0.5 AND tags.t IN ('a', 'b')",
        datasets=[{"dataset_name": "eval", "dataset_digest": "d"}],
        order_by=[{"field_name": "metrics.acc", "ascending": False}, {"field_name": "name"}],
        max_results=10,
    )
    sql, args = lms.build_query(req, 20)
    assert "'x'" not in sql and "eval" not in sql
    assert args[0] == [1, 2]
    assert "x" in args and 0.5 in args and ["a", "b"] in args and "eval" in args
    assert args[-2:] == [11, 20]
    assert sql.index("o0.value DESC NULLS LAST") < sql.index("m.name ASC NULLS LAST")
    assert sql.rstrip().endswith("m.creation_timestamp_ms DESC, m.model_id ASC LIMIT $" +
                                 str(len(args) - 1) + " OFFSET $" + str(len(args)))  # fmt: skip


def test_order_by_unknown_fields_is_refused() -> None:
    with pytest.raises(InvalidParameterValue, match="Invalid order by field name: nope"):
        lms.build_query(request(order_by=[{"field_name": "nope"}]), 0)
    with pytest.raises(InvalidParameterValue, match="Only metrics are supported"):
        lms.build_query(request(order_by=[{"field_name": "params.x"}]), 0)


def test_page_tokens_are_mlflows_and_must_match_the_request() -> None:
    req = request(filter="name = 'a'", order_by=[{"field_name": "name"}])
    token = pagination.encode(100, lms.page_token_bounds(req))
    payload = json.loads(base64.b64decode(token))
    assert payload == {
        "experiment_ids": ["1", "2"],
        "filter_string": "name = 'a'",
        "order_by": [
            {"field_name": "name", "ascending": True, "dataset_name": None, "dataset_digest": None}
        ],
        "offset": 100,
    }
    again = request(filter="name = 'a'", order_by=[{"field_name": "name"}], page_token=token)
    assert pagination.decode(again.page_token, lms.page_token_bounds(again)).offset == 100
    other = request(filter="name = 'b'", order_by=[{"field_name": "name"}], page_token=token)
    with pytest.raises(InvalidParameterValue, match="Filter string in the page token"):
        pagination.decode(other.page_token, lms.page_token_bounds(other))
    with pytest.raises(InvalidParameterValue, match="Invalid page token"):
        pagination.decode("%%%", lms.page_token_bounds(request()))


def test_search_requests_need_experiments_and_dataset_names() -> None:
    with pytest.raises(InvalidParameterValue, match="experiment_ids"):
        mr.parse_search_logged_models({})
    with pytest.raises(InvalidParameterValue, match="`dataset_name`"):
        request(datasets=[{"dataset_digest": "x"}])
    assert request().max_results == 100


def test_finalize_status_by_name_or_number() -> None:
    assert mr.parse_status({"status": "LOGGED_MODEL_READY"}) == "READY"
    assert mr.parse_status({"status": 3}) == "FAILED"
    assert mr.parse_status({"status": "1"}) == "PENDING"
    with pytest.raises(InvalidParameterValue, match="Unknown model status"):
        mr.parse_status({"status": "DONE"})


def test_log_inputs_keeps_the_first_of_a_name_and_digest() -> None:
    def ds(source: str) -> dict[str, Any]:
        return {
            "dataset": {"name": "n", "digest": "d", "source_type": "local", "source": source},
            "tags": [{"key": "mlflow.data.context", "value": "training"}],
        }

    req = mr.parse_log_inputs(
        {"run_id": "r", "datasets": [ds("a"), ds("b")], "models": [{"model_id": M1}]}
    )
    assert [d.source for d in req.datasets] == ["a"]
    assert req.datasets[0].tags == (("mlflow.data.context", "training"),)
    assert req.model_ids == (M1,)


def test_log_model_history_entry_is_mlflows_tags_dict() -> None:
    model = {
        "run_id": "r",
        "artifact_path": "model",
        "utc_time_created": "2024-01-01 00:00:00.000000",
        "model_uuid": "u",
        "flavors": {"sklearn": {"pickled_model": "model.pkl", "config": {"x": 1}}},
        "signature": {"inputs": "[]"},
    }
    req = mr.parse_log_model({"run_id": "r", "model_json": json.dumps(model)})
    assert req.model == {
        "run_id": "r",
        "utc_time_created": "2024-01-01 00:00:00.000000",
        "artifact_path": "model",
        "model_uuid": "u",
        "flavors": {"sklearn": {"pickled_model": "model.pkl"}},
    }
    with pytest.raises(InvalidParameterValue, match="missing mandatory fields"):
        mr.parse_log_model({"run_id": "r", "model_json": "{}"})
    with pytest.raises(InvalidParameterValue, match="is not a valid JSON"):
        mr.parse_log_model({"run_id": "r", "model_json": "[1"})


def model_row(**kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model_id": M1,
        "experiment_id": 3,
        "name": "model",
        "artifact_location": f"mlflow-artifacts:/3/models/{M1}/artifacts",
        "creation_timestamp_ms": 10,
        "last_updated_timestamp_ms": 20,
        "status": "READY",
        "lifecycle_stage": "active",
        "model_type": None,
        "source_run_id": "r" * 32,
        "status_message": None,
        "tags": [("a", "1")],
        "params": [],
        "metrics": [("acc", float("nan"), 5, 1, "r" * 32, "eval", None)],
    }
    row.update(kw)
    return row


def test_logged_model_json_is_mlflows() -> None:
    assert logged_model_to_json(model_row()) == {
        "info": {
            "model_id": M1,
            "experiment_id": "3",
            "name": "model",
            "creation_timestamp_ms": 10,
            "last_updated_timestamp_ms": 20,
            "artifact_uri": f"mlflow-artifacts:/3/models/{M1}/artifacts",
            "status": "LOGGED_MODEL_READY",
            "source_run_id": "r" * 32,
            "tags": [{"key": "a", "value": "1"}],
        },
        "data": {
            "metrics": [
                {
                    "key": "acc",
                    "value": "NaN",
                    "timestamp": 5,
                    "step": 1,
                    "dataset_name": "eval",
                    "model_id": M1,
                    "run_id": "r" * 32,
                }
            ]
        },
    }
    failed = logged_model_to_json(model_row(status="FAILED", tags=[], metrics=[]))
    assert failed["info"]["status"] == "LOGGED_MODEL_UPLOAD_FAILED" and failed["data"] == {}


def test_run_inputs_and_outputs_json() -> None:
    row = {
        "dataset_inputs": [
            ("train", "d1", "local", "{}", None, '{"n": 1}', [("mlflow.data.context", "training")])
        ],
        "model_inputs": [M1],
        "model_outputs": [(M1, 0)],
    }
    assert run_io_to_json(row) == (
        {
            "dataset_inputs": [
                {
                    "tags": [{"key": "mlflow.data.context", "value": "training"}],
                    "dataset": {
                        "name": "train",
                        "digest": "d1",
                        "source_type": "local",
                        "source": "{}",
                        "profile": '{"n": 1}',
                    },
                }
            ],
            "model_inputs": [{"model_id": M1}],
        },
        {"model_outputs": [{"model_id": M1, "step": 0}]},
    )
    assert run_io_to_json({}) == ({}, {})


def test_run_json_carries_inputs_and_outputs() -> None:
    run = {
        "run_id": "r" * 32,
        "experiment_id": 0,
        "name": "n",
        "user_id": "u",
        "status": "RUNNING",
        "start_time": 1,
        "end_time": None,
        "artifact_uri": "",
        "lifecycle_stage": "active",
        "params": [],
        "tags": [],
        "metrics": [],
        "dataset_inputs": [],
        "model_inputs": [],
        "model_outputs": [(M1, 3)],
    }
    out = run_row_to_json(run)
    assert out["inputs"] == {} and out["outputs"] == {
        "model_outputs": [{"model_id": M1, "step": 3}]
    }


def test_metrics_with_a_model_id_become_model_points() -> None:
    raw = [
        {"key": "a", "value": 1.0, "timestamp": 5, "step": 2, "model_id": M1,
         "dataset_name": "eval", "dataset_digest": "d"},
        {"key": "b", "value": 2.0, "timestamp": 6},
    ]  # fmt: skip
    checked = [Metric("a", 1.0, 5, 2), Metric("b", 2.0, 6, 0)]
    assert mr.model_metric_events("r" * 32, raw, checked) == [
        LoggedModelMetricLogged("r" * 32, M1, "a", 1.0, 5, 2, "eval", "d")
    ]
    assert mr.model_metric_events("r" * 32, None, checked) == []
