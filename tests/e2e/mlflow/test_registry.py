"""The model registry with the real ``mlflow`` client: register from a run and from a logged
model, load by alias and by version, stages, search, tags, renames and deletes.

Every assertion also holds against ``mlflow server`` (``RUNSTREAM_COMPAT_TARGET=mlflow``,
``bench/mlflow_proof.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LinearRegression

pytestmark = pytest.mark.filterwarnings("ignore")

X = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 5.0], [4.0, 3.0]])
Y = np.array([3.0, 3.5, 8.0, 7.5])


def log_sklearn_model(experiment: str) -> tuple[str, str, LinearRegression]:
    """(run id, logged model id, fitted model) of a run that logged one sklearn model."""
    mlflow.set_experiment(experiment)
    model = LinearRegression().fit(X, Y)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(model, name="model")
    return run.info.run_id, info.model_id, model


def error_code(call: Any) -> str:
    with pytest.raises(MlflowException) as raised:
        call()
    return str(raised.value.error_code)


def test_register_from_run_and_logged_model_then_load_by_alias_and_version(
    unique: str, tracking_uri: str
) -> None:
    run_id, model_id, model = log_sklearn_model(f"registry-{unique}")
    name = f"fraud-{unique}"
    client = MlflowClient()

    first = mlflow.register_model(f"runs:/{run_id}/model", name)
    second = client.create_model_version(name, f"models:/{model_id}", model_id=model_id)
    assert (first.version, second.version) == ("1", "2")
    assert first.run_id == run_id and second.run_id == run_id
    assert first.status == "READY"

    client.set_registered_model_alias(name, "champion", "1")
    by_alias = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    by_version = mlflow.pyfunc.load_model(f"models:/{name}/1")
    np.testing.assert_array_equal(by_alias.predict(X), by_version.predict(X))
    np.testing.assert_array_equal(by_alias.predict(X), model.predict(X))

    # The alias moves: version 2 has it, version 1 no longer does.
    client.set_registered_model_alias(name, "champion", "2")
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    assert client.get_model_version(name, "1").aliases == []
    assert client.get_model_version(name, "2").aliases == ["champion"]
    assert client.get_registered_model(name).aliases == {"champion": "2"}
    np.testing.assert_array_equal(
        mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(X), model.predict(X)
    )
    # The logged model lists the versions registered from it: the server adds each version
    # (a number), and mlflow.register_model adds its own entry (a string) as well.
    listed = json.loads(client.get_logged_model(model_id).tags["mlflow.modelVersions"])
    assert {(v["name"], str(v["version"])) for v in listed} == {(name, "1"), (name, "2")}
    assert {"name": name, "version": 2} in listed

    client.delete_registered_model_alias(name, "champion")
    assert error_code(lambda: client.get_model_version_by_alias(name, "champion")) == (
        "INVALID_PARAMETER_VALUE"
    )


def test_create_update_rename_tags_and_errors(unique: str) -> None:
    client = MlflowClient()
    name = f"clf-{unique}"
    created = client.create_registered_model(name, tags={"team": "risk"}, description="first")
    assert (created.name, created.description, created.tags) == (name, "first", {"team": "risk"})
    assert error_code(lambda: client.create_registered_model(name)) == "RESOURCE_ALREADY_EXISTS"

    updated = client.update_registered_model(name, description="second")
    assert updated.description == "second"
    assert updated.last_updated_timestamp >= created.creation_timestamp
    client.set_registered_model_tag(name, "stage", "beta")
    client.delete_registered_model_tag(name, "team")
    assert client.get_registered_model(name).tags == {"stage": "beta"}

    other = f"other-{unique}"
    client.create_registered_model(other)
    assert error_code(lambda: client.rename_registered_model(name, other)) == (
        "RESOURCE_ALREADY_EXISTS"
    )
    renamed = f"clf2-{unique}"
    client.rename_registered_model(name, renamed)
    assert error_code(lambda: client.get_registered_model(name)) == "RESOURCE_DOES_NOT_EXIST"
    assert client.get_registered_model(renamed).description == "second"
    assert error_code(lambda: client.get_model_version(renamed, "7")) == ("RESOURCE_DOES_NOT_EXIST")
    assert error_code(lambda: client.create_registered_model("a/b")) == "INVALID_PARAMETER_VALUE"
    assert error_code(lambda: client.set_registered_model_alias(renamed, "v1", "1")) == (
        "INVALID_PARAMETER_VALUE"
    )


def test_versions_tags_update_search_and_pagination(unique: str) -> None:
    run_id, _, _ = log_sklearn_model(f"registry-search-{unique}")
    client = MlflowClient()
    names = [f"s{i}-{unique}" for i in range(3)]
    for name in names:
        client.create_registered_model(name, tags={"suite": unique})
    for _ in range(2):
        client.create_model_version(names[0], f"runs:/{run_id}/model", run_id=run_id)

    version = client.update_model_version(names[0], "2", description="tuned")
    assert version.description == "tuned"
    client.set_model_version_tag(names[0], "2", "validated", "yes")
    client.set_model_version_tag(names[0], "1", "validated", "no")
    client.delete_model_version_tag(names[0], "1", "validated")
    assert client.get_model_version(names[0], "2").tags == {"validated": "yes"}
    assert client.get_model_version(names[0], "1").tags == {}

    found = client.search_registered_models(f"name LIKE '%-{unique}'", order_by=["name DESC"])
    assert [m.name for m in found] == sorted(names, reverse=True)
    tagged = client.search_registered_models(f"tags.suite = '{unique}'", max_results=2)
    assert len(tagged) == 2 and tagged.token
    rest = client.search_registered_models(
        f"tags.suite = '{unique}'", max_results=2, page_token=tagged.token
    )
    assert {m.name for m in tagged} | {m.name for m in rest} == set(names)
    assert not rest.token

    by_run = client.search_model_versions(f"run_id = '{run_id}'")
    assert sorted((v.name, v.version) for v in by_run) == [(names[0], "1"), (names[0], "2")]
    tagged_versions = client.search_model_versions(
        f"name = '{names[0]}' and tags.validated = 'yes'"
    )
    assert [v.version for v in tagged_versions] == ["2"]
    numbered = client.search_model_versions(f"name = '{names[0]}' and version_number > 1")
    assert [v.version for v in numbered] == ["2"]
    assert error_code(lambda: client.search_model_versions("nope = 'x'")) == (
        "INVALID_PARAMETER_VALUE"
    )


def test_stage_transitions_and_latest_versions(unique: str) -> None:
    run_id, _, _ = log_sklearn_model(f"registry-stages-{unique}")
    client = MlflowClient()
    name = f"staged-{unique}"
    client.create_registered_model(name)
    for _ in range(3):
        client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)

    client.transition_model_version_stage(name, "1", "Production")
    moved = client.transition_model_version_stage(
        name, "2", "production", archive_existing_versions=True
    )
    assert moved.current_stage == "Production"
    client.transition_model_version_stage(name, "3", "Staging")
    assert client.get_model_version(name, "1").current_stage == "Archived"

    def latest(stages: list[str] | None = None) -> dict[str, str]:
        found: list[ModelVersion] = client.get_latest_versions(name, stages)
        return {v.current_stage: v.version for v in found}

    assert latest(["Production"]) == {"Production": "2"}
    assert latest() == {"Archived": "1", "Production": "2", "Staging": "3"}
    registered = client.get_registered_model(name)
    assert {v.version for v in registered.latest_versions} == {"1", "2", "3"}
    assert (
        error_code(lambda: client.transition_model_version_stage(name, "3", "Bogus"))
        == "INVALID_PARAMETER_VALUE"
    )


def test_delete_versions_and_model(unique: str) -> None:
    run_id, _, _ = log_sklearn_model(f"registry-delete-{unique}")
    client = MlflowClient()
    name = f"gone-{unique}"
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(name, "best", "1")

    client.delete_model_version(name, "1")
    assert error_code(lambda: client.get_model_version(name, "1")) == "RESOURCE_DOES_NOT_EXIST"
    assert client.get_registered_model(name).aliases == {}
    # Numbers are never reused while the model lives.
    again = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    assert again.version == "3"
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["3", "2"]

    client.delete_registered_model(name)
    assert error_code(lambda: client.get_registered_model(name)) == "RESOURCE_DOES_NOT_EXIST"
    assert list(client.search_model_versions(f"name = '{name}'")) == []
    # The name is free again, and versions start from 1.
    client.create_registered_model(name)
    fresh = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    assert fresh.version == "1"


def test_version_sources_are_checked(unique: str) -> None:
    run_id, model_id, _ = log_sklearn_model(f"registry-sources-{unique}")
    client = MlflowClient()
    name = f"src-{unique}"
    client.create_registered_model(name)
    other_run = "0" * 32
    bad = [
        lambda: client.create_model_version(name, f"runs:/{run_id}/model", run_id=other_run),
        lambda: client.create_model_version(name, "/etc/passwd", run_id=run_id),
        lambda: client.create_model_version(name, f"models:/{model_id}", model_id="m-" + "0" * 32),
        lambda: client.create_model_version(
            name, "mlflow-artifacts:/0/elsewhere/artifacts", run_id=run_id
        ),
    ]
    for call in bad:
        assert error_code(call) == "INVALID_PARAMETER_VALUE"


def test_model_version_files_for_the_ui(unique: str, tracking_uri: str, tmp_path: Path) -> None:
    _, model_id, _ = log_sklearn_model(f"registry-files-{unique}")
    name = f"files-{unique}"
    mlflow.register_model(f"models:/{model_id}", name)
    response = requests.get(
        f"{tracking_uri}/model-versions/get-artifact",
        params={"name": name, "version": "1", "path": "MLmodel"},
        timeout=30,
    )
    assert response.status_code == 200
    assert "flavors:" in response.text and "sklearn" in response.text
    uri = MlflowClient().get_model_version_download_uri(name, "1")
    assert uri.endswith(f"/models/{model_id}/artifacts")
