"""Ray Tune → runstream: one parent run per sweep, one child run per trial.

Pass ``RunstreamLoggerCallback`` to ``tune.RunConfig(callbacks=[...])``::

    from ray import tune
    from runstream.integrations.ray import RunstreamLoggerCallback

    tuner = tune.Tuner(
        train_fn,
        param_space={"lr": tune.grid_search([0.1, 0.01]), "model": {"depth": 4}},
        run_config=tune.RunConfig(
            callbacks=[RunstreamLoggerCallback(experiment="sweeps", url="http://host:5000")]
        ),
    )
    tuner.fit()

What lands where (see docs/ray.md):

- the sweep: one run named after Tune's experiment directory, with ``tags``; its status is
  set when the sweep ends (``FINISHED``, ``FAILED`` when a trial failed, ``KILLED`` when the
  sweep stopped with trials unfinished);
- each trial: a run named ``str(trial)`` with the tags ``mlflow.parentRunId`` (so MLflow's UI
  nests it under the sweep), ``trial_name`` and ``trial_id``, its config flattened into params
  the way Ray's ``MLflowLoggerCallback`` does (``{"model": {"depth": 4}}`` → ``model/depth``),
  and every numeric result field as a metric at step ``training_iteration``; it ends
  ``FINISHED`` when the trial completes, ``FAILED`` when it errors.

Logging never waits for the network (the SDK buffers and a background thread sends); a
trial's run is flushed when the trial ends. The callback runs on the Tune driver, so it works
with any trainable and beside Ray's own ``MLflowLoggerCallback`` in the same ``RunConfig``.

Importing this module imports Ray (``pip install "ray[tune]"``); ``import runstream`` does not.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from ray.tune.logger import LoggerCallback

import runstream
from runstream.client.buffer import check_key

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

logger = logging.getLogger(__name__)

TRAINING_ITERATION = "training_iteration"
DEFAULT_EXCLUDES: tuple[str, ...] = (
    "config",
    "pid",
    "timestamp",
    "time_total_s",
    TRAINING_ITERATION,
)
"""Result fields not logged as metrics: the ones Ray's TensorBoard and Aim loggers leave out
(``config`` is logged as params, ``training_iteration`` is the step)."""

PARENT_RUN_TAG = "mlflow.parentRunId"


def flatten(data: Mapping[str, Any], delimiter: str = "/") -> dict[str, Any]:
    """Nested mappings as one level with ``a/b`` keys, like Ray's ``flatten_dict``.

    Lists and other values are kept as they are (``str()`` of them becomes the param value).
    """
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):  # an empty mapping leaves no key, as in Ray
            for key, inner in value.items():
                walk(f"{prefix}{delimiter}{key}", inner)
        else:
            flat[prefix] = value

    for key, value in data.items():
        walk(str(key), value)
    return flat


def numeric_metrics(
    result: Mapping[str, Any], excludes: Collection[str] = DEFAULT_EXCLUDES
) -> dict[str, float]:
    """The fields of a Tune result that are metrics: flattened, numeric, as floats.

    Top-level fields named in ``excludes`` are left out, and so are booleans (``done``),
    strings, ``None``, lists and arrays, and keys MLflow would refuse. NaN and ±inf are kept:
    a diverging loss is worth seeing.
    """
    kept = {k: v for k, v in result.items() if k not in excludes}
    metrics: dict[str, float] = {}
    for key, value in flatten(kept).items():
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            continue
        if not isinstance(value, numbers.Real):
            continue
        try:
            number = float(value)
            check_key(key, "metric")
        except (TypeError, ValueError, OverflowError):
            continue
        metrics[key] = number
    return metrics


def _params(config: Mapping[str, Any]) -> dict[str, Any]:
    params = {}
    for key, value in flatten(config).items():
        try:
            check_key(key, "param")
        except (TypeError, ValueError):
            logger.warning("runstream: config key %r is not a valid param name; not logged", key)
            continue
        params[key] = value
    return params


class RunstreamLoggerCallback(LoggerCallback):
    """A Ray Tune callback that logs a sweep to runstream: a parent run, a run per trial.

    Args:
        experiment: experiment name, created when missing (default ``"Default"``).
        url: the runstream server (else ``RUNSTREAM_URL``, else an http(s)
            ``MLFLOW_TRACKING_URI``, else ``http://127.0.0.1:5000``).
        tags: tags set on the parent run and on every trial run.
        run_name: the parent run's name (default: Tune's experiment directory name).
        excludes: more top-level result fields to leave out of the metrics (added to
            ``DEFAULT_EXCLUDES``).
        log_params_on_trial_end: log the config when the trial ends instead of when it starts
            (as Ray's ``MLflowLoggerCallback`` offers).
        flush_timeout: seconds a trial's end waits for its data to be delivered (default
            ``RUNSTREAM_FLUSH_TIMEOUT``); what is not delivered by then is spooled and sent
            later, so a slow server never stalls the sweep for longer.

    After the sweep, ``parent_run_id`` and ``trial_run_ids`` (trial id → run id) name the
    runs it made.
    """

    def __init__(
        self,
        experiment: str | None = None,
        url: str | None = None,
        *,
        tags: Mapping[str, Any] | None = None,
        run_name: str | None = None,
        excludes: Collection[str] = (),
        log_params_on_trial_end: bool = False,
        flush_timeout: float | None = None,
    ) -> None:
        self.experiment = experiment
        self.url = url
        self.tags = dict(tags or {})
        self.run_name = run_name
        self.excludes = frozenset(DEFAULT_EXCLUDES) | frozenset(excludes)
        self.log_params_on_trial_end = log_params_on_trial_end
        self.flush_timeout = flush_timeout
        self.parent_run_id: str | None = None
        """Id of the sweep's run, once the first trial has started."""
        self.trial_run_ids: dict[str, str] = {}
        """Trial id → id of the trial's run."""
        self._parent: runstream.Run | None = None
        self._runs: dict[str, runstream.Run] = {}
        self._failed = 0

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its RunConfig (tuner.pkl); open runs hold threads and stay behind.
        state = self.__dict__.copy()
        state["_parent"] = None
        state["_runs"] = {}
        return state

    # -- runs -------------------------------------------------------------------------------

    def _parent_run(self, trial: Trial) -> runstream.Run:
        if self._parent is None:
            name = self.run_name or _experiment_name(trial)
            self._parent = runstream.start_run(
                experiment=self.experiment, name=name, tags=self.tags, url=self.url
            )
            self.parent_run_id = self._parent.run_id
        return self._parent

    def _trial_run(self, trial: Trial) -> runstream.Run:
        run = self._runs.get(trial.trial_id)
        if run is not None:
            return run
        parent = self._parent_run(trial)
        tags = {
            **self.tags,
            PARENT_RUN_TAG: parent.run_id,
            "trial_name": str(trial),
            "trial_id": trial.trial_id,
        }
        run = runstream.start_run(
            experiment=None if parent.experiment_id else self.experiment,
            experiment_id=parent.experiment_id,
            name=str(trial),
            tags=tags,
            url=self.url,
        )
        self._runs[trial.trial_id] = run
        self.trial_run_ids[trial.trial_id] = run.run_id
        return run

    def _ended(self, trial: Trial) -> bool:
        return trial.trial_id in self.trial_run_ids and trial.trial_id not in self._runs

    def _log_params(self, run: runstream.Run, trial: Trial) -> None:
        params = _params(trial.config)
        try:
            run.log_params(params)
        except ValueError:  # a value too long, or changed on a restarted trial: skip just it
            for key, value in params.items():
                try:
                    run.log_params({key: value})
                except ValueError as exc:
                    logger.warning("runstream: param %r of %s not logged: %s", key, trial, exc)

    # -- Tune hooks -------------------------------------------------------------------------

    def setup(self, *args: Any, **info: Any) -> None:
        """Start afresh when Tune starts a sweep (a callback may serve several ``fit()``)."""
        super().setup(*args, **info)
        self.parent_run_id = None
        self.trial_run_ids = {}
        self._failed = 0

    def log_trial_start(self, trial: Trial) -> None:
        """A run for the trial (reused when a paused or retried trial starts again)."""
        run = self._trial_run(trial)
        if not self.log_params_on_trial_end:
            self._log_params(run, trial)

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        """The result's numeric fields as metrics at step ``training_iteration``."""
        if self._ended(trial):
            return
        run = self._trial_run(trial)
        step = result.get(TRAINING_ITERATION)
        metrics = numeric_metrics(result, self.excludes)
        if metrics:
            run.log(metrics, step=step if isinstance(step, int) else None)

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        """End the trial's run (``FAILED`` when the trial errored) and deliver its data."""
        if self._ended(trial):
            return
        run = self._trial_run(trial)
        if self.log_params_on_trial_end:
            self._log_params(run, trial)
        if failed:
            self._failed += 1
        self._runs.pop(trial.trial_id, None)
        if not run.finish("FAILED" if failed else "FINISHED", timeout=self.flush_timeout):
            logger.warning(
                "runstream: run %s of %s not fully delivered yet (%s); the rest is spooled",
                run.run_id,
                trial,
                run.stats().last_error,
            )

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        """End the sweep's run; runs of trials that never ended are ``KILLED``."""
        unfinished = list(self._runs.values())
        for run in unfinished:
            run.finish("KILLED", timeout=self.flush_timeout)
        self._runs.clear()
        if self._parent is None:
            return
        if unfinished:
            status = "KILLED"
        elif self._failed:
            status = "FAILED"
        else:
            status = "FINISHED"
        self._parent.finish(status, timeout=self.flush_timeout)
        self._parent = None


def _experiment_name(trial: Trial) -> str:
    try:
        name = trial.experiment_dir_name
    except Exception:  # no storage context (a Trial made outside of Tune)
        name = None
    return str(name or trial.trainable_name or "ray-tune")
