"""Stateless checks: each refusal names the field; metric points are not visited."""

from __future__ import annotations

import pytest

from runstream.ingest.rules import check_events
from runstream.schemas import constants as c
from runstream.schemas import experiments as ex
from runstream.schemas import runs as rn
from runstream.schemas.codec import Event
from runstream.schemas.errors import InvalidParameterValue, RequestTooLarge
from runstream.schemas.metrics import MetricSeries, MetricsLogged

RUN = "a" * 32


def test_counts_points() -> None:
    s = MetricSeries.from_lists("loss", [1, 2], [3, 4], [0.1, 0.2])
    assert check_events([MetricsLogged(RUN, (s, s)), rn.RunDeleted(RUN, 1)]) == 4


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        (rn.RunDeleted("bad id!", 1), "events[0].run_id"),
        (rn.ParamsLogged(RUN, (("ok", "1"), ("../x", "2"))), "events[0].params[1].key"),
        (rn.ParamsLogged(RUN, (("a", "1"), ("a", "2"))), "Duplicate parameter keys"),
        (rn.ParamsLogged(RUN, (("a", "x" * 6001),)), "events[0].params[0].value"),
        (rn.RunUpdated(RUN, status="DONE"), "events[0].status"),
        (rn.RunTagsSet(RUN, (("k", "v" * 8001),)), "events[0].tags[0].value"),
        (ex.ExperimentTagSet("x1", "k", "v"), "Invalid experiment ID"),
        (ex.ExperimentRenamed("1", "", 1), "Invalid experiment name"),
        (
            MetricsLogged(RUN, (MetricSeries("m", b"\0" * 16, b"\0" * 8, b"\0" * 8),)),
            "events[0].series[0]",
        ),
        (
            MetricsLogged(RUN, (MetricSeries.from_lists("a//b", [1], [1], [1.0]),)),
            "events[0].series[0].key",
        ),
    ],
)
def test_refusals_name_the_field(event: Event, fragment: str) -> None:
    with pytest.raises(InvalidParameterValue) as caught:
        check_events([event])
    assert fragment in caught.value.message


def test_limits() -> None:
    with pytest.raises(InvalidParameterValue):
        check_events([])
    with pytest.raises(InvalidParameterValue):
        check_events([rn.RunDeleted(RUN, 1)] * (c.MAX_EVENTS_PER_REQUEST + 1))
    n = c.MAX_POINTS_PER_REQUEST // 2 + 1
    big = MetricSeries("m", b"\0" * 8 * n, b"\0" * 8 * n, b"\0" * 8 * n)
    with pytest.raises(RequestTooLarge):
        check_events([MetricsLogged(RUN, (big, big))])
