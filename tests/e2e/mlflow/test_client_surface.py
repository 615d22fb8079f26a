"""Every public tracking function of the ``mlflow`` client, against the target.

One test per family of functions (fluent runs, async logging, artifacts, experiments, search,
``MlflowClient``, inputs/outputs, logged models, sklearn). Each compares what it sent with
what it reads back: values, their types, artifact bytes. The same file runs against
``mlflow server`` (``RUNSTREAM_COMPAT_TARGET=mlflow``) through
``python -m bench --only mlflow_proof``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Protocol

import matplotlib
import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
import yaml
from mlflow import MlflowClient
from mlflow.entities import (
    LoggedModelInput,
    LoggedModelOutput,
    LoggedModelStatus,
    Metric,
    Param,
    RunStatus,
    RunTag,
    ViewType,
)
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LinearRegression

matplotlib.use("Agg")
import matplotlib.pyplot as plt

pytestmark = pytest.mark.filterwarnings("ignore")

TARGET = os.environ.get("RUNSTREAM_COMPAT_TARGET", "runstream")


class Target(Protocol):
    name: str
    uri: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float, int]]:
    return [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key)]


# -- fluent runs ---------------------------------------------------------------------------------


def test_fluent_run_lifecycle_reads_back_values_and_types(unique: str) -> None:
    experiment_id = mlflow.create_experiment(f"fluent-{unique}", tags={"team": "ml"})
    mlflow.set_experiment(experiment_id=experiment_id)
    now = int(time.time() * 1000)
    with mlflow.start_run(run_name="lifecycle", tags={"owner": "me"}, description="d") as run:
        assert mlflow.active_run() is not None
        assert mlflow.active_run().info.run_id == run.info.run_id  # type: ignore[union-attr]
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"layers": 3, "name": "mlp", "flag": True, "none": None})
        mlflow.log_metric("loss", 0.5, step=0, timestamp=now)
        mlflow.log_metric("loss", 0.25, step=1, timestamp=now + 1)
        mlflow.log_metrics({"acc": 0.9, "f1": 1}, step=7, timestamp=now + 2)
        mlflow.set_tag("stage", "dev")
        mlflow.set_tags({"a": 1, "b": "two", "gone": "x"})
        mlflow.delete_tag("gone")
    assert mlflow.active_run() is None
    last = mlflow.last_active_run()
    assert last is not None and last.info.run_id == run.info.run_id

    got = mlflow.get_run(run.info.run_id)
    assert got.info.experiment_id == experiment_id
    assert got.info.run_name == "lifecycle"
    assert got.info.status == "FINISHED"
    assert got.info.lifecycle_stage == "active"
    assert isinstance(got.info.start_time, int) and isinstance(got.info.end_time, int)
    assert got.info.end_time >= got.info.start_time
    assert got.data.params == {
        "lr": "0.01",
        "layers": "3",
        "name": "mlp",
        "flag": "True",
        "none": "None",
    }
    assert got.data.metrics == {"loss": 0.25, "acc": 0.9, "f1": 1.0}
    assert all(type(v) is float for v in got.data.metrics.values())
    tags = got.data.tags
    assert {k: tags[k] for k in ("owner", "stage", "a", "b")} == {
        "owner": "me",
        "stage": "dev",
        "a": "1",
        "b": "two",
    }
    assert "gone" not in tags
    assert tags["mlflow.note.content"] == "d"
    assert tags["mlflow.runName"] == "lifecycle"
    client = MlflowClient()
    assert history(client, run.info.run_id, "loss") == [(0, 0.5, now), (1, 0.25, now + 1)]
    assert history(client, run.info.run_id, "f1") == [(7, 1.0, now + 2)]
    assert mlflow.get_experiment(experiment_id).tags["team"] == "ml"


def test_end_run_status_and_resume(unique: str) -> None:
    mlflow.set_experiment(f"end-{unique}")
    run = mlflow.start_run()
    mlflow.end_run(status="KILLED")
    assert mlflow.get_run(run.info.run_id).info.status == "KILLED"
    with mlflow.start_run(run_id=run.info.run_id) as resumed:
        assert resumed.info.status == "RUNNING"
        mlflow.log_metric("after_resume", 1.0)
    got = mlflow.get_run(run.info.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.metrics["after_resume"] == 1.0
    with pytest.raises(Exception, match="boom"), mlflow.start_run() as failed:
        raise RuntimeError("boom")
    assert mlflow.get_run(failed.info.run_id).info.status == "FAILED"


def test_parent_child_and_delete_run(unique: str) -> None:
    mlflow.set_experiment(f"parent-{unique}")
    with mlflow.start_run() as parent, mlflow.start_run(nested=True) as child:
        pass
    got_parent = mlflow.get_parent_run(child.info.run_id)
    assert got_parent is not None and got_parent.info.run_id == parent.info.run_id
    assert mlflow.get_parent_run(parent.info.run_id) is None
    mlflow.delete_run(child.info.run_id)
    assert mlflow.get_run(child.info.run_id).info.lifecycle_stage == "deleted"
    client = MlflowClient()
    client.restore_run(child.info.run_id)
    assert mlflow.get_run(child.info.run_id).info.lifecycle_stage == "active"


def test_names_that_need_quoting_in_query_strings(unique: str) -> None:
    name = f"a&b + c/ü#?%20 {unique}"
    experiment_id = mlflow.create_experiment(name)
    got = mlflow.get_experiment_by_name(name)
    assert got is not None and got.experiment_id == experiment_id and got.name == name
    keys = ["train/loss", "a b", "x:y", "p-q.r", "ü"]
    with mlflow.start_run(experiment_id=experiment_id) as run:
        for i, key in enumerate(keys):
            mlflow.log_metric(key, float(i), step=i)
            mlflow.log_param(f"param {key}", key)
            mlflow.set_tag(f"tag {key}", key)
    client = MlflowClient()
    for i, key in enumerate(keys):
        assert [
            (m.key, m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)
        ] == [(key, i, float(i))]
    data = client.get_run(run.info.run_id).data
    assert data.params == {f"param {k}": k for k in keys}
    assert {k: data.tags[k] for k in data.tags if k.startswith("tag ")} == {
        f"tag {k}": k for k in keys
    }
    found = client.search_runs([experiment_id], "params.`param a b` = 'a b'")
    assert [r.info.run_id for r in found] == [run.info.run_id]


# -- asynchronous logging ------------------------------------------------------------------------


def test_async_logging_lands_everything(unique: str) -> None:
    mlflow.set_experiment(f"async-{unique}")
    with mlflow.start_run() as run:
        operations = []
        for step in range(300):
            operations.append(mlflow.log_metric("m", float(step), step=step, synchronous=False))
        operations.append(mlflow.log_metrics({"x": 1.5, "y": 2.5}, step=3, synchronous=False))
        operations.append(mlflow.log_param("p", "v", synchronous=False))
        operations.append(mlflow.log_params({"q": 1, "r": 2.5}, synchronous=False))
        operations.append(mlflow.set_tag("t", "u", synchronous=False))
        operations.append(mlflow.set_tags({"v": "w"}, synchronous=False))
        operations[-1].wait()
        mlflow.flush_async_logging()
    for operation in operations:
        operation.wait()
    got = mlflow.get_run(run.info.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params == {"p": "v", "q": "1", "r": "2.5"}
    assert got.data.metrics == {"m": 299.0, "x": 1.5, "y": 2.5}
    assert got.data.tags["t"] == "u" and got.data.tags["v"] == "w"
    points = MlflowClient().get_metric_history(run.info.run_id, "m")
    assert sorted((p.step, p.value) for p in points) == [(s, float(s)) for s in range(300)]


def test_async_param_conflict_surfaces_on_wait(unique: str) -> None:
    mlflow.set_experiment(f"async-conflict-{unique}")
    with mlflow.start_run():
        mlflow.log_param("p", "1")
        operation = mlflow.log_param("p", "2", synchronous=False)
        with pytest.raises(MlflowException) as raised:
            operation.wait()
    assert "p" in str(raised.value)


# -- artifacts -----------------------------------------------------------------------------------


def test_50_mb_artifact_round_trip_by_sha256(unique: str, tmp_path: Path) -> None:
    mlflow.set_experiment(f"big-{unique}")
    source = tmp_path / "big.bin"
    with source.open("wb") as file:
        rng = np.random.default_rng(50)
        for _ in range(50):
            file.write(rng.bytes(1 << 20))
    sent = sha256_of(source)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(source), artifact_path="blobs")
    listed = mlflow.artifacts.list_artifacts(run_id=run.info.run_id, artifact_path="blobs")
    assert [(f.path, f.is_dir, f.file_size) for f in listed] == [("blobs/big.bin", False, 50 << 20)]
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="blobs/big.bin", dst_path=str(tmp_path / "dl")
    )
    assert os.path.getsize(local) == 50 << 20
    assert sha256_of(Path(local)) == sent


def test_nested_artifact_folders_list_and_download(unique: str, tmp_path: Path) -> None:
    mlflow.set_experiment(f"tree-{unique}")
    tree = tmp_path / "tree"
    files = {
        "top.txt": b"top",
        "a/one.bin": bytes(range(256)),
        "a/b/two.csv": b"x,y\n1,2\n",
        "a/b/c/three.json": b'{"k": [1, 2]}',
        "a/b/c/d/e/deep.txt": "ünïcode ✓".encode(),
    }
    for relative, content in files.items():
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        (tree / relative).write_bytes(content)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(tree), artifact_path="out")
        mlflow.log_artifact(str(tree / "top.txt"))
    run_id = run.info.run_id
    client = MlflowClient()
    assert [(f.path, f.is_dir) for f in client.list_artifacts(run_id)] == [
        ("out", True),
        ("top.txt", False),
    ]
    listed = client.list_artifacts(run_id, "out/a/b")
    assert [(f.path, f.is_dir, f.file_size) for f in listed] == [
        ("out/a/b/c", True, None),
        ("out/a/b/two.csv", False, 8),
    ]
    assert client.list_artifacts(run_id, "out/missing") == []
    whole = Path(client.download_artifacts(run_id, "", str(tmp_path / "all")))
    for relative, content in files.items():
        assert (whole / "out" / relative).read_bytes() == content
    assert (whole / "top.txt").read_bytes() == b"top"
    sub = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"runs:/{run_id}/out/a/b/c", dst_path=str(tmp_path / "sub")
        )
    )
    assert sub.name == "c"
    assert (sub / "three.json").read_bytes() == files["a/b/c/three.json"]
    assert (sub / "d" / "e" / "deep.txt").read_bytes() == files["a/b/c/d/e/deep.txt"]
    by_uri = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{run.info.artifact_uri}/out/a/one.bin", dst_path=str(tmp_path / "uri")
    )
    assert Path(by_uri).read_bytes() == files["a/one.bin"]


def test_text_dict_figure_image_table(unique: str, tmp_path: Path) -> None:
    mlflow.set_experiment(f"kinds-{unique}")
    document = {"a": 1, "b": [1.5, "x"], "c": {"d": None}}
    table = {"name": ["x", "y", "z"], "score": [0.1, 0.2, 0.3]}
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    figure, axes = plt.subplots()
    axes.plot([0, 1, 2], [2, 1, 0])
    with mlflow.start_run() as run:
        mlflow.log_text("héllo\nworld", "texts/note.txt")
        mlflow.log_dict(document, "dicts/doc.json")
        mlflow.log_dict(document, "dicts/doc.yaml")
        mlflow.log_figure(figure, "plots/line.png")
        mlflow.log_image(image, "images/tiny.png")
        mlflow.log_image(image, key="evolving", step=3)
        mlflow.log_table(table, artifact_file="tables/scores.json")
    plt.close(figure)
    run_id = run.info.run_id
    base = f"runs:/{run_id}"
    assert mlflow.artifacts.load_text(f"{base}/texts/note.txt") == "héllo\nworld"
    assert mlflow.artifacts.load_dict(f"{base}/dicts/doc.json") == document
    assert yaml.safe_load(mlflow.artifacts.load_text(f"{base}/dicts/doc.yaml")) == document
    png = Path(
        mlflow.artifacts.download_artifacts(f"{base}/plots/line.png", dst_path=str(tmp_path))
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loaded = mlflow.artifacts.load_image(f"{base}/images/tiny.png")
    np.testing.assert_array_equal(np.asarray(loaded), image)
    stepped = [
        f.path
        for f in mlflow.artifacts.list_artifacts(run_id=run_id, artifact_path="images")
        if f.path.startswith("images/evolving+step+3+timestamp+")
    ]
    full = f"{stepped[1].removesuffix('.png')}.png"
    assert stepped == [full.removesuffix(".png") + "+compressed.webp", full]  # sorted by name
    np.testing.assert_array_equal(np.asarray(mlflow.artifacts.load_image(f"{base}/{full}")), image)
    got = mlflow.get_run(run_id)
    logged = json.loads(got.data.tags["mlflow.loggedArtifacts"])
    assert {"path": "tables/scores.json", "type": "table"} in logged
    assert "mlflow.loggedImages" in got.data.tags
    frame = mlflow.load_table("tables/scores.json", run_ids=[run_id])
    assert frame["name"].tolist() == table["name"]
    assert frame["score"].tolist() == pytest.approx(table["score"])  # pandas' read_json
    stored = mlflow.artifacts.load_dict(f"{base}/tables/scores.json")
    rows = [list(row) for row in zip(table["name"], table["score"], strict=True)]
    assert stored == {"columns": ["name", "score"], "data": rows}
    # without run ids: the active experiment's runs whose loggedArtifacts tag names the file
    everywhere = mlflow.load_table("tables/scores.json", extra_columns=["run_id"])
    assert everywhere["run_id"].tolist() == [run_id] * 3


def test_artifact_names_that_need_quoting_and_empty_files(unique: str, tmp_path: Path) -> None:
    mlflow.set_experiment(f"names-{unique}")
    names = {
        "with space.txt": b"space",
        "plus+sign.txt": b"plus",
        "ünïcødé ✓.txt": b"unicode",
        "semi;colon=eq&amp.txt": b"semi",
        "empty.bin": b"",
    }
    source = tmp_path / "src"
    source.mkdir()
    for name, content in names.items():
        (source / name).write_bytes(content)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(source), artifact_path="odd dir/ñ")
        mlflow.log_stream(io.BytesIO(b"streamed bytes"), "streams/s.bin")
    run_id = run.info.run_id
    listed = mlflow.artifacts.list_artifacts(run_id=run_id, artifact_path="odd dir/ñ")
    sizes = {f.path: f.file_size for f in listed}
    expected = {f"odd dir/ñ/{n}": (len(c) or None) for n, c in names.items()}
    assert sizes.keys() == expected.keys()
    assert {k: v or None for k, v in sizes.items()} == expected
    out = Path(mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(tmp_path / "dl")))
    for name, content in names.items():
        assert (out / "odd dir" / "ñ" / name).read_bytes() == content
    assert (out / "streams" / "s.bin").read_bytes() == b"streamed bytes"
    # listing a file (not a folder) lists nothing
    assert MlflowClient().list_artifacts(run_id, "streams/s.bin") == []


def test_client_does_not_quote_artifact_paths(unique: str, tmp_path: Path) -> None:
    """The client puts artifact paths into URLs unquoted: a ``#`` ends the name and ``%20``
    is decoded by the server. Both servers store what the URL says."""
    mlflow.set_experiment(f"unquoted-{unique}")
    (tmp_path / "hash#tail.txt").write_bytes(b"hash")
    (tmp_path / "percent%20literal.txt").write_bytes(b"percent")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "hash#tail.txt"))
        mlflow.log_artifact(str(tmp_path / "percent%20literal.txt"))
    listed = mlflow.artifacts.list_artifacts(run_id=run.info.run_id)
    assert [(f.path, f.file_size) for f in listed] == [("hash", 4), ("percent literal.txt", 7)]


def test_experiment_with_own_artifact_location(unique: str, tmp_path: Path) -> None:
    location = (tmp_path / "elsewhere").as_uri()
    experiment_id = mlflow.create_experiment(f"loc-{unique}", artifact_location=location)
    assert mlflow.get_experiment(experiment_id).artifact_location == location
    (tmp_path / "f.txt").write_text("local")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_artifact(str(tmp_path / "f.txt"), "d")
    assert run.info.artifact_uri == f"{location}/{run.info.run_id}/artifacts"
    stored = tmp_path / "elsewhere" / run.info.run_id / "artifacts" / "d" / "f.txt"
    assert stored.read_text() == "local"
    assert [f.path for f in MlflowClient().list_artifacts(run.info.run_id, "d")] == ["d/f.txt"]
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/d/f.txt") == "local"


# -- experiments ---------------------------------------------------------------------------------


def test_experiment_functions(unique: str) -> None:
    name = f"exp-{unique}"
    experiment_id = mlflow.create_experiment(name, tags={"k": "v"})
    assert isinstance(experiment_id, str)
    by_name = mlflow.get_experiment_by_name(name)
    assert by_name is not None and by_name.experiment_id == experiment_id
    assert mlflow.get_experiment_by_name(f"missing-{unique}") is None
    chosen = mlflow.set_experiment(name)
    assert chosen.experiment_id == experiment_id
    assert mlflow.set_experiment(experiment_id=experiment_id).name == name
    mlflow.set_experiment_tag("one", 1)
    mlflow.set_experiment_tags({"two": "2", "three": "3"})
    mlflow.delete_experiment_tag("three")
    got = mlflow.get_experiment(experiment_id)
    assert {k: got.tags.get(k) for k in ("k", "one", "two", "three")} == {
        "k": "v",
        "one": "1",
        "two": "2",
        "three": None,
    }
    assert got.lifecycle_stage == "active"
    assert isinstance(got.creation_time, int) and isinstance(got.last_update_time, int)
    found = mlflow.search_experiments(filter_string=f"name = '{name}'")
    assert [e.experiment_id for e in found] == [experiment_id]
    found = mlflow.search_experiments(filter_string=f"tags.two = '2' AND name LIKE '%{unique}'")
    assert [e.experiment_id for e in found] == [experiment_id]
    client = MlflowClient()
    client.rename_experiment(experiment_id, f"renamed-{unique}")
    assert client.get_experiment(experiment_id).name == f"renamed-{unique}"
    mlflow.delete_experiment(experiment_id)
    assert mlflow.get_experiment(experiment_id).lifecycle_stage == "deleted"
    deleted = mlflow.search_experiments(
        view_type=ViewType.DELETED_ONLY, filter_string=f"name LIKE '%{unique}'"
    )
    assert [e.experiment_id for e in deleted] == [experiment_id]
    with pytest.raises(MlflowException):
        mlflow.set_experiment(experiment_id=experiment_id)
    client.restore_experiment(experiment_id)
    assert mlflow.get_experiment(experiment_id).lifecycle_stage == "active"
    with pytest.raises(MlflowException) as raised:
        mlflow.create_experiment(f"renamed-{unique}")
    assert raised.value.error_code == "RESOURCE_ALREADY_EXISTS"


def test_search_experiments_pages(unique: str) -> None:
    client = MlflowClient()
    ids = [client.create_experiment(f"page-{unique}-{i}") for i in range(5)]
    seen: list[str] = []
    token = None
    while True:
        page = client.search_experiments(
            filter_string=f"name LIKE 'page-{unique}-%'",
            order_by=["name ASC"],
            max_results=2,
            page_token=token,
        )
        seen.extend(e.experiment_id for e in page)
        token = page.token
        if not token:
            break
    assert seen == ids


# -- search runs ---------------------------------------------------------------------------------


def test_search_runs_pandas_list_and_pages(unique: str) -> None:
    experiment = mlflow.set_experiment(f"search-{unique}")
    run_ids = []
    for i in range(5):
        with mlflow.start_run(run_name=f"r{i}") as run:
            mlflow.log_param("i", i)
            mlflow.log_metric("score", i / 10)
            mlflow.set_tag("parity", "even" if i % 2 == 0 else "odd")
        run_ids.append(run.info.run_id)
    frame = mlflow.search_runs(order_by=["metrics.score DESC"])
    assert isinstance(frame, pd.DataFrame)
    assert frame["run_id"].tolist() == run_ids[::-1]
    assert frame["metrics.score"].tolist() == [0.4, 0.3, 0.2, 0.1, 0.0]
    assert frame["params.i"].tolist() == ["4", "3", "2", "1", "0"]
    assert frame["tags.mlflow.runName"].tolist() == ["r4", "r3", "r2", "r1", "r0"]
    assert frame["status"].unique().tolist() == ["FINISHED"]
    assert str(frame["start_time"].dtype).startswith("datetime64")
    runs = mlflow.search_runs(
        experiment_names=[experiment.name],
        filter_string="tags.parity = 'even' AND metrics.score > 0",
        order_by=["params.i ASC"],
        output_format="list",
    )
    assert [r.info.run_id for r in runs] == [run_ids[2], run_ids[4]]
    everywhere = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"attributes.run_id = '{run_ids[0]}'",
        output_format="list",
    )
    assert [r.info.run_id for r in everywhere] == [run_ids[0]]
    client = MlflowClient()
    seen: list[str] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment.experiment_id],
            order_by=["attributes.start_time ASC"],
            max_results=2,
            page_token=token,
        )
        seen.extend(r.info.run_id for r in page)
        token = page.token
        if not token:
            break
    assert seen == run_ids
    mlflow.delete_run(run_ids[0])
    active = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY)
    assert run_ids[0] not in [r.info.run_id for r in active]
    deleted = client.search_runs([experiment.experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [run_ids[0]]


def test_search_runs_by_attributes(unique: str) -> None:
    experiment = mlflow.set_experiment(f"attrs-{unique}")
    client = MlflowClient()
    ids = {}
    for name, status in (("alpha", "FINISHED"), ("beta", "FAILED"), ("gamma", "KILLED")):
        run = client.create_run(experiment.experiment_id, run_name=name)
        client.log_param(run.info.run_id, "name_len", len(name))
        client.set_terminated(run.info.run_id, status=status)
        ids[name] = run.info.run_id
    running = client.create_run(experiment.experiment_id, run_name="delta").info.run_id

    def found(filter_string: str, order_by: list[str] | None = None) -> list[str]:
        runs = client.search_runs(
            [experiment.experiment_id], filter_string, ViewType.ALL, order_by=order_by
        )
        return [r.info.run_name for r in runs]

    assert found("attributes.run_name = 'beta'") == ["beta"]
    assert found("run_name LIKE '%a'", ["attributes.run_name ASC"]) == [
        "alpha",
        "beta",
        "delta",
        "gamma",
    ]
    assert found("tags.mlflow.runName ILIKE 'G%'") == ["gamma"]
    assert found("attributes.status = 'FAILED'") == ["beta"]
    assert found("attributes.status != 'RUNNING'", ["attributes.run_name DESC"]) == [
        "gamma",
        "beta",
        "alpha",
    ]
    assert found(f"attributes.run_id IN ('{ids['alpha']}', '{running}')", ["run_name"]) == [
        "alpha",
        "delta",
    ]
    assert found("params.name_len = '5'", ["attributes.run_name"]) == ["alpha", "gamma"]
    assert found("attributes.end_time > 0", ["attributes.end_time ASC"]) == [
        "alpha",
        "beta",
        "gamma",
    ]
    assert found("params.name_len = '4'", ["params.name_len DESC"]) == ["beta"]


def test_logged_metrics_of_a_model_through_log_batch(unique: str) -> None:
    client = MlflowClient()
    experiment_id = client.create_experiment(f"batch-model-{unique}")
    run_id = client.create_run(experiment_id).info.run_id
    model = client.create_logged_model(experiment_id, name="m", source_run_id=run_id)
    client.log_batch(
        run_id,
        metrics=[
            Metric("acc", 0.5, 1000, 0, model_id=model.model_id),
            Metric("acc", 0.75, 2000, 1, model_id=model.model_id),
            Metric("loss", 2.0, 1000, 0),
        ],
    )
    got = client.get_logged_model(model.model_id)
    assert sorted((m.key, m.value, m.step, m.run_id) for m in got.metrics or []) == [
        ("acc", 0.5, 0, run_id),
        ("acc", 0.75, 1, run_id),
    ]
    assert client.get_run(run_id).data.metrics == {"acc": 0.75, "loss": 2.0}
    ordered = client.search_logged_models(
        [experiment_id], order_by=[{"field_name": "metrics.acc", "ascending": False}]
    )
    assert [m.model_id for m in ordered] == [model.model_id]


# -- MlflowClient --------------------------------------------------------------------------------


def test_client_run_methods(unique: str) -> None:
    client = MlflowClient()
    experiment_id = client.create_experiment(f"client-{unique}")
    run = client.create_run(experiment_id, tags={"k": "v"}, run_name="made", start_time=1000)
    run_id = run.info.run_id
    assert run.info.run_name == "made" and run.info.start_time == 1000
    client.log_param(run_id, "p", 1)
    client.log_metric(run_id, "m", 2, step=4, timestamp=5000)
    client.set_tag(run_id, "t", "x")
    client.log_batch(
        run_id,
        metrics=[Metric("m", 3.0, 6000, 5), Metric("n", -1.25, 6000, 0)],
        params=[Param("q", "w")],
        tags=[RunTag("u", "y")],
    )
    client.delete_tag(run_id, "t")
    client.update_run(run_id, name="renamed")
    client.set_terminated(run_id, status="FINISHED", end_time=9000)
    got = client.get_run(run_id)
    assert got.info.run_name == "renamed" and got.data.tags["mlflow.runName"] == "renamed"
    assert got.info.status == RunStatus.to_string(RunStatus.FINISHED)
    assert got.info.end_time == 9000
    assert got.data.params == {"p": "1", "q": "w"}
    assert got.data.metrics == {"m": 3.0, "n": -1.25}
    assert {k: v for k, v in got.data.tags.items() if not k.startswith("mlflow.")} == {
        "k": "v",
        "u": "y",
    }
    assert history(client, run_id, "m") == [(4, 2.0, 5000), (5, 3.0, 6000)]
    assert client.get_metric_history(run_id, "never") == []
    client.delete_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    client.restore_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "active"
    client.set_experiment_tag(experiment_id, "e", "1")
    client.delete_experiment_tag(experiment_id, "e")
    assert "e" not in client.get_experiment(experiment_id).tags


def test_client_artifact_methods(unique: str, tmp_path: Path) -> None:
    client = MlflowClient()
    experiment_id = client.create_experiment(f"client-art-{unique}")
    run_id = client.create_run(experiment_id).info.run_id
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f.txt").write_bytes(b"f")
    (tmp_path / "g.txt").write_bytes(b"g")
    client.log_artifact(run_id, str(tmp_path / "g.txt"), "x")
    client.log_artifacts(run_id, str(tmp_path / "d"), "y")
    client.log_text(run_id, "t", "z/t.txt")
    client.log_dict(run_id, {"a": [1]}, "z/a.json")
    assert [(f.path, f.is_dir) for f in client.list_artifacts(run_id)] == [
        ("x", True),
        ("y", True),
        ("z", True),
    ]
    assert [f.path for f in client.list_artifacts(run_id, "z")] == ["z/a.json", "z/t.txt"]
    out = Path(client.download_artifacts(run_id, "y", str(tmp_path / "out")))
    assert (out / "e" / "f.txt").read_bytes() == b"f"
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/z/a.json") == {"a": [1]}


# -- inputs and outputs --------------------------------------------------------------------------


def test_log_input_datasets_and_model_io(unique: str) -> None:
    mlflow.set_experiment(f"inputs-{unique}")
    frame = pd.DataFrame({"x": [1, 2, 3], "y": [0.5, 0.25, 0.125]})
    train = mlflow.data.from_pandas(frame, name="train", targets="y")
    test = mlflow.data.from_pandas(frame.head(2), name="test")
    with mlflow.start_run() as run:
        mlflow.log_input(train, context="training", tags={"extra": "1"})
        mlflow.log_inputs([test], contexts=["eval"], tags_list=[{"split": "holdout"}])
        model = mlflow.create_external_model(name=f"ext-{unique}")
    client = MlflowClient()
    run_id = run.info.run_id
    client.log_inputs(run_id, models=[LoggedModelInput(model.model_id)])
    client.log_outputs(run_id, models=[LoggedModelOutput(model.model_id, step=2)])
    got = client.get_run(run_id)
    inputs = {d.dataset.name: d for d in got.inputs.dataset_inputs}
    assert set(inputs) == {"train", "test"}
    assert inputs["train"].dataset.digest == train.digest
    assert json.loads(inputs["train"].dataset.profile) == train.profile
    assert json.loads(inputs["train"].dataset.schema) == json.loads(
        train._to_mlflow_entity().schema
    )
    assert inputs["train"].dataset.source_type == train.source._get_source_type()
    train_tags = {t.key: t.value for t in inputs["train"].tags}
    assert train_tags == {"mlflow.data.context": "training", "extra": "1"}
    test_tags = {t.key: t.value for t in inputs["test"].tags}
    assert test_tags == {"mlflow.data.context": "eval", "split": "holdout"}
    assert [m.model_id for m in got.inputs.model_inputs] == [model.model_id]
    outputs = {(m.model_id, m.step) for m in got.outputs.model_outputs}
    assert (model.model_id, 2) in outputs

    with mlflow.start_run(run_id=run_id):
        mlflow.log_metric("rmse", 0.5, step=1, model_id=model.model_id, dataset=train)
    scored = mlflow.get_logged_model(model.model_id)
    assert [(m.key, m.value, m.step, m.dataset_name, m.dataset_digest) for m in scored.metrics] == [
        ("rmse", 0.5, 1, "train", train.digest)
    ]
    found = mlflow.search_runs(
        filter_string=f"datasets.name = 'train' AND datasets.digest = '{train.digest}'",
        output_format="list",
    )
    assert [r.info.run_id for r in found] == [run_id]
    found = mlflow.search_runs(filter_string="datasets.context = 'nope'", output_format="list")
    assert found == []


# -- logged models -------------------------------------------------------------------------------


def test_logged_model_functions(unique: str) -> None:
    experiment = mlflow.set_experiment(f"models-{unique}")
    external = mlflow.create_external_model(
        name=f"ext-{unique}", params={"alpha": "0.5"}, tags={"kind": "external"}
    )
    assert external.status == LoggedModelStatus.READY
    pending = mlflow.initialize_logged_model(name=f"init-{unique}", model_type="agent")
    assert pending.status == LoggedModelStatus.PENDING
    mlflow.set_logged_model_tags(pending.model_id, {"a": "1", "b": "2"})
    mlflow.delete_logged_model_tag(pending.model_id, "b")
    mlflow.log_model_params({"beta": "7", "gamma": 0.1}, model_id=pending.model_id)
    finalized = mlflow.finalize_logged_model(pending.model_id, LoggedModelStatus.READY)
    assert finalized.status == LoggedModelStatus.READY
    got = mlflow.get_logged_model(pending.model_id)
    assert got.name == f"init-{unique}" and got.model_type == "agent"
    assert got.experiment_id == experiment.experiment_id
    assert {k: v for k, v in got.tags.items() if not k.startswith("mlflow.")} == {"a": "1"}
    assert got.params == {"beta": "7", "gamma": "0.1"}
    assert mlflow.last_logged_model().model_id in (pending.model_id, external.model_id)

    mlflow.set_active_model(model_id=external.model_id)
    assert mlflow.get_active_model_id() == external.model_id
    with mlflow.start_run() as run:
        mlflow.log_metric("score", 0.75)
    mlflow.clear_active_model()
    scored = mlflow.get_logged_model(external.model_id)
    assert [(m.key, m.value, m.run_id) for m in scored.metrics or []] == [
        ("score", 0.75, run.info.run_id)
    ]
    active = mlflow.set_active_model(name=f"by-name-{unique}")
    assert mlflow.get_active_model_id() == active.model_id
    again = mlflow.set_active_model(name=f"by-name-{unique}")
    assert again.model_id == active.model_id
    mlflow.clear_active_model()

    listed = mlflow.search_logged_models(
        experiment_ids=[experiment.experiment_id],
        filter_string="name LIKE 'init-%'",
        output_format="list",
    )
    assert [m.model_id for m in listed] == [pending.model_id]
    frame = mlflow.search_logged_models(experiment_ids=[experiment.experiment_id])
    assert isinstance(frame, pd.DataFrame)
    assert set(frame["model_id"]) == {external.model_id, pending.model_id, active.model_id}
    by_metric = mlflow.search_logged_models(
        experiment_ids=[experiment.experiment_id],
        filter_string="metrics.score > 0.5",
        output_format="list",
    )
    assert [m.model_id for m in by_metric] == [external.model_id]
    client = MlflowClient()
    client.delete_logged_model(pending.model_id)
    with pytest.raises(MlflowException) as raised:
        mlflow.get_logged_model(pending.model_id)
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_sklearn_log_model_and_load_back(unique: str, tmp_path: Path) -> None:
    mlflow.set_experiment(f"sk-{unique}")
    x = np.arange(20, dtype=float).reshape(10, 2)
    y = x @ np.array([1.5, -2.0]) + 0.5
    model = LinearRegression().fit(x, y)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(model, name="model", input_example=x[:2])
    assert info.run_id == run.info.run_id
    for uri in (info.model_uri, f"models:/{info.model_id}", f"runs:/{run.info.run_id}/model"):
        loaded = mlflow.sklearn.load_model(uri)
        np.testing.assert_allclose(loaded.predict(x), model.predict(x))
        pyfunc = mlflow.pyfunc.load_model(uri)
        np.testing.assert_allclose(pyfunc.predict(x), model.predict(x))
    logged = mlflow.get_logged_model(info.model_id)
    assert logged.source_run_id == run.info.run_id
    assert logged.status == LoggedModelStatus.READY
    files = {f.path for f in MlflowClient().list_logged_model_artifacts(info.model_id)}
    assert {"MLmodel", "conda.yaml", "requirements.txt"} <= files, files
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "dl")))
    assert (local / "MLmodel").exists()


class AddN(mlflow.pyfunc.PythonModel):
    def __init__(self, n: float) -> None:
        self.n = n

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return model_input + self.n


def test_pyfunc_python_model_log_and_load(unique: str) -> None:
    mlflow.set_experiment(f"pyfunc-{unique}")
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="adder", python_model=AddN(2.5), input_example=frame, params={"k": 1}
        )
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    pd.testing.assert_frame_equal(loaded.predict(frame), frame + 2.5)
    assert loaded.metadata.model_id == info.model_id
    assert mlflow.get_logged_model(info.model_id).params == {"k": "1"}


def test_sklearn_autolog_logs_params_metrics_and_model(unique: str) -> None:
    mlflow.set_experiment(f"autolog-{unique}")
    mlflow.sklearn.autolog(log_input_examples=False, silent=True)
    try:
        x = np.arange(40, dtype=float).reshape(20, 2)
        y = x[:, 0] * 2.0
        with mlflow.start_run() as run:
            LinearRegression(fit_intercept=False).fit(x, y)
    finally:
        mlflow.sklearn.autolog(disable=True)
    got = mlflow.get_run(run.info.run_id)
    assert got.data.params["fit_intercept"] == "False"
    assert got.data.metrics["training_r2_score"] == pytest.approx(1.0)
    assert got.data.tags["estimator_name"] == "LinearRegression"
    models = mlflow.search_logged_models(
        experiment_ids=[got.info.experiment_id], output_format="list"
    )
    assert len(models) == 1 and models[0].source_run_id == run.info.run_id
    loaded = mlflow.pyfunc.load_model(f"models:/{models[0].model_id}")
    np.testing.assert_allclose(loaded.predict(x[:3]), y[:3], atol=1e-9)


# -- what is not served --------------------------------------------------------------------------

FLASK_404 = (
    "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    "<p>The requested URL was not found on the server. If you entered the URL manually please "
    "check your spelling and try again.</p>\n"
)


@pytest.mark.parametrize(
    "path",
    [
        "/api/2.0/mlflow/no-such-endpoint",
        "/ajax-api/2.0/mlflow/runs/no-such-endpoint",
        "/api/2.0/mlflow/metrics/get-history-bulk",
    ],
)
def test_unknown_endpoint_answers_like_mlflow(compat_target: Target, path: str) -> None:
    response = requests.get(compat_target.uri + path, timeout=30)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.text == FLASK_404


def test_wrong_method_answers_like_mlflow(compat_target: Target) -> None:
    response = requests.get(compat_target.uri + "/api/2.0/mlflow/experiments/create", timeout=30)
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<title>405 Method Not Allowed</title>" in response.text


def test_client_sees_endpoint_not_found(compat_target: Target) -> None:
    """What the client makes of a 404 without a JSON body: ENDPOINT_NOT_FOUND."""
    from mlflow.protos.service_pb2 import GetRun
    from mlflow.utils.rest_utils import MlflowHostCreds, call_endpoint

    creds = MlflowHostCreds(compat_target.uri)
    with pytest.raises(MlflowException) as raised:
        call_endpoint(creds, "/api/2.0/mlflow/no-such-endpoint", "GET", None, GetRun.Response)
    assert raised.value.error_code == "ENDPOINT_NOT_FOUND"


@pytest.mark.skipif(TARGET == "mlflow", reason="MLflow serves traces")
def test_out_of_scope_calls_answer_endpoint_not_found(unique: str) -> None:
    """Traces are out of runstream's tracking scope: the client's calls fail with
    ENDPOINT_NOT_FOUND, as against any server without them. (The searches the UI makes on
    page load answer empty lists instead: api/ui/routes.py.)"""
    client = MlflowClient()
    with pytest.raises(MlflowException) as raised:
        client.get_trace("tr-0123456789abcdef0123456789abcdef")
    assert raised.value.error_code == "ENDPOINT_NOT_FOUND", raised.value
