"""Logged-model and run input/output events: codec round trips, stateless checks, shards and
the append script's ops."""

from __future__ import annotations

import math

import msgpack
import pytest

from runstream.ingest import model_rules, rules
from runstream.ingest.commands import Absent, script_args
from runstream.ingest.logged_models import model_artifact_location, new_model_id, referenced_models
from runstream.schemas import codec, entries
from runstream.schemas import constants as c
from runstream.schemas import inputs as inp
from runstream.schemas import models as mo
from runstream.schemas.errors import EventDecodeError, InvalidParameterValue
from runstream.schemas.sharding import shard_of_model, shard_of_run

RUN = "a" * 32
MODEL = "m-" + "0123456789abcdef" * 2

EVENTS: list[codec.Event] = [
    mo.LoggedModelCreated(
        model_id=MODEL,
        experiment_id="3",
        name="model",
        creation_time=1_700_000_000_000,
        artifact_location=f"mlflow-artifacts:/3/models/{MODEL}/artifacts",
        source_run_id=RUN,
        model_type="sklearn",
        tags=(("a", "1"), ("b", "ü")),
        params=(("p", "x"),),
    ),
    mo.LoggedModelFinalized(MODEL, "READY", 5),
    mo.LoggedModelTagsSet(MODEL, (("k", "v"),)),
    mo.LoggedModelTagDeleted(MODEL, "k"),
    mo.LoggedModelParamsLogged(MODEL, (("q", "y"),)),
    mo.LoggedModelDeleted(MODEL, 6),
    mo.LoggedModelMetricLogged(RUN, MODEL, "rmse", math.inf, 7, 2, "eval", "abc"),
    inp.DatasetInputLogged(
        run_id=RUN,
        name="train",
        digest="d1",
        source_type="local",
        source='{"uri": "x"}',
        time=8,
        schema='{"mlflow_colspec": []}',
        profile='{"num_rows": 3}',
        tags=((c.DATASET_CONTEXT_TAG, "training"),),
    ),
    inp.ModelInputLogged(RUN, MODEL, 9),
    inp.ModelOutputLogged(RUN, MODEL, 0, 10),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.TYPE)
def test_every_event_round_trips_through_the_codec(event: codec.Event) -> None:
    assert codec.EVENT_TYPES[event.TYPE] is type(event)
    assert codec.decode_event(msgpack.unpackb(codec.encode_event(event))) == event
    entry = entries.decode_entry(entries.encode_entry(42, [event]))
    assert entry.events == (event,)


def test_defaults_may_be_left_out_on_the_wire() -> None:
    decoded = codec.decode_event(
        {
            "type": "logged_model_created",
            "model_id": "",
            "experiment_id": "0",
            "name": "n",
            "creation_time": 1,
        }
    )
    assert decoded == mo.LoggedModelCreated("", "0", "n", 1)
    assert decoded.status == "PENDING" and decoded.tags == ()


def test_bad_fields_are_refused_with_their_path() -> None:
    with pytest.raises(EventDecodeError, match="step"):
        codec.decode_event(
            {
                "type": "model_output_logged",
                "run_id": RUN,
                "model_id": MODEL,
                "step": "0",
                "time": 1,
            }
        )


def test_all_events_pass_the_stateless_checks() -> None:
    assert rules.check_events(EVENTS) == 0


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        (mo.LoggedModelFinalized("m-123", "READY", 1), "events[0].model_id"),
        (mo.LoggedModelFinalized(MODEL, "DONE", 1), "events[0].status"),
        (mo.LoggedModelCreated("", "x", "n", 1), "Invalid experiment ID"),
        (mo.LoggedModelCreated("", "0", "a.b", 1), "Invalid model name"),
        (mo.LoggedModelCreated("", "0", "", 1), "Invalid model name"),
        (mo.LoggedModelTagsSet(MODEL, (("", "v"),)), "events[0].tags[0].key"),
        (
            inp.DatasetInputLogged(RUN, "n" * 501, "d", "local", "s", 1),
            "'name' exceeds the maximum length of 500",
        ),
        (
            inp.DatasetInputLogged(RUN, "n", "d" * 37, "local", "s", 1),
            "'digest' exceeds the maximum length of 36",
        ),
        (
            inp.DatasetInputLogged(RUN, "n", "d", "local", "s", 1, tags=(("k", "v" * 501),)),
            "'value' exceeds the maximum length of 500",
        ),
        (inp.ModelOutputLogged("bad id!", MODEL, 0, 1), "events[0].run_id"),
        (inp.ModelInputLogged(RUN, "", 1), "events[0].model_id"),
    ],
)
def test_bad_events_are_refused(event: codec.Event, fragment: str) -> None:
    with pytest.raises(InvalidParameterValue) as exc:
        rules.check_events([event])
    assert fragment in exc.value.message


def test_created_model_may_leave_its_id_to_ingest() -> None:
    model_rules.check_event(mo.LoggedModelCreated("", "0", "n", 1), "events[0]")
    assert mo.MODEL_ID_PATTERN.match(new_model_id())
    assert model_artifact_location("s3://b/p/", MODEL) == f"s3://b/p/models/{MODEL}/artifacts"


def test_model_events_meet_on_the_model_shard_and_run_events_on_the_run_shard() -> None:
    assert shard_of_model(MODEL, 8) == shard_of_model(MODEL, 8)
    assert {shard_of_model(new_model_id(), 8) for _ in range(200)} == set(range(8))
    assert shard_of_run(RUN, 8) in range(8)


def test_referenced_models_leave_out_models_created_in_the_same_request() -> None:
    other = "m-" + "f" * 32
    events: list[codec.Event] = [
        mo.LoggedModelCreated(MODEL, "0", "n", 1),
        mo.LoggedModelTagsSet(MODEL, (("a", "b"),)),
        mo.LoggedModelFinalized(other, "READY", 2),
        mo.LoggedModelDeleted(other, 3),
        inp.ModelOutputLogged(RUN, "m-unchecked", 0, 4),
    ]
    assert referenced_models(events) == [other]


def test_script_args_check_the_run_of_inputs_and_skip_model_events() -> None:
    events: list[codec.Event] = [
        mo.LoggedModelTagsSet(MODEL, (("a", "b"),)),
        inp.DatasetInputLogged(RUN, "n", "d", "local", "s", 1),
        inp.ModelOutputLogged(RUN, MODEL, 0, 1),
        mo.LoggedModelMetricLogged(RUN, MODEL, "k", 1.0, 1),
    ]
    keys, header = script_args("rs", 1, events, Absent(), (), None)
    ops = msgpack.unpackb(header, raw=False)["ops"]
    # One liveness check of the run for the whole request.
    assert [op[0] for op in ops] == ["ra"]
    assert ops[0][4] == RUN
    assert keys[2] == "rs:tail:{1}"
    assert keys[3].startswith("rs:run:{1}:")
