"""What auth costs the write path: MLflow ``log-batch`` and the native SDK, auth off and on.

    python -m bench --only auth_overhead [--quick]

Starts two ``runstream server`` processes side by side on fresh databases, ``--auth none``
and ``--auth basic``, and takes turns between them (so both see the same machine noise):
per round, a slice of MLflow log-batch requests (100 metrics each, one client) and one SDK
run on each. With auth on the writer is a non-admin user that created its experiment (so the
permission check runs, as for any team member), sending HTTP Basic (mlflow) or a token (SDK).
Results: the median rate of each side, and auth on over auth off in ``detail``.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from collections.abc import Callable

from bench.harness import start_runstream
from bench.report import Context, Result

SECTION = "Auth (issue 13)"

ADMIN_PASSWORD = "bench-admin-password"
USER, PASSWORD = "bench", "bench-user-password"


def _creds(url: str, auth: bool) -> str | None:
    """Set the mlflow client's credentials; return an API token of the bench user."""
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        os.environ.pop(name, None)
    if not auth:
        return None
    from mlflow.server import get_app_client

    os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = ADMIN_PASSWORD
    get_app_client("basic-auth", url).create_user(USER, PASSWORD)
    os.environ["MLFLOW_TRACKING_USERNAME"] = USER
    os.environ["MLFLOW_TRACKING_PASSWORD"] = PASSWORD
    import urllib.request

    request = urllib.request.Request(
        f"{url}/api/runstream/v1/tokens",
        json.dumps({"name": "bench"}).encode(),
        {"Content-Type": "application/json", "Authorization": _basic(USER, PASSWORD)},
        method="POST",
    )
    with urllib.request.urlopen(request) as answer:
        token: str = json.loads(answer.read())["token"]
    return token


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class LogBatch:
    """One client logging 100-metric batches to one run."""

    def __init__(self, url: str) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(url)
        experiment_id = self.client.create_experiment(f"bench-{uuid.uuid4().hex[:8]}")
        self.run_id = self.client.create_run(experiment_id).info.run_id
        self.step = 0

    def rate(self, batches: int) -> float:
        """log-batch requests per second."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        started = time.perf_counter()
        for _ in range(batches):
            self.step += 1
            metrics = [Metric(f"m{k}", float(self.step), now, self.step) for k in range(100)]
            self.client.log_batch(self.run_id, metrics=metrics)
        return batches / (time.perf_counter() - started)


def sdk(url: str, points: int, token: str | None) -> float:
    """Points per second through the SDK, from the first log to the end of finish()."""
    import runstream

    keys = 10
    run = runstream.start_run(experiment="bench-sdk", url=url, token=token)
    started = time.perf_counter()
    for step in range(points // keys):
        run.log({f"k{k}": float(step) for k in range(keys)}, step=step)
    assert run.finish(timeout=300)
    return points / (time.perf_counter() - started)


def _as(auth: bool) -> None:
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        os.environ.pop(name, None)
    if auth:
        os.environ["MLFLOW_TRACKING_USERNAME"] = USER
        os.environ["MLFLOW_TRACKING_PASSWORD"] = PASSWORD


def auth_overhead(ctx: Context) -> list[Result]:
    rounds = ctx.size(2, 8)
    batches, points = ctx.size(20, 50), ctx.size(50_000, 200_000)
    env = {"RUNSTREAM_ADMIN_PASSWORD": ADMIN_PASSWORD}
    rates: dict[tuple[str, bool], list[float]] = {}
    with (
        start_runstream(ctx.stores, flags=["--auth", "none"], env=env) as off,
        start_runstream(ctx.stores, flags=["--auth", "basic"], env=env) as on,
    ):
        urls = {False: off.url, True: on.url}
        tokens = {False: None, True: _creds(on.url, True)}
        writers: dict[bool, LogBatch] = {}
        for auth in (False, True):
            _as(auth)
            writers[auth] = LogBatch(urls[auth])
        for round_ in range(rounds):
            # Both servers run side by side and take turns, so both see the same noise.
            for auth in (False, True) if round_ % 2 == 0 else (True, False):
                _as(auth)
                rates.setdefault(("log_batch", auth), []).append(writers[auth].rate(batches))
                rates.setdefault(("sdk", auth), []).append(sdk(urls[auth], points, tokens[auth]))
        _as(False)
    results = []
    for workload, unit, what in (
        ("log_batch", "requests/s", f"MLflow log-batch (100 metrics), {batches} per slice"),
        ("sdk", "points/s", f"SDK run of {points:,} points"),
    ):
        medians = {auth: statistics.median(rates[(workload, auth)]) for auth in (False, True)}
        for auth in (False, True):
            results.append(
                Result(
                    f"auth_overhead_{workload}_{'on' if auth else 'off'}",
                    SECTION,
                    f"{what}, auth {'on' if auth else 'off'}: median of {rounds} slices",
                    medians[auth],
                    unit,
                    detail={
                        "on_over_off": medians[True] / medians[False],
                        "slices": rates[(workload, auth)],
                    },
                )
            )
    return results


OPT_IN: dict[str, Callable[[Context], list[Result]]] = {"auth_overhead": auth_overhead}
