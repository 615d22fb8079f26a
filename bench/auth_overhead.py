"""What auth costs the write path: MLflow ``log-batch`` and the native SDK, auth off and on.

    python -m bench.auth_overhead [--batches 50] [--points 200000] [--rounds 8]

Starts two ``runstream server`` processes side by side on fresh databases, ``--auth none``
and ``--auth basic``, and takes turns between them (so both see the same machine noise):
per round, ``--batches`` MLflow log-batch requests (100 metrics each, one client) and one SDK
run of ``--points`` points on each. With auth on the writer is a non-admin user that created
its experiment (so the permission check runs, as for any team member), sending HTTP Basic
(mlflow) or a token (SDK). Prints one JSON line per slice, then the medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from typing import Any

from bench.harness import start_runstream

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


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def _as(auth: bool) -> None:
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        os.environ.pop(name, None)
    if auth:
        os.environ["MLFLOW_TRACKING_USERNAME"] = USER
        os.environ["MLFLOW_TRACKING_PASSWORD"] = PASSWORD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=50, help="log-batch requests per slice")
    parser.add_argument("--points", type=int, default=200_000, help="SDK points per slice")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    env = {"RUNSTREAM_ADMIN_PASSWORD": ADMIN_PASSWORD}
    with (
        start_runstream(flags=["--auth", "none"], env=env) as off,
        start_runstream(flags=["--auth", "basic"], env=env) as on,
    ):
        urls = {False: off.url, True: on.url}
        token = _creds(on.url, True)
        tokens = {False: None, True: token}
        writers: dict[bool, LogBatch] = {}
        for auth in (False, True):
            _as(auth)
            writers[auth] = LogBatch(urls[auth])
        rates: dict[tuple[str, bool], list[float]] = {}
        for round_ in range(args.rounds):
            # Both servers run side by side and take turns, so both see the same noise.
            for auth in (False, True) if round_ % 2 == 0 else (True, False):
                _as(auth)
                rate = writers[auth].rate(args.batches)
                rates.setdefault(("log_batch", auth), []).append(rate)
                emit(round=round_, auth=auth, workload="log_batch", requests_per_s=round(rate, 1))
                rate = sdk(urls[auth], args.points, tokens[auth])
                rates.setdefault(("sdk", auth), []).append(rate)
                emit(round=round_, auth=auth, workload="sdk", points_per_s=round(rate))
    for workload in ("log_batch", "sdk"):
        off_rate = statistics.median(rates[(workload, False)])
        on_rate = statistics.median(rates[(workload, True)])
        emit(
            workload=workload,
            median_off=round(off_rate, 1),
            median_on=round(on_rate, 1),
            on_over_off=round(on_rate / off_rate, 3),
        )


if __name__ == "__main__":
    main()
