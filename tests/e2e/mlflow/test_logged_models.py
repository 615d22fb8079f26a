"""MLflow 3 logged models, datasets and run outputs with the real ``mlflow`` client.

The seed scenario (sklearn autolog, then ``runs:/<id>/model``) plus the explicit APIs; every
assertion also holds against ``mlflow server`` (``RUNSTREAM_COMPAT_TARGET=mlflow``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, LoggedModelStatus
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression

pytestmark = pytest.mark.filterwarnings("ignore")


def api(uri: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{uri}/api/2.0/mlflow{path}", timeout=30, **kwargs)


def test_seed_sklearn_autolog_model_downloads_and_predicts(
    unique: str, tmp_path: Path, tracking_uri: str
) -> None:
    mlflow.set_experiment(f"autolog-{unique}")
    mlflow.sklearn.autolog()
    try:
        data = load_diabetes()
        x, y = data.data, data.target
        with mlflow.start_run() as run:
            model = RandomForestRegressor(n_estimators=20, max_depth=4, random_state=0)
            model.fit(x, y)
    finally:
        mlflow.sklearn.autolog(disable=True)
    run_id = run.info.run_id

    local = mlflow.artifacts.download_artifacts(
        f"runs:/{run_id}/model", dst_path=str(tmp_path / "dl")
    )
    assert (Path(local) / "MLmodel").exists()
    loaded = mlflow.sklearn.load_model(local)
    np.testing.assert_array_equal(loaded.predict(x[:25]), model.predict(x[:25]))

    got = MlflowClient().get_run(run_id)
    assert got.data.params["n_estimators"] == "20"
    assert "training_score" in got.data.metrics
    outputs = got.outputs.model_outputs
    assert len(outputs) == 1
    logged = MlflowClient().get_logged_model(outputs[0].model_id)
    assert logged.source_run_id == run_id
    assert logged.name == "model"
    assert logged.status == LoggedModelStatus.READY
    assert logged.artifact_location.endswith(f"/models/{logged.model_id}/artifacts")
    # Autolog links the training metrics to the model (metrics sent with its model_id).
    assert "training_score" in {m.key for m in logged.metrics or []}
    assert all(m.run_id == run_id for m in logged.metrics or [])
    found = mlflow.search_logged_models(
        experiment_ids=[got.info.experiment_id],
        filter_string="name = 'model'",
        output_format="list",
    )
    assert [m.model_id for m in found] == [logged.model_id]
    by_metric = mlflow.search_logged_models(
        experiment_ids=[got.info.experiment_id],
        filter_string="metrics.training_score > 0",
        order_by=[{"field_name": "metrics.training_score", "ascending": False}],
        output_format="list",
    )
    assert [m.model_id for m in by_metric] == [logged.model_id]
    contexts = [
        {t.key: t.value for t in d.tags}.get("mlflow.data.context")
        for d in got.inputs.dataset_inputs
    ]
    assert "train" in contexts


def test_log_model_explicitly_then_search_and_get(unique: str, tmp_path: Path) -> None:
    experiment_id = mlflow.set_experiment(f"explicit-{unique}").experiment_id
    x = np.arange(20, dtype=float).reshape(-1, 1)
    y = 3 * x[:, 0] + 1
    reg = LinearRegression().fit(x, y)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(reg, name="linear", params={"alpha": "0"})
        other = mlflow.sklearn.log_model(reg, name="second")
    client = MlflowClient()
    model = client.get_logged_model(info.model_id)
    assert model.name == "linear"
    assert model.experiment_id == experiment_id
    assert model.source_run_id == run.info.run_id
    assert model.status == LoggedModelStatus.READY
    assert model.params == {"alpha": "0"}

    everything = mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list")
    # Newest first, as MLflow orders by default.
    assert [m.model_id for m in everything] == [other.model_id, info.model_id]
    by_param = mlflow.search_logged_models(
        experiment_ids=[experiment_id],
        filter_string="params.alpha = '0'",
        output_format="list",
    )
    assert [m.model_id for m in by_param] == [info.model_id]
    page = client.search_logged_models(
        experiment_ids=[experiment_id], max_results=1, order_by=[{"field_name": "name"}]
    )
    assert [m.name for m in page] == ["linear"] and page.token
    rest = client.search_logged_models(
        experiment_ids=[experiment_id],
        max_results=1,
        order_by=[{"field_name": "name"}],
        page_token=page.token,
    )
    assert [m.name for m in rest] == ["second"] and not rest.token

    loaded = mlflow.sklearn.load_model(f"models:/{info.model_id}")
    np.testing.assert_allclose(loaded.predict(x), reg.predict(x))
    got = client.get_run(run.info.run_id)
    assert {o.model_id for o in got.outputs.model_outputs} == {info.model_id, other.model_id}


def test_mlflow2_log_model_appends_history_tag(unique: str) -> None:
    mlflow.set_experiment(f"history-{unique}")
    client = MlflowClient()
    with mlflow.start_run() as run:
        for path in ("first", "second"):
            model = Model(
                artifact_path=path,
                run_id=run.info.run_id,
                flavors={"python_function": {"loader_module": "x", "config": {"k": 1}}},
            )
            client._record_logged_model(run.info.run_id, model)
    history = json.loads(client.get_run(run.info.run_id).data.tags["mlflow.log-model.history"])
    assert [h["artifact_path"] for h in history] == ["first", "second"]
    assert history[0]["flavors"] == {"python_function": {"loader_module": "x"}}
    assert {"run_id", "utc_time_created", "model_uuid"} <= set(history[0])


def test_logged_model_tags_params_finalize_delete(unique: str, tracking_uri: str) -> None:
    experiment_id = mlflow.set_experiment(f"lifecycle-{unique}").experiment_id
    client = MlflowClient()
    model = client.create_logged_model(
        experiment_id, name="m1", tags={"a": "1"}, params={"p": "x"}, model_type="agent"
    )
    assert model.status == LoggedModelStatus.PENDING
    assert model.tags == {"a": "1"} and model.params == {"p": "x"}
    assert model.model_type == "agent"
    client.set_logged_model_tags(model.model_id, {"b": "2", "a": "3"})
    client.log_model_params(model.model_id, {"q": "y"})
    client.delete_logged_model_tag(model.model_id, "b")
    finalized = client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
    assert finalized.status == LoggedModelStatus.FAILED
    got = client.get_logged_model(model.model_id)
    assert got.tags == {"a": "3"}
    assert got.params == {"p": "x", "q": "y"}
    assert got.last_updated_timestamp >= got.creation_timestamp

    with pytest.raises(MlflowException) as missing_tag:
        client.delete_logged_model_tag(model.model_id, "nope")
    assert missing_tag.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    client.delete_logged_model(model.model_id)
    with pytest.raises(MlflowException) as gone:
        client.get_logged_model(model.model_id)
    assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list") == []

    unknown = "m-" + "0" * 32
    with pytest.raises(MlflowException) as exc:
        client.finalize_logged_model(unknown, LoggedModelStatus.READY)
    assert exc.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert f"Logged model with ID '{unknown}' not found." in str(exc.value)
    resp = api(tracking_uri, "GET", f"/logged-models/{unknown}")
    assert resp.status_code == 404
    assert resp.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_log_inputs_datasets_visible_in_run(unique: str) -> None:
    mlflow.set_experiment(f"datasets-{unique}")
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4, 5, 6]})
    train = mlflow.data.from_pandas(frame, name="frame", targets="b")
    array = mlflow.data.from_numpy(np.arange(12, dtype=float).reshape(4, 3), name="arr")
    with mlflow.start_run() as run:
        mlflow.log_input(train, context="training", tags={"split": "a"})
        mlflow.log_input(array, context="eval")
        mlflow.log_input(train, context="ignored: already logged")
    got = MlflowClient().get_run(run.info.run_id)
    inputs = got.inputs.dataset_inputs
    assert [d.dataset.name for d in inputs] == ["frame", "arr"]
    first = inputs[0]
    assert first.dataset.digest == train.digest
    assert first.dataset.source_type == train.source._get_source_type()
    assert first.dataset.schema and first.dataset.profile
    assert {t.key: t.value for t in first.tags} == {
        "mlflow.data.context": "training",
        "split": "a",
    }
    assert {t.key: t.value for t in inputs[1].tags} == {"mlflow.data.context": "eval"}

    # A second run of the experiment reuses the dataset (same name and digest).
    with mlflow.start_run() as second:
        mlflow.log_input(train, context="training")
    again = MlflowClient().get_run(second.info.run_id).inputs.dataset_inputs
    assert [(d.dataset.name, d.dataset.digest) for d in again] == [("frame", train.digest)]


def test_inputs_and_outputs_refuse_unknown_and_deleted_runs(unique: str) -> None:
    mlflow.set_experiment(f"refusals-{unique}")
    client = MlflowClient()
    dataset = mlflow.data.from_numpy(np.zeros((2, 2)), name="zeros")
    with pytest.raises(MlflowException) as exc:
        client.log_inputs("f" * 32, datasets=[DatasetInput(dataset._to_mlflow_entity())])
    assert exc.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with mlflow.start_run() as run:
        pass
    client.delete_run(run.info.run_id)
    with pytest.raises(MlflowException) as deleted:
        client.log_inputs(run.info.run_id, datasets=[DatasetInput(dataset._to_mlflow_entity())])
    assert deleted.value.error_code == "INVALID_PARAMETER_VALUE"


@pytest.mark.skipif(
    os.environ.get("RUNSTREAM_COMPAT_TARGET", "runstream") != "runstream",
    reason="runstream's listing route; MLflow's answers the same shape",
)
def test_list_logged_model_artifacts(unique: str, tracking_uri: str) -> None:
    mlflow.set_experiment(f"listing-{unique}")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(LinearRegression().fit([[0.0], [1.0]], [0, 1]), name="m")
    resp = api(tracking_uri, "GET", f"/logged-models/{info.model_id}/artifacts/directories")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["root_uri"].endswith(f"/models/{info.model_id}/artifacts")
    assert "MLmodel" in {f["path"] for f in body["files"]}
