"""The per-request and per-write Prometheus children are looked up once and are the metrics'
own children (what ``/metrics`` reports)."""

from __future__ import annotations

from runstream import telemetry


def test_request_histogram_is_the_labelled_child() -> None:
    child = telemetry.request_histogram("POST", "/api/2.0/mlflow/runs/log-metric", 2)
    assert child is telemetry.request_histogram("POST", "/api/2.0/mlflow/runs/log-metric", 2)
    assert child is telemetry.REQUEST_SECONDS.labels(
        "POST", "/api/2.0/mlflow/runs/log-metric", "2xx"
    )
    assert child is not telemetry.request_histogram("POST", "/api/2.0/mlflow/runs/log-metric", 4)


def test_accepted_counters_are_the_shard_children() -> None:
    points, events = telemetry.accepted_counters(7)
    assert points is telemetry.POINTS_ACCEPTED.labels("7")
    assert events is telemetry.EVENTS_ACCEPTED.labels("7")
    assert telemetry.accepted_counters(7) == (points, events)
