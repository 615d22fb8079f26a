"""Ray Tune sweeps logged to a running runstream server, with real Ray and real trials.

Two ways in, both proven here: runstream's own ``RunstreamLoggerCallback`` (SDK, msgpack
batches: one parent run per sweep, a child run per trial) and Ray's ``MLflowLoggerCallback``
pointed at runstream's MLflow routes, unchanged; and both in one sweep. The trainable
computes its metrics from its config and the iteration, so every logged value is checked
exactly against a recomputation.

The server is the full app (ingest + api + projector + MLflow routes) on a real port, served
from a thread: ``tuner.fit()`` blocks the test's thread. Ray is started once for the module
on 2 CPUs and shut down at its end.
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

import runstream
from runstream.settings import Settings

ray = pytest.importorskip("ray")
tune = pytest.importorskip("ray.tune")
pytest.importorskip("mlflow")

from ray.air.integrations.mlflow import MLflowLoggerCallback  # noqa: E402

from runstream.integrations.ray import (  # noqa: E402
    RunstreamLoggerCallback,
    flatten,
    numeric_metrics,
)

pytestmark = pytest.mark.slow

ITERATIONS = 5
LRS = (0.1, 0.03, 0.01)
PARAM_SPACE: dict[str, Any] = {
    "lr": tune.grid_search(list(LRS)),
    "model": {"depth": 3, "layers": {"width": 64, "act": "relu"}},
    "sizes": [8, 4],
}
EXPECTED_PARAM_KEYS = {"lr", "model/depth", "model/layers/width", "model/layers/act", "sizes"}
T = TypeVar("T")


def expected_metrics(config: dict[str, Any], iteration: int) -> dict[str, Any]:
    """What the trainable reports at ``iteration``: a pure function of config and iteration."""
    loss = config["lr"] * config["model"]["depth"] / iteration + config["model"]["layers"][
        "width"
    ] / (1000.0 * iteration)
    return {
        "loss": loss,
        "acc": 1.0 - loss / (1.0 + loss),
        "eval": {"loss": loss * 1.5 + iteration},
        "note": f"iteration {iteration}",  # not a number: never a metric
        "improved": iteration > 1,  # a bool: not a metric for runstream's callback
    }


NUMERIC_KEYS = ("loss", "acc", "eval/loss")


def expected_series(config: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    points: dict[str, list[tuple[int, float]]] = {k: [] for k in NUMERIC_KEYS}
    for i in range(1, ITERATIONS + 1):
        flat = flatten(expected_metrics(config, i))
        for key in NUMERIC_KEYS:
            points[key].append((i, flat[key]))
    return points


def expected_params(config: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in flatten(config).items()}


def trainable(config: dict[str, Any]) -> None:
    for i in range(1, ITERATIONS + 1):
        tune.report(expected_metrics(config, i))


# -- pure helpers ---------------------------------------------------------------------------


def test_flatten_is_rays_convention() -> None:
    from ray._private.dict import flatten_dict

    config = {"a": {"b": {"c": 1}, "d": [1, 2]}, "e": "x", "f": {}}
    assert flatten(config) == flatten_dict(config) == {"a/b/c": 1, "a/d": [1, 2], "e": "x"}


def test_numeric_metrics_filters_like_rays_loggers() -> None:
    np = pytest.importorskip("numpy")
    result = {
        "loss": 0.5,
        "count": 3,
        "f32": np.float32(0.25),
        "i64": np.int64(7),
        "nan": math.nan,
        "inf": -math.inf,
        "done": False,
        "np_bool": np.bool_(True),
        "name": "trial",
        "none": None,
        "array": [1.0, 2.0],
        "nested": {"x": 1.5, "flag": True},
        "bad key!": 1.0,
        "config": {"lr": 0.1},
        "pid": 123,
        "timestamp": 1_700_000_000,
        "time_total_s": 1.0,
        "training_iteration": 4,
        "time_this_iter_s": 0.1,
    }
    metrics = numeric_metrics(result)
    assert set(metrics) == {
        "loss",
        "count",
        "f32",
        "i64",
        "nan",
        "inf",
        "nested/x",
        "time_this_iter_s",
    }
    assert all(type(v) is float for v in metrics.values())
    assert math.isnan(metrics["nan"]) and metrics["inf"] == -math.inf and metrics["f32"] == 0.25
    assert set(numeric_metrics(result, {"loss"})) >= {"config/lr", "pid", "training_iteration"}


# -- servers --------------------------------------------------------------------------------


class _ThreadedServer:
    """The full runstream app on a real port, served from a thread with its own loop."""

    def __init__(self, settings: Settings) -> None:
        from runstream import api, ingest, projector
        from runstream.api.mlflow.routes import setup_mlflow_routes
        from runstream.web import error_middleware

        app = web.Application(
            middlewares=[error_middleware], client_max_size=settings.max_body_bytes
        )
        ingest.setup(app, settings)
        api.setup(app, settings)
        projector.setup(app, settings)
        setup_mlflow_routes(app, settings)
        self.runner = web.AppRunner(app)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.url = ""

    def start(self) -> str:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(60)
        return self.url

    async def _start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def server(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import mlflow

    # The mlflow client retries 5xx for minutes by default: a failure should show at once.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("RUNSTREAM_URL", raising=False)
    threaded = _ThreadedServer(settings)
    url = threaded.start()
    previous_uri = mlflow.get_tracking_uri()
    try:
        yield url
    finally:
        mlflow.set_tracking_uri(previous_uri)  # Ray's callback sets it process-wide
        threaded.stop()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        mp.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        mp.setenv("RAY_AIR_NEW_OUTPUT", "0")
        # The trainable lives in this test module, which Ray's workers cannot import.
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        try:
            yield
        finally:
            ray.shutdown()
            ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def sweep(callbacks: list[Any], name: str, storage: Path) -> Any:
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 0.5}),
        param_space=PARAM_SPACE,
        run_config=tune.RunConfig(
            name=name, storage_path=str(storage), callbacks=callbacks, verbose=0
        ),
    )
    results = tuner.fit()
    assert not results.errors, results.errors
    assert len(results) == len(LRS)
    return results


# -- reading back ---------------------------------------------------------------------------


def eventually(read: Callable[[], T], check: Callable[[T], bool], timeout: float = 15.0) -> T:
    """``read()`` until ``check`` holds (the projector applies writes asynchronously; a run
    not applied yet answers 404)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = read()
        except runstream.HTTPError as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
        else:
            if check(value) or time.monotonic() > deadline:
                return value
        time.sleep(0.1)


def pairs(items: Any) -> dict[str, Any]:
    if isinstance(items, dict):
        return dict(items)
    return {item["key"]: item["value"] for item in items or []}


def trial_id_of(result: Any) -> str:
    return str(result.metrics["trial_id"])


def check_runstream_callback(url: str, callback: RunstreamLoggerCallback, results: Any) -> None:
    """Parent + one child per trial: nesting tag, name, params, every metric point, status."""
    parent_id = callback.parent_run_id
    assert parent_id is not None
    assert set(callback.trial_run_ids) == {trial_id_of(r) for r in results}
    with runstream.Client(url) as client:
        parent = eventually(
            lambda: client.get_run(parent_id), lambda r: r["info"]["status"] == "FINISHED"
        )
        assert parent["info"]["status"] == "FINISHED"
        assert parent["info"]["run_name"] == results.experiment_path.rstrip("/").split("/")[-1]
        assert pairs(parent["data"].get("tags")).get("team") == "tuning"
        experiment_id = parent["info"]["experiment_id"]
        for result in results:
            trial_id = trial_id_of(result)
            run_id = callback.trial_run_ids[trial_id]
            run = eventually(
                lambda run_id=run_id: client.get_run(run_id),
                lambda r: r["info"]["status"] == "FINISHED",
            )
            info, data = run["info"], run["data"]
            assert info["status"] == "FINISHED"
            assert info["experiment_id"] == experiment_id
            tags = pairs(data.get("tags"))
            assert tags["mlflow.parentRunId"] == parent_id
            assert tags["trial_id"] == trial_id
            assert info["run_name"] == tags["trial_name"] == tags["mlflow.runName"]
            assert tags["mlflow.runName"].endswith(trial_id)
            assert tags["team"] == "tuning"
            params = pairs(data.get("params"))
            assert set(params) == EXPECTED_PARAM_KEYS
            assert params == expected_params(result.config)
            metric_keys = set(pairs(data.get("metrics")))
            assert set(NUMERIC_KEYS) <= metric_keys
            assert not metric_keys & {
                "note",
                "improved",
                "done",
                "pid",
                "timestamp",
                "training_iteration",
                "time_total_s",
            }
            assert not any(k.startswith("config/") for k in metric_keys)
            for key, points in expected_series(result.config).items():
                history = client.history(run_id, key)
                assert history.steps.tolist() == [s for s, _ in points], key
                assert history.values.tolist() == [v for _, v in points], key
        children = client.search_runs(experiment_id, f"tags.mlflow.parentRunId = '{parent_id}'")
        assert {r["info"]["run_id"] for r in children} == set(callback.trial_run_ids.values())


def check_mlflow_callback(
    url: str, experiment_name: str, results: Any, exclude: Collection[str] = ()
) -> None:
    """Ray's MLflowLoggerCallback through runstream's MLflow routes: a run per trial."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None
    runs = [
        r
        for r in client.search_runs([experiment.experiment_id], max_results=100)
        if r.info.run_id not in exclude
    ]
    by_trial = {r.data.tags["trial_name"]: r for r in runs}
    assert len(runs) == len(by_trial) == len(LRS)
    for result in results:
        trial_id = trial_id_of(result)
        [name] = [n for n in by_trial if n.endswith(trial_id)]
        run = client.get_run(by_trial[name].info.run_id)
        assert run.info.status == "FINISHED"
        assert run.info.run_name == name
        assert run.data.params == expected_params(result.config)
        for key, points in expected_series(result.config).items():
            history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
            assert [(m.step, m.value) for m in history] == points, key
        # Ray's callback logs every float-convertible field, config and bools included.
        assert run.data.metrics["config/lr"] == result.config["lr"]
        assert run.data.metrics["improved"] == 1.0


# -- sweeps ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("ray_cluster")
def test_runstream_callback_logs_parent_and_trial_runs(server: str, tmp_path: Path) -> None:
    name = f"rs-sweep-{uuid.uuid4().hex[:8]}"
    callback = RunstreamLoggerCallback(
        experiment=f"ray-{name}", url=server, tags={"team": "tuning"}
    )
    results = sweep([callback], name, tmp_path)
    check_runstream_callback(server, callback, results)


@pytest.mark.usefixtures("ray_cluster")
def test_rays_mlflow_callback_works_unchanged(server: str, tmp_path: Path) -> None:
    name = f"mlflow-sweep-{uuid.uuid4().hex[:8]}"
    experiment = f"ray-{name}"
    callback = MLflowLoggerCallback(tracking_uri=server, experiment_name=experiment)
    results = sweep([callback], name, tmp_path)
    check_mlflow_callback(server, experiment, results)


@pytest.mark.usefixtures("ray_cluster")
def test_both_callbacks_in_one_sweep(server: str, tmp_path: Path) -> None:
    name = f"both-sweep-{uuid.uuid4().hex[:8]}"
    experiment = f"ray-{name}"
    ours = RunstreamLoggerCallback(experiment=experiment, url=server, tags={"team": "tuning"})
    theirs = MLflowLoggerCallback(tracking_uri=server, experiment_name=experiment)
    results = sweep([theirs, ours], name, tmp_path)
    check_runstream_callback(server, ours, results)
    assert ours.parent_run_id is not None
    check_mlflow_callback(
        server, experiment, results, {ours.parent_run_id, *ours.trial_run_ids.values()}
    )


class _Trial:
    """What the callback reads of a ``ray.tune.experiment.Trial``, to drive its hooks directly
    (Tune calls ``log_trial_end(trial, failed=True)`` from ``on_trial_error``)."""

    def __init__(self, trial_id: str, config: dict[str, Any]) -> None:
        self.trial_id = trial_id
        self.config = config
        self.experiment_dir_name = "hooks-sweep"
        self.trainable_name = "trainable"

    def __str__(self) -> str:
        return f"trainable_{self.trial_id}"


def test_statuses_of_failed_and_unfinished_trials(server: str) -> None:
    callback = RunstreamLoggerCallback(experiment=f"ray-hooks-{uuid.uuid4().hex[:8]}", url=server)
    config = {"lr": 0.5, "opt": {"name": "adam"}, "blob": "x" * 7000}  # blob: too long
    done, failed, cut = (_Trial(f"t{i}", config) for i in range(3))
    for trial in (done, failed, cut):
        callback.on_trial_start(iteration=0, trials=[], trial=trial)
        callback.on_trial_result(
            iteration=1, trials=[], trial=trial, result={"training_iteration": 1, "loss": 1.0}
        )
    callback.on_trial_complete(iteration=2, trials=[], trial=done)
    callback.on_trial_error(iteration=2, trials=[], trial=done)  # ended already: ignored
    callback.on_trial_error(iteration=2, trials=[], trial=failed)
    callback.on_experiment_end(trials=[done, failed, cut])  # ``cut`` never ended: interrupted
    statuses = {"t0": "FINISHED", "t1": "FAILED", "t2": "KILLED"}
    assert callback.parent_run_id is not None
    with runstream.Client(server) as client:
        for trial_id, status in statuses.items():
            run_id = callback.trial_run_ids[trial_id]
            run = eventually(
                lambda run_id=run_id: client.get_run(run_id),
                lambda r, status=status: r["info"]["status"] == status,
            )
            assert run["info"]["status"] == status, trial_id
            assert run["info"]["run_name"] == f"trainable_{trial_id}"
            assert pairs(run["data"].get("params")) == {"lr": "0.5", "opt/name": "adam"}
            assert client.history(run_id, "loss").points()[0][::2] == (1, 1.0)
        parent = eventually(
            lambda: client.get_run(callback.parent_run_id or ""),
            lambda r: r["info"]["status"] == "KILLED",
        )
        assert parent["info"]["status"] == "KILLED"
        assert parent["info"]["run_name"] == "hooks-sweep"
