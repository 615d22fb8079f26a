"""What MLflow users do (shared/seeds), with the real ``mlflow`` client, against the target.

Every assertion holds against ``mlflow server`` itself (``RUNSTREAM_COMPAT_TARGET=mlflow``)
as well as against runstream: the same file is the compatibility proof.
"""

from __future__ import annotations

import math
import os
import random
import threading
from pathlib import Path
from typing import Any, Protocol

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException


class Target(Protocol):
    name: str
    uri: str


MAX_DOUBLE = 1.7976931348623157e308
TARGET = os.environ.get("RUNSTREAM_COMPAT_TARGET", "runstream")


def error_code(exc: pytest.ExceptionInfo[MlflowException]) -> str:
    return str(exc.value.error_code)


def api(target: Target, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, target.uri + path, timeout=30, **kwargs)


# -- seed 003: the full example ------------------------------------------------------------------


def test_seed_003_full_example_reads_back_value_by_value(unique: str) -> None:
    rng = random.Random(3)
    experiment = mlflow.set_experiment(f"experiment_1-{unique}")
    sent: dict[str, list[tuple[int, float]]] = {}

    def remember(key: str, value: float, step: int = 0) -> None:
        sent.setdefault(key, []).append((step, value))

    with mlflow.start_run(run_name="Run Name #1") as run:
        mlflow.log_param("param1", 0.1283)
        mlflow.log_param("param2", 0.238292)
        mlflow.log_params({"param3": 0.392, "param4": 0.4829})
        value = 100 * rng.random()
        mlflow.log_metric("metric_once", value)
        remember("metric_once", value)
        batch = {"metric_1": 1.1019, "metric_2": 2.3829, "metric_3": 3.9842}
        mlflow.log_metrics(batch)
        for key, v in batch.items():
            remember(key, v)
        for i in range(10):
            v = i * rng.random()
            mlflow.log_metric("metric_update", v)
            remember("metric_update", v)
            v = 30 * i * (rng.random() + 1)
            mlflow.log_metric("metric_step", v, step=i)
            remember("metric_step", v, i)
            pair = {
                "metric_step_3": 100 * i * (rng.random() + 1),
                "metric_step_4": 200 * i * (rng.random() + 1),
            }
            mlflow.log_metrics(pair, step=i)
            for key, v in pair.items():
                remember(key, v, i)

    client = MlflowClient()
    got = client.get_run(run.info.run_id)
    assert got.info.experiment_id == experiment.experiment_id
    assert got.info.run_name == "Run Name #1"
    assert got.info.status == "FINISHED"
    assert got.info.end_time is not None and got.info.end_time >= got.info.start_time
    assert got.info.artifact_uri == (f"{experiment.artifact_location}/{run.info.run_id}/artifacts")
    assert got.data.tags["mlflow.runName"] == "Run Name #1"
    assert got.data.params == {
        "param1": "0.1283",
        "param2": "0.238292",
        "param3": "0.392",
        "param4": "0.4829",
    }
    assert set(got.data.metrics) == set(sent)
    for key, points in sent.items():
        history = client.get_metric_history(run.info.run_id, key)
        returned = [(m.step, m.value) for m in history]
        assert sorted(returned) == sorted(points), key
        order = [(m.timestamp, m.step, m.value) for m in history]
        assert order == sorted(order), key
        # The run's value is MLflow's latest: greatest (step, timestamp, value).
        latest = max(history, key=lambda m: (m.step, m.timestamp, m.value))
        assert got.data.metrics[key] == latest.value, key


def test_metric_history_pages_like_mlflow(unique: str) -> None:
    mlflow.set_experiment(f"paging-{unique}")
    with mlflow.start_run() as run:
        for i in range(7):
            mlflow.log_metric("loss", 1.0 / (i + 1), step=i, timestamp=1_000 + i)
    store = MlflowClient()._tracking_client.store
    pages, token = [], None
    while True:
        page = store.get_metric_history(run.info.run_id, "loss", max_results=3, page_token=token)
        pages.append([m.step for m in page])
        token = page.token
        if not token:
            break
    assert pages == [[0, 1, 2], [3, 4, 5], [6]]
    assert MlflowClient().get_metric_history("0" * 32, "loss") == []


def test_nan_and_infinity_are_accepted(unique: str) -> None:
    mlflow.set_experiment(f"nan-{unique}")
    with mlflow.start_run() as run:
        mlflow.log_metric("nan", math.nan)
        mlflow.log_metric("inf", math.inf, step=1)
        mlflow.log_metric("neg", -math.inf, step=1)
    got = MlflowClient().get_run(run.info.run_id).data.metrics
    assert math.isnan(got["nan"])
    # MLflow's SQL store clamps ±inf to ±max double; runstream keeps it exact.
    assert got["inf"] in (math.inf, MAX_DOUBLE)
    assert got["neg"] in (-math.inf, -MAX_DOUBLE)
    history = MlflowClient().get_metric_history(run.info.run_id, "nan")
    assert len(history) == 1 and math.isnan(history[0].value)


def test_bulk_interval_samples_as_the_ui_sees(compat_target: Target, unique: str) -> None:
    mlflow.set_experiment(f"bulk-{unique}")
    with mlflow.start_run() as run:
        for start in range(0, 100, 50):
            mlflow.log_metrics({"x": 0.0}, step=start)  # one point per step at first...
            MlflowClient().log_batch(
                run.info.run_id,
                metrics=[
                    mlflow.entities.Metric("y", float(s), 1_000 + s, s)
                    for s in range(start, start + 50)
                ],
            )
    path = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
    params: dict[str, Any] = {"run_ids": [run.info.run_id], "metric_key": "y", "max_results": 5}
    body = api(compat_target, "GET", path, params=params).json()
    assert [m["step"] for m in body["metrics"]] == [0, 20, 40, 60, 99]
    assert {m["run_id"] for m in body["metrics"]} == {run.info.run_id}
    params.update(start_step=10, end_step=19, max_results=3)
    body = api(compat_target, "GET", path, params=params).json()
    assert [m["step"] for m in body["metrics"]] == [10, 14, 19]
    params = {"run_ids": [run.info.run_id], "metric_key": "y", "start_step": 3}
    resp = api(compat_target, "GET", path, params=params)
    assert resp.status_code == 400
    assert resp.json()["message"] == (
        "If either start step or end step are specified, both must be specified."
    )


# -- experiments ---------------------------------------------------------------------------------


def test_experiments_create_get_rename_tag_delete_restore(unique: str) -> None:
    client = MlflowClient()
    name = f"exp-{unique}"
    experiment_id = mlflow.create_experiment(name, tags={"team": "vision"})
    experiment = mlflow.get_experiment_by_name(name)
    assert experiment is not None
    assert experiment.experiment_id == experiment_id
    assert experiment.artifact_location == f"mlflow-artifacts:/{experiment_id}"
    assert experiment.tags == {"team": "vision"}
    assert experiment.lifecycle_stage == "active"

    with pytest.raises(MlflowException) as exc:
        mlflow.create_experiment(name)
    assert error_code(exc) == "RESOURCE_ALREADY_EXISTS"

    client.set_experiment_tag(experiment_id, "stage", "dev")
    client.delete_experiment_tag(experiment_id, "team")
    assert client.get_experiment(experiment_id).tags == {"stage": "dev"}
    with pytest.raises(MlflowException) as exc:
        client.delete_experiment_tag(experiment_id, "team")
    assert error_code(exc) == "RESOURCE_DOES_NOT_EXIST"

    client.rename_experiment(experiment_id, f"renamed-{unique}")
    assert client.get_experiment(experiment_id).name == f"renamed-{unique}"
    assert mlflow.get_experiment_by_name(name) is None

    run_id = client.create_run(experiment_id).info.run_id
    client.delete_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    # MLflow cascades: the experiment's runs are deleted with it, and restored with it.
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    with pytest.raises(MlflowException) as exc:
        client.log_metric(run_id, "m", 1.0)
    assert error_code(exc) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as exc:
        client.create_run(experiment_id)
    assert error_code(exc) == "INVALID_PARAMETER_VALUE"
    found = client.search_experiments(
        view_type=ViewType.DELETED_ONLY, filter_string=f"name = 'renamed-{unique}'"
    )
    assert [e.experiment_id for e in found] == [experiment_id]
    client.restore_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "active"
    assert client.get_run(run_id).info.lifecycle_stage == "active"
    client.log_metric(run_id, "m", 1.0)

    with pytest.raises(MlflowException) as exc:
        client.get_experiment("987654321")
    assert error_code(exc) == "RESOURCE_DOES_NOT_EXIST"


def test_search_experiments_filters_orders_and_pages(unique: str) -> None:
    client = MlflowClient()
    ids = [client.create_experiment(f"se-{unique}-{i}", tags={"i": str(i)}) for i in range(5)]
    found = client.search_experiments(
        filter_string=f"name LIKE 'se-{unique}-%'", order_by=["name DESC"], max_results=2
    )
    assert [e.experiment_id for e in found] == [ids[4], ids[3]]
    assert found.token
    rest = client.search_experiments(
        filter_string=f"name LIKE 'se-{unique}-%'",
        order_by=["name DESC"],
        max_results=10,
        page_token=found.token,
    )
    assert [e.experiment_id for e in rest] == [ids[2], ids[1], ids[0]]
    assert rest[0].tags == {"i": "2"}
    tagged = client.search_experiments(filter_string=f"name LIKE 'se-{unique}%' AND tags.i = '3'")
    assert [e.experiment_id for e in tagged] == [ids[3]]


# -- runs ------------------------------------------------------------------------------------------


def test_nested_runs_carry_the_parent_tag(unique: str) -> None:
    experiment = mlflow.set_experiment(f"nested-{unique}")
    with (
        mlflow.start_run(run_name="parent") as parent,
        mlflow.start_run(run_name="child", nested=True) as child,
    ):
        mlflow.log_param("depth", 1)
    client = MlflowClient()
    assert client.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id
    children = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert [r.info.run_id for r in children] == [child.info.run_id]
    assert children[0].data.params == {"depth": "1"}


def test_generated_run_names_have_mlflows_shape(unique: str) -> None:
    mlflow.set_experiment(f"names-{unique}")
    with mlflow.start_run() as run:
        pass
    got = MlflowClient().get_run(run.info.run_id)
    name = got.info.run_name
    adjective, noun, number = name.split("-")
    assert adjective.isalpha() and noun.isalpha() and 0 <= int(number) <= 1000
    assert len(name) <= 20
    assert got.data.tags["mlflow.runName"] == name


def test_run_tags_update_terminate_delete_restore(unique: str) -> None:
    client = MlflowClient()
    experiment_id = client.create_experiment(f"life-{unique}")
    run = client.create_run(experiment_id, run_name="first", tags={"keep": "1"})
    run_id = run.info.run_id
    assert run.info.run_name == "first"
    assert run.info.lifecycle_stage == "active"
    assert run.data.tags["mlflow.runName"] == "first"

    client.set_tag(run_id, "gone", "soon")
    client.delete_tag(run_id, "gone")
    with pytest.raises(MlflowException) as exc:
        client.delete_tag(run_id, "gone")
    assert error_code(exc) == "RESOURCE_DOES_NOT_EXIST"

    client.update_run(run_id, name="second")
    got = client.get_run(run_id)
    assert got.info.run_name == "second"
    assert got.data.tags["mlflow.runName"] == "second"
    client.set_tag(run_id, "mlflow.runName", "third")
    assert client.get_run(run_id).info.run_name == "third"

    client.set_terminated(run_id, status="FAILED", end_time=1_700_000_000_123)
    got = client.get_run(run_id)
    assert (got.info.status, got.info.end_time) == ("FAILED", 1_700_000_000_123)
    assert got.data.tags == {"keep": "1", "mlflow.runName": "third"}

    client.delete_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    with pytest.raises(MlflowException) as exc:
        client.log_metric(run_id, "m", 1.0)
    assert error_code(exc) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as exc:
        client.log_param(run_id, "p", "1")
    assert error_code(exc) == "INVALID_PARAMETER_VALUE"
    assert client.search_runs([experiment_id]) == []
    deleted = client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [run_id]
    client.restore_run(run_id)
    client.log_metric(run_id, "m", 1.0)
    assert client.get_run(run_id).data.metrics == {"m": 1.0}


def test_unknown_run_is_resource_does_not_exist() -> None:
    client = MlflowClient()
    for call in (
        lambda: client.get_run("f" * 32),
        lambda: client.log_metric("f" * 32, "m", 1.0),
        lambda: client.log_param("f" * 32, "p", "v"),
        lambda: client.set_tag("f" * 32, "t", "v"),
        lambda: client.log_batch("f" * 32, params=[mlflow.entities.Param("a", "b")]),
    ):
        with pytest.raises(MlflowException) as exc:
            call()
        assert error_code(exc) == "RESOURCE_DOES_NOT_EXIST"


def test_oversized_log_batch_from_the_client_is_refused_by_its_count(
    compat_target: Target, unique: str
) -> None:
    """The client's own wire code (``RestStore.log_batch``, below ``MlflowClient.log_batch``,
    which would split the batch) sends 1,001 metrics: refused, and nothing of it is kept. With
    a bad name among them runstream still answers with the count (checked before any item);
    MLflow's server checks the items first and names the bad one. Same status and code."""
    mlflow.set_experiment(f"oversized-{unique}")
    client = MlflowClient()
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        store = client._tracking_client.store
        metrics = [mlflow.entities.Metric("m", float(i), 1, i) for i in range(1001)]
        with pytest.raises(MlflowException) as exc:
            store.log_batch(run_id, metrics=metrics, params=[], tags=[])
        assert error_code(exc) == "INVALID_PARAMETER_VALUE"
        count = (
            "A batch logging request can contain at most 1000 metrics. Got 1001 metrics. Please"
            " split up metrics across multiple requests and try again."
        )
        assert exc.value.message == f"INVALID_PARAMETER_VALUE: {count}"
        metrics[500] = mlflow.entities.Metric("../m", 1.0, 1, 0)
        with pytest.raises(MlflowException) as exc:
            store.log_batch(run_id, metrics=metrics, params=[], tags=[])
        assert error_code(exc) == "INVALID_PARAMETER_VALUE"
        if compat_target.name == "mlflow":
            assert "'metrics[500].name'" in exc.value.message
        else:
            assert exc.value.message == f"INVALID_PARAMETER_VALUE: {count}"
        # The client's own log_batch splits at MLflow's limits: all 1,001 arrive.
        metrics[500] = mlflow.entities.Metric("m", 500.0, 1, 500)
        client.log_batch(run_id, metrics=metrics)
    history = client.get_metric_history(run_id, "m")
    assert sorted((m.step, m.value) for m in history) == [(i, float(i)) for i in range(1001)]


def test_changing_a_param_is_refused(unique: str) -> None:
    mlflow.set_experiment(f"params-{unique}")
    with mlflow.start_run() as run:
        mlflow.log_param("lr", 0.1)
        mlflow.log_param("lr", 0.1)  # the same value again is fine
        with pytest.raises(MlflowException) as exc:
            mlflow.log_param("lr", 0.2)
        assert error_code(exc) == "INVALID_PARAMETER_VALUE"
        assert "Changing param values is not allowed" in str(exc.value)
        with pytest.raises(MlflowException) as exc:
            mlflow.log_params({"lr": 0.3, "other": 1})
        assert error_code(exc) == "INVALID_PARAMETER_VALUE"
    assert MlflowClient().get_run(run.info.run_id).data.params == {"lr": "0.1"}


def test_log_params_conflict_is_worded_as_a_batch(unique: str) -> None:
    mlflow.set_experiment(f"wording-{unique}")
    with mlflow.start_run() as run:
        mlflow.log_param("lr", "0.1")
        with pytest.raises(MlflowException) as exc:
            mlflow.log_params({"lr": "0.2"})
    assert exc.value.message == (
        "INVALID_PARAMETER_VALUE: Changing param values is not allowed. Params were already logged="
        f"'[{{'key': 'lr', 'old_value': '0.1', 'new_value': '0.2'}}]' for run ID="
        f"'{run.info.run_id}'."
    )


def test_two_threads_racing_on_one_param_one_wins(unique: str) -> None:
    mlflow.set_experiment(f"race-{unique}")
    client = MlflowClient()
    with mlflow.start_run() as run:
        pass
    for attempt in range(5):
        key = f"seed{attempt}"
        barrier = threading.Barrier(2)
        outcomes: dict[str, str] = {}

        def log(
            value: str,
            key: str = key,
            barrier: threading.Barrier = barrier,
            outcomes: dict[str, str] = outcomes,
        ) -> None:
            barrier.wait()
            try:
                client.log_param(run.info.run_id, key, value)
                outcomes[value] = "ok"
            except MlflowException as exc:
                outcomes[value] = str(exc.error_code)

        threads = [threading.Thread(target=log, args=(v,)) for v in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes.values()) == ["INVALID_PARAMETER_VALUE", "ok"], outcomes
        winner = next(v for v, o in outcomes.items() if o == "ok")
        assert client.get_run(run.info.run_id).data.params[key] == winner


def test_search_runs_filters_order_and_pages(unique: str) -> None:
    experiment = mlflow.set_experiment(f"search-{unique}")
    ids = []
    for i in range(6):
        with mlflow.start_run(run_name=f"trial-{i}") as run:
            mlflow.log_params({"model": "resnet50" if i % 2 else "vit", "lr": str(0.1 * i)})
            mlflow.log_metrics({"acc": i / 10, "train/loss": 1.0 - i / 10})
            mlflow.set_tag("team", "a" if i < 3 else "b")
            ids.append(run.info.run_id)
    client = MlflowClient()
    exp = [experiment.experiment_id]

    def search(filter_string: str = "", **kwargs: Any) -> list[str]:
        return [r.info.run_id for r in client.search_runs(exp, filter_string, **kwargs)]

    assert search("metrics.acc > 0.25", order_by=["metrics.acc ASC"]) == ids[3:]
    assert search("metrics.`train/loss` < 0.75", order_by=["metrics.acc DESC"]) == ids[:2:-1]
    assert search("params.model LIKE 'res%'", order_by=["attributes.run_name"]) == ids[1::2]
    assert search("tags.team = 'b' and params.model = 'vit'") == [ids[4]]
    assert search("attributes.run_name = 'trial-2'") == [ids[2]]
    assert search("", order_by=["start_time DESC"]) == ids[::-1]

    first = client.search_runs(exp, order_by=["metrics.acc DESC"], max_results=4)
    assert [r.info.run_id for r in first] == ids[:1:-1]
    assert first.token
    second = client.search_runs(
        exp, order_by=["metrics.acc DESC"], max_results=4, page_token=first.token
    )
    assert [r.info.run_id for r in second] == [ids[1], ids[0]]
    assert not second.token
    full = second[0]
    assert full.data.params == {"model": "resnet50", "lr": "0.1"}
    assert full.data.metrics == {"acc": 0.1, "train/loss": 0.9}
    assert full.data.tags["team"] == "a"

    runs_df = mlflow.search_runs(experiment_names=[f"search-{unique}"])
    assert sorted(runs_df["run_id"]) == sorted(ids)


# -- artifacts ---------------------------------------------------------------------------------


def test_artifacts_in_nested_folders(compat_target: Target, unique: str, tmp_path: Path) -> None:
    mlflow.set_experiment(f"art-{unique}")
    source = tmp_path / "model.txt"
    source.write_text("weights")
    (tmp_path / "notes.md").write_text("# notes")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(source), artifact_path="models/v1")
        mlflow.log_artifact(str(tmp_path / "notes.md"))
    run_id = run.info.run_id
    out = Path(mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(tmp_path / "dl")))
    assert (out / "models" / "v1" / "model.txt").read_text() == "weights"
    assert (out / "notes.md").read_text() == "# notes"
    body = api(
        compat_target,
        "GET",
        "/api/2.0/mlflow/artifacts/list",
        params={"run_id": run_id, "path": "models/v1"},
    ).json()
    assert body.get("root_uri") == run.info.artifact_uri, body
    assert body["files"] == [{"path": "models/v1/model.txt", "is_dir": False, "file_size": 7}]


def test_client_list_artifacts(unique: str, tmp_path: Path) -> None:
    """``MlflowClient.list_artifacts`` of a run also searches the run's logged models
    (MLflow 3), so this one needs the logged-models routes too."""
    mlflow.set_experiment(f"list-{unique}")
    (tmp_path / "model.txt").write_text("weights")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "model.txt"), artifact_path="models/v1")
    listed = MlflowClient().list_artifacts(run.info.run_id, "models")
    assert [(f.path, f.is_dir) for f in listed] == [("models/v1", True)]


# -- the wire: statuses and messages, exactly ---------------------------------------------------


HINT = " See the API docs for more information about request parameters."


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "code", "message"),
    [
        (
            "POST",
            "/api/2.0/mlflow/runs/log-metric",
            {},
            400,
            "INVALID_PARAMETER_VALUE",
            "Missing value for required parameter 'run_id'." + HINT,
        ),
        (
            "POST",
            "/api/2.0/mlflow/experiments/create",
            {"name": 5},
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid value 5 for parameter 'name' supplied:  Hint: Value was of type 'int'." + HINT,
        ),
        (
            "GET",
            "/api/2.0/mlflow/experiments/get",
            {"experiment_id": "abc"},
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid experiment ID 'abc'. Experiment ID must be a valid integer.",
        ),
        (
            "GET",
            "/api/2.0/mlflow/experiments/get-by-name",
            {"experiment_name": "no such experiment, surely"},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "Could not find experiment with name 'no such experiment, surely'",
        ),
        (
            "GET",
            "/api/2.0/mlflow/runs/get",
            {"run_id": "0123456789abcdef0123456789abcdef"},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "Run with id=0123456789abcdef0123456789abcdef not found",
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/log-batch",
            {"run_id": "r" * 32, "params": [{"key": "a", "value": "1"}, {"key": "a"}]},
            400,
            "INVALID_PARAMETER_VALUE",
            "Duplicate parameter keys have been submitted: ['a']. Please ensure the request"
            " contains only one param value per param key.",
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/log-batch",
            {
                "run_id": "r" * 32,
                "metrics": [{"key": "m", "value": 1, "timestamp": 1}] * 1001,
            },
            400,
            "INVALID_PARAMETER_VALUE",
            "A batch logging request can contain at most 1000 metrics. Got 1001 metrics. Please"
            " split up metrics across multiple requests and try again.",
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/log-batch",
            {"run_id": "r" * 32, "metrics": [{"key": "m", "value": 1}]},
            400,
            "INVALID_PARAMETER_VALUE",
            "Missing value for required parameter 'metrics[0].timestamp'." + HINT,
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/log-batch",
            {"run_id": "r" * 32, "metrics": [{"key": "../m", "value": 1, "timestamp": 1}]},
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid value \"../m\" for parameter 'metrics[0].name' supplied: Names may be"
            " treated as files in certain cases, and must not resolve to other names when"
            " treated as such. This name would resolve to '../m'",
        ),
        (
            "GET",
            "/api/2.0/mlflow/metrics/get-history",
            {"run_id": "r" * 32, "metric_key": "m", "max_results": "0"},
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid value 0 for parameter 'max_results' supplied. It must be a positive integer.",
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/create",
            {"experiment_id": "987654321"},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "No Experiment with id=987654321 exists",
        ),
    ],
)
def test_errors_match_mlflow_exactly(
    compat_target: Target,
    method: str,
    path: str,
    payload: dict[str, Any],
    status: int,
    code: str,
    message: str,
) -> None:
    kwargs: dict[str, Any] = {"params": payload} if method == "GET" else {"json": payload}
    resp = api(compat_target, method, path, **kwargs)
    body = resp.json()
    got = {"error_code": body.get("error_code"), "message": body.get("message")}
    assert (resp.status_code, got) == (status, {"error_code": code, "message": message})


def test_error_json_carries_mlflow_3_classification(compat_target: Target) -> None:
    resp = api(compat_target, "GET", "/api/2.0/mlflow/runs/get", params={"run_id": "f" * 32})
    body = resp.json()
    assert (body.get("sqlstate"), body.get("error_class")) == ("KAM00", "RESOURCE_NOT_FOUND")


def test_server_info_says_sql_store(compat_target: Target) -> None:
    info = api(compat_target, "GET", "/api/3.0/mlflow/server-info").json()
    assert info["store_type"] == "SqlStore"
    assert info["workspaces_enabled"] is False
    assert {"multipart_uploads_enabled", "features_enabled"} <= set(info)


def test_create_run_answers_mlflows_json(compat_target: Target, unique: str) -> None:
    experiment_id = MlflowClient().create_experiment(f"json-{unique}")
    resp = api(
        compat_target,
        "POST",
        "/api/2.0/mlflow/runs/create",
        json={"experiment_id": experiment_id, "start_time": 123, "run_name": "r", "user_id": "u"},
    )
    run = resp.json()["run"]
    run_id = run["info"]["run_id"]
    assert run["info"] == {
        "run_uuid": run_id,
        "experiment_id": experiment_id,
        "run_name": "r",
        "user_id": "u",
        "status": "RUNNING",
        "start_time": 123,
        "artifact_uri": f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts",
        "lifecycle_stage": "active",
        "run_id": run_id,
    }
    assert run["data"] == {"tags": [{"key": "mlflow.runName", "value": "r"}]}
    empty = api(compat_target, "POST", "/api/2.0/mlflow/runs/search", json={
        "experiment_ids": [experiment_id], "filter": "metrics.x > 1"
    })  # fmt: skip
    assert empty.json() == {}
