"""Prometheus metrics of a runstream process tree, and their ``GET /metrics`` text.

Counted as things happen (``prometheus_client`` metrics, in every process): request latency
per route, points accepted, projector batch latency. Read from Redis when scraped (so the
answer is the same whichever worker answers): stream length, projector lag and dead letters
per shard.

With ``runstream server --workers N`` the processes share one ``PROMETHEUS_MULTIPROC_DIR``
(``multiprocess_metrics``, set up by the parent before any worker starts); ``/metrics`` then
merges every process's files (``MultiProcessCollector``), so a scrape through any worker
counts the requests of all of them. With one process the default registry is used.

Every metric has labels: a labelled metric creates its value files at ``.labels()`` time, that
is after ``multiprocess_metrics`` chose where values live (``values.ValueClass``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
)  # fmt: skip

REQUEST_SECONDS = Histogram(
    "runstream_http_request_duration_seconds",
    "Time from a request's arrival to its response, per route and status class.",
    ("method", "route", "status"),
    buckets=_LATENCY_BUCKETS,
)
POINTS_ACCEPTED = Counter(
    "runstream_points_accepted",
    "Metric points appended to the event streams (acknowledged to the client).",
    ("shard",),
)
EVENTS_ACCEPTED = Counter(
    "runstream_events_accepted",
    "Events appended to the event streams.",
    ("shard",),
)


# Children looked up once per process: ``labels`` takes a lock and builds a tuple on every
# call, on every request and write. As many entries as the metrics have children (routes are
# the app's; unmatched paths share one label; shards are fixed).
@functools.cache
def request_histogram(method: str, route: str, status_class: int) -> Histogram:
    """``REQUEST_SECONDS`` of one (method, route, status class)."""
    return REQUEST_SECONDS.labels(method, route, f"{status_class}xx")


@functools.cache
def accepted_counters(shard: int) -> tuple[Counter, Counter]:
    """The points and events counters of ``shard``."""
    label = str(shard)
    return POINTS_ACCEPTED.labels(label), EVENTS_ACCEPTED.labels(label)


PROJECTOR_BATCH_SECONDS = Histogram(
    "runstream_projector_batch_duration_seconds",
    "Time to apply one batch of stream entries to PostgreSQL (plan, transaction, ack).",
    ("shard",),
    buckets=_LATENCY_BUCKETS,
)
PROJECTOR_ENTRIES = Counter(
    "runstream_projector_entries_applied",
    "Stream entries applied to PostgreSQL by the projector.",
    ("shard",),
)


@contextlib.contextmanager
def multiprocess_metrics() -> Iterator[str]:
    """Give this process and the workers it starts a shared metrics directory.

    Uses ``PROMETHEUS_MULTIPROC_DIR`` if the operator set it (left in place at exit), else a
    fresh temporary directory removed at exit. Values created after this (see the module
    docstring) live in that directory's files.
    """
    given = os.environ.get(MULTIPROC_ENV)
    directory = given or tempfile.mkdtemp(prefix="runstream-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    try:
        yield directory
    finally:
        if not given:
            os.environ.pop(MULTIPROC_ENV, None)
            values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
            shutil.rmtree(directory, ignore_errors=True)


def forget_process(pid: int) -> None:
    """A worker died: drop its live-gauge files (its counters and histograms stay counted)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


class ShardGauges(Collector):
    """Stream length, projector lag and dead letters per shard, as read at scrape time."""

    def __init__(self, readings: Sequence[tuple[int, int, int, int]]) -> None:
        self.readings = readings
        """(shard, stream length, lag, dead letters) per shard."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        length = GaugeMetricFamily(
            "runstream_stream_length", "Entries in the shard's event stream.", labels=["shard"]
        )
        lag = GaugeMetricFamily(
            "runstream_projector_lag",
            "Entries of the shard not yet applied (undelivered plus pending).",
            labels=["shard"],
        )
        dead = GaugeMetricFamily(
            "runstream_dead_letters",
            "Entries in the shard's dead-letter stream.",
            labels=["shard"],
        )
        for shard, stream_length, backlog, dead_letters in self.readings:
            label = [str(shard)]
            length.add_metric(label, stream_length)
            lag.add_metric(label, backlog)
            dead.add_metric(label, dead_letters)
        return [length, lag, dead]


def exposition(shards: Sequence[tuple[int, int, int, int]]) -> bytes:
    """The ``/metrics`` text: this process tree's metrics plus the per-shard gauges."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for collector in (
            REQUEST_SECONDS,
            POINTS_ACCEPTED,
            EVENTS_ACCEPTED,
            PROJECTOR_BATCH_SECONDS,
            PROJECTOR_ENTRIES,
        ):
            registry.register(collector)
    registry.register(ShardGauges(shards))
    return generate_latest(registry)
