"""Pure planning of logged-model and run input/output events into rows."""

from __future__ import annotations

from runstream.projector.models_plan import LoggedModelPatch, ModelMetricRow
from runstream.projector.plan import plan_events
from runstream.schemas import experiments as ex
from runstream.schemas import inputs as inp
from runstream.schemas import models as mo
from runstream.schemas import runs as ru

RUN = "a" * 32
M1 = "m-" + "1" * 32
M2 = "m-" + "2" * 32


def created(model_id: str, **kw: object) -> mo.LoggedModelCreated:
    return mo.LoggedModelCreated(model_id, "0", "model", 100, f"loc/{model_id}", **kw)  # type: ignore[arg-type]


def test_a_model_created_and_changed_in_one_batch_is_one_row() -> None:
    p = plan_events(
        [
            created(M1, tags=(("a", "1"), ("b", "2")), params=(("p", "first"),)),
            mo.LoggedModelParamsLogged(M1, (("p", "second"), ("q", "x"))),
            mo.LoggedModelTagsSet(M1, (("a", "3"),)),
            mo.LoggedModelTagDeleted(M1, "b"),
            mo.LoggedModelFinalized(M1, "READY", 150),
        ]
    )
    (segment,) = p.segments
    rows = segment.models
    row = rows.models[M1]
    assert (row.status, row.last_updated_timestamp_ms, row.creation_timestamp_ms) == (
        "READY",
        150,
        100,
    )
    assert (row.model_type, row.source_run_id, row.lifecycle_stage) == (None, None, "active")
    assert rows.model_patches == {}
    assert rows.model_tags == {(M1, "a"): "3", (M1, "b"): None}
    assert rows.model_params == {(M1, "p"): "first", (M1, "q"): "x"}


def test_changes_to_an_earlier_model_are_patches() -> None:
    p = plan_events([mo.LoggedModelFinalized(M2, "FAILED", 7), mo.LoggedModelDeleted(M2, 9)])
    assert p.segments[0].models.model_patches == {
        M2: LoggedModelPatch(
            M2, status="FAILED", lifecycle_stage="deleted", last_updated_timestamp_ms=9
        )
    }


def test_inputs_keep_their_first_logging_and_outputs_their_steps() -> None:
    first = inp.DatasetInputLogged(RUN, "train", "d", "local", "s", 1, tags=(("k", "1"),))
    again = inp.DatasetInputLogged(RUN, "train", "d", "http", "s2", 2, tags=(("k", "2"),))
    p = plan_events(
        [
            ru.RunCreated(RUN, "0", "u", "r", 0, "art"),
            first,
            again,
            inp.ModelInputLogged(RUN, M1, 3),
            inp.ModelInputLogged(RUN, M1, 4),
            inp.ModelOutputLogged(RUN, M1, 0, 5),
            inp.ModelOutputLogged(RUN, M1, 1, 6),
            mo.LoggedModelMetricLogged(RUN, M1, "rmse", 0.5, 10, 1),
            mo.LoggedModelMetricLogged(RUN, M1, "rmse", 0.7, 10, 1),
        ]
    )
    rows = p.segments[0].models
    assert rows.dataset_inputs == {(RUN, "train", "d"): first}
    assert rows.model_inputs == {(RUN, M1): 3}
    assert rows.model_outputs == {(RUN, M1, 0): 5, (RUN, M1, 1): 6}
    assert rows.model_metrics == {(M1, "rmse", 10, 1, RUN): ModelMetricRow(0.5, None, None)}
    assert p.segments[0].runs  # the run row lands in the same segment, written first


def test_model_rows_follow_segments_around_cascades() -> None:
    p = plan_events(
        [created(M1), ex.ExperimentDeleted("0", 5), mo.LoggedModelFinalized(M1, "READY", 6)]
    )
    assert len(p.segments) == 2
    assert M1 in p.segments[0].models.models
    assert p.segments[1].models.model_patches[M1].status == "READY"


def test_an_empty_model_segment_is_empty() -> None:
    assert plan_events([mo.LoggedModelTagsSet(M1, ())]).segments == ()
