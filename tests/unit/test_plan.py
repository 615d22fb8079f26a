"""The pure projection: events folded into rows per table, with MLflow's semantics."""

from __future__ import annotations

from runstream.projector.plan import (
    ExperimentPatch,
    ExperimentRow,
    RunPatch,
    RunRow,
    RunsCascade,
    plan,
    plan_events,
)
from runstream.schemas import experiments as ex
from runstream.schemas import metrics as me
from runstream.schemas import runs as ru
from runstream.schemas.entries import Entry

RUN = "0123456789abcdef0123456789abcdef"
RUN2 = "fedcba9876543210fedcba9876543210"


def created(run_id: str = RUN, **kw: object) -> ru.RunCreated:
    fields: dict[str, object] = {
        "run_id": run_id,
        "experiment_id": "3",
        "user_id": "ann",
        "run_name": "brave-cat",
        "start_time": 100,
        "artifact_uri": f"mlflow-artifacts:/3/{run_id}/artifacts",
    }
    fields.update(kw)
    return ru.RunCreated(**fields)  # type: ignore[arg-type]


def test_experiment_created_row_and_tags() -> None:
    p = plan_events([ex.ExperimentCreated("3", "exp", "s3://b/3", 50, (("a", "1"), ("b", "2")))])
    (seg,) = p.segments
    assert seg.experiments == {3: ExperimentRow(3, "exp", "s3://b/3", "active", 50, 50)}
    assert seg.experiment_tags == {(3, "a"): "1", (3, "b"): "2"}
    assert seg.cascade is None


def test_experiment_rename_and_tags_fold_into_the_created_row() -> None:
    p = plan_events(
        [
            ex.ExperimentCreated("3", "exp", "loc", 50),
            ex.ExperimentRenamed("3", "renamed", 60),
            ex.ExperimentTagSet("3", "k", "v1"),
            ex.ExperimentTagSet("3", "k", "v2"),
            ex.ExperimentTagSet("3", "gone", "x"),
            ex.ExperimentTagDeleted("3", "gone"),
        ]
    )
    (seg,) = p.segments
    assert seg.experiments[3].name == "renamed"
    assert seg.experiments[3].last_update_time == 60
    assert seg.experiment_patches == {}
    assert seg.experiment_tags == {(3, "k"): "v2", (3, "gone"): None}


def test_rename_of_an_existing_experiment_is_a_patch() -> None:
    (seg,) = plan_events([ex.ExperimentRenamed("4", "n", 70)]).segments
    assert seg.experiment_patches == {4: ExperimentPatch(4, name="n", last_update_time=70)}


def test_experiment_delete_and_restore_cascade_to_runs_in_order() -> None:
    p = plan_events(
        [
            created(),
            ex.ExperimentDeleted("3", 200),
            ru.RunTagsSet(RUN, (("after", "delete"),)),
            ex.ExperimentRestored("3", 300),
        ]
    )
    first, second = p.segments
    assert first.runs[RUN].lifecycle_stage == "active"
    assert first.experiment_patches[3] == ExperimentPatch(
        3, last_update_time=200, lifecycle_stage="deleted", set_deleted_time=True, deleted_time=200
    )
    assert first.cascade == RunsCascade(3, "deleted", 200)
    assert second.run_tags == {(RUN, "after"): "delete"}
    assert second.experiment_patches[3].lifecycle_stage == "active"
    assert second.experiment_patches[3].set_deleted_time
    assert second.experiment_patches[3].deleted_time is None
    assert second.cascade == RunsCascade(3, "active", None)


def test_run_created_row_and_run_name_tag() -> None:
    (seg,) = plan_events([created(tags=(("t", "1"),))]).segments
    assert seg.runs[RUN] == RunRow(
        RUN, 3, "brave-cat", "ann", "RUNNING", 100, None, "active",
        f"mlflow-artifacts:/3/{RUN}/artifacts",
    )  # fmt: skip
    assert seg.run_tags == {(RUN, "t"): "1", (RUN, "mlflow.runName"): "brave-cat"}


def test_run_name_from_the_tag_when_run_name_is_empty() -> None:
    (seg,) = plan_events([created(run_name="", tags=(("mlflow.runName", "x"),))]).segments
    assert seg.runs[RUN].name == "x"
    assert seg.run_tags == {(RUN, "mlflow.runName"): "x"}


def test_run_updates_fold_into_created_row() -> None:
    (seg,) = plan_events(
        [
            created(),
            ru.RunUpdated(RUN, status="FINISHED", end_time=500),
            ru.RunUpdated(RUN, run_name="renamed"),
            ru.RunUpdated(RUN, run_name=""),  # MLflow ignores an empty name
            ru.RunDeleted(RUN, 600),
        ]
    ).segments
    row = seg.runs[RUN]
    assert (row.status, row.end_time, row.name) == ("FINISHED", 500, "renamed")
    assert (row.lifecycle_stage, row.deleted_time) == ("deleted", 600)
    assert seg.run_tags[(RUN, "mlflow.runName")] == "renamed"


def test_run_patches_on_existing_runs() -> None:
    (seg,) = plan_events(
        [
            ru.RunUpdated(RUN, status="KILLED"),
            ru.RunDeleted(RUN, 10),
            ru.RunRestored(RUN, 20),
            ru.RunUpdated(RUN2, end_time=7),
        ]
    ).segments
    assert seg.run_patches[RUN] == RunPatch(
        RUN, status="KILLED", lifecycle_stage="active", set_deleted_time=True, deleted_time=None
    )
    assert seg.run_patches[RUN2] == RunPatch(RUN2, end_time=7)
    assert seg.runs == {}


def test_run_tags_last_wins_and_run_name_tag_renames() -> None:
    (seg,) = plan_events(
        [
            ru.RunTagsSet(RUN, (("a", "1"), ("a", "2"), ("mlflow.runName", "new"))),
            ru.RunTagDeleted(RUN, "b"),
            ru.RunTagsSet(RUN, (("c", "x"),)),
            ru.RunTagDeleted(RUN, "c"),
        ]
    ).segments
    assert seg.run_tags == {
        (RUN, "a"): "2",
        (RUN, "mlflow.runName"): "new",
        (RUN, "b"): None,
        (RUN, "c"): None,
    }
    assert seg.run_patches[RUN].name == "new"


def test_params_first_value_kept() -> None:
    (seg,) = plan_events(
        [
            ru.ParamsLogged(RUN, (("lr", "0.1"), ("bs", "32"))),
            ru.ParamsLogged(RUN, (("lr", "0.1"),)),
        ]
    ).segments
    assert seg.params == {(RUN, "lr"): "0.1", (RUN, "bs"): "32"}


def test_metrics_concatenated_per_series_in_logged_order_across_entries() -> None:
    s = me.MetricSeries.from_lists
    entries = [
        Entry(1, (me.MetricsLogged(RUN, (s("loss", [0, 1], [10, 11], [1.0, 0.5]),)),)),
        Entry(2, (me.MetricsLogged(RUN2, (s("loss", [0], [12], [9.0]),)),)),
        Entry(
            3,
            (
                me.MetricsLogged(
                    RUN, (s("loss", [1, 0], [13, 14], [0.4, 0.3]), s("acc", [5], [15], [0.9]))
                ),
            ),
        ),
        Entry(4, (me.MetricsLogged(RUN, (s("empty", [], [], []),)),)),
    ]
    p = plan(entries)
    m = p.metrics
    assert p.entries == 4
    assert m.series == ((RUN, "loss"), (RUN2, "loss"), (RUN, "acc"))
    assert m.offsets == (0, 4, 5, 6)
    assert m.steps == me.pack_int64([0, 1, 1, 0, 0, 5])  # duplicate steps kept in order
    assert m.timestamps == me.pack_int64([10, 11, 13, 14, 12, 15])
    assert m.values == me.pack_float64([1.0, 0.5, 0.4, 0.3, 9.0, 0.9])
    assert p.point_count == 6
    assert p.segments == ()
