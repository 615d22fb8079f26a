"""The one validation the door and the projection share (schemas.validation.check_storable)."""

from __future__ import annotations

import dataclasses
import typing

import orjson
import pytest

from runstream.api.mlflow.messages import check_metric
from runstream.ingest import rules
from runstream.projector.dead_letters import releases
from runstream.schemas import codec
from runstream.schemas import constants as c
from runstream.schemas import experiments as ex
from runstream.schemas import runs as rn
from runstream.schemas.errors import InvalidParameterValue
from runstream.schemas.metrics import MetricSeries, MetricsLogged
from runstream.schemas.validation import (
    PAIR_LIMITS,
    STRING_LIMITS,
    check_storable,
    text_problem,
)

RUN = "a" * 32


def test_every_string_field_of_every_event_has_a_limit() -> None:
    for cls in codec.EVENT_TYPES.values():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint = str(hints[f.name])
            if "tuple[tuple[str, str]" in hint:
                assert (cls.TYPE, f.name) in PAIR_LIMITS, f"{cls.TYPE}.{f.name}"
            elif "str" in hint and "MetricSeries" not in hint:
                assert f.name in STRING_LIMITS, f"{cls.TYPE}.{f.name}"


@pytest.mark.parametrize(
    "value",
    ["a\x00b", "\x00", "x\ud800y", "\udfff", "é\x00"],
)
def test_text_problem_finds_nul_and_lone_surrogates(value: str) -> None:
    assert text_problem(value) is not None


@pytest.mark.parametrize("value", ["", "plain", "é漢字🙂", "a" * 10_000])
def test_text_problem_passes_storable_text(value: str) -> None:
    assert text_problem(value) is None


@pytest.mark.parametrize(
    "event",
    [
        rn.ParamsLogged(RUN, (("lr", "0.1\x00"),)),
        rn.ParamsLogged(RUN, (("l\x00r", "0.1"),)),
        rn.RunTagsSet(RUN, (("k", "\ud800"),)),
        rn.RunUpdated(RUN, end_time=2**63),
        rn.RunUpdated(RUN, run_name="n\x00"),
        rn.RunCreated(RUN, "0", "u" * 257, "r", 1, ""),
        rn.RunCreated(RUN, "0", "u\x00", "r", 1, ""),
        rn.RunCreated(RUN, "0", "u", "r", -(2**63) - 1, ""),
        ex.ExperimentCreated("", "name\x00", "", 1),
        ex.ExperimentTagSet("1", "mlflow.note.content", "desc\x00"),
        MetricsLogged(RUN, (MetricSeries.from_lists("lo\x00ss", [1], [1], [1.0]),)),
    ],
)
def test_unstorable_events_are_refused_by_door_and_projection(event: codec.Event) -> None:
    with pytest.raises(InvalidParameterValue):
        check_storable(event)
    with pytest.raises(InvalidParameterValue):
        rules.check_events([event])


def test_storable_events_pass() -> None:
    for event in (
        rn.ParamsLogged(RUN, (("lr", "0.1 é漢字🙂"),)),
        rn.RunUpdated(RUN, end_time=2**63 - 1),
        rn.RunCreated(RUN, "0", "u" * 256, "r", 0, ""),
        MetricsLogged(RUN, (MetricSeries.from_lists("loss", [-(2**63)], [0], [1.0]),)),
    ):
        check_storable(event)
        rules.check_events([event])


def test_steps_past_int64_are_refused_not_clamped() -> None:
    body = orjson.loads(b'{"step": -9223372036854775809, "big": 9223372036854775808}')
    assert body["step"] == -(2.0**63)  # orjson reads it as a float: the clamp of issue 14
    with pytest.raises(InvalidParameterValue):
        check_metric("loss", 1.0, 1, body["step"])
    with pytest.raises(InvalidParameterValue):
        check_metric("loss", 1.0, 1, body["big"])
    assert check_metric("loss", 1.0, 1, -(2**63)).step == -(2**63)


def test_dead_entry_releases_what_ingest_reserved() -> None:
    ops = releases(
        "p",
        0,
        [
            rn.ParamsLogged(RUN, (("lr", "0.1"),)),
            ex.ExperimentCreated("7", "exp", "", 1),
            rn.RunCreated(RUN, "0", "u", "r", 1, ""),
        ],
    )
    assert ("hdel_if", c.run_params_key("p", 0, RUN), "lr", "0.1") in ops
    assert ("del_if", c.experiment_name_key("p", "exp"), "", "7") in ops
    assert ("del", c.run_state_key("p", 0, RUN), "", "") in ops


def test_error_messages_quoting_lone_surrogates_still_render() -> None:
    # Found by the write fuzz: a 400 whose message quoted a key with a lone surrogate made
    # aiohttp answer its own 500 (orjson refuses to write lone surrogates).
    from runstream.web import error_response

    resp = error_response(InvalidParameterValue("Invalid key '\ud800'"))
    assert resp.status == 400
    assert resp.body is not None and b"\\\\ud800" in bytes(resp.body)  # type: ignore[arg-type]
