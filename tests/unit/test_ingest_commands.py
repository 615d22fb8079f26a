"""Script arguments and replies: op layout, and MLflow's wording of each refusal."""

from __future__ import annotations

import msgpack
import pytest

from runstream.ingest.commands import Absent, Appended, Missing, read_reply, script_args
from runstream.ingest.watermarks import parse_message, reached
from runstream.schemas import constants as c
from runstream.schemas import runs as rn
from runstream.schemas.errors import (
    BadRequest,
    InvalidParameterValue,
    InvalidState,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)
from runstream.schemas.metrics import MetricSeries, MetricsLogged
from runstream.schemas.sharding import WriteToken

RUN = "a" * 32


def test_script_args_dedupe_liveness_checks() -> None:
    s = MetricSeries.from_lists("m", [1], [1], [1.0])
    events = [MetricsLogged(RUN, (s,))] * 3 + [rn.ParamsLogged(RUN, (("k", "v"),))]
    keys, header = script_args("p", 2, events, Absent(runs=frozenset({RUN})), ["9"], "idem")
    assert keys == [
        c.stream_key("p", 2),
        c.idempotency_key("p", 2, "idem"),
        c.tail_key("p", 2),
        c.run_state_key("p", 2, RUN),
        c.run_params_key("p", 2, RUN),
    ]
    decoded = msgpack.unpackb(header)
    assert decoded["ops"] == [["ra", 4, 5, 1, RUN], ["p", 4, 5, 1, RUN, 1, "k", "v"]]
    assert decoded["dexp"] == ["9"] and decoded["idem"] == 1


def test_replies() -> None:
    assert read_reply([b"ok", b"1-0", b"2-0"]) == Appended(("1-0", "2-0"))
    assert read_reply([b"dup", b"1-0,2-0"]) == Appended(("1-0", "2-0"), duplicate=True)
    assert read_reply([b"missing", [RUN.encode()], [], [b"n"]]) == Missing((RUN,), (), ("n",))


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        ([b"run_missing", RUN], ResourceDoesNotExist, f"Run with id={RUN} not found"),
        (
            [b"run_deleted", RUN],
            InvalidParameterValue,
            f"The run {RUN} must be in the 'active' state. Current state is deleted.",
        ),
        ([b"run_exists", RUN], ResourceAlreadyExists, f"Run with id={RUN} already exists"),
        (
            [b"param_conflict", RUN, 0, b"a", b"1", b"2", b"b", b"x", b"y"],
            InvalidParameterValue,
            "Changing param values is not allowed. Params were already logged='[{'key': 'a',"
            " 'old_value': '1', 'new_value': '2'}, {'key': 'b', 'old_value': 'x', 'new_value':"
            f" 'y'}}]' for run ID='{RUN}'.",
        ),
        ([b"exp_missing", b"4"], ResourceDoesNotExist, "No Experiment with id=4 exists"),
        ([b"exp_rename_inactive", b"4"], InvalidState, "Cannot rename a non-active experiment."),
        ([b"name_exists", b"n"], ResourceAlreadyExists, "Experiment(name=n) already exists."),
        ([b"rename_exists", b"n"], BadRequest, "Experiment(name=n) already exists."),
    ],
)
def test_refusals(reply: list[object], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        read_reply([b"err", *reply])
    assert str(caught.value) == message


def test_watermark_messages() -> None:
    assert parse_message(b"3 1700-2") == (3, (1700, 2))
    assert parse_message(b"junk") is None
    marks = {0: (5, 0), 1: (9, 9)}
    assert reached(marks, WriteToken.parse("0:5-0,1:9-1"))
    assert not reached(marks, WriteToken.parse("0:5-1"))
    assert not reached(marks, WriteToken.parse("2:1-0"))
