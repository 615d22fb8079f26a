"""Pure parts of the model registry: events through the codec, MLflow's validation rules,
the registry script's arguments, projection statements, search filters and source checks."""

from __future__ import annotations

import msgpack
import pytest

from runstream.api.mlflow import registry_search as rs
from runstream.api.mlflow import registry_sources as src
from runstream.ingest import registry_commands as rc
from runstream.ingest import registry_rules as rr
from runstream.ingest.rules import check_events
from runstream.projector import registry_plan as rp
from runstream.projector.plan import plan_events
from runstream.schemas import codec
from runstream.schemas import registry as rg
from runstream.schemas.errors import (
    InvalidParameterValue,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)

RUN = "a" * 32
MODEL = "m-" + "1" * 32

EVENTS: list[rg.RegistryEvent] = [
    rg.RegisteredModelCreated("m", 1, "d", (("k", "v"),)),
    rg.RegisteredModelRenamed("m", "n", 2),
    rg.RegisteredModelUpdated("n", "", 3),
    rg.RegisteredModelTagSet("n", "k", "v2"),
    rg.RegisteredModelTagDeleted("n", "k"),
    rg.ModelVersionCreated("n", 1, 4, f"runs:/{RUN}/model", run_id=RUN, model_id=MODEL),
    rg.RegisteredModelAliasSet("n", "champion", 1),
    rg.RegisteredModelAliasDeleted("n", "champion"),
    rg.ModelVersionUpdated("n", 1, "tuned", 5),
    rg.ModelVersionStageTransitioned("n", 1, "Production", 6, True),
    rg.ModelVersionTagSet("n", 1, "a", "b"),
    rg.ModelVersionTagDeleted("n", 1, "a"),
    rg.ModelVersionDeleted("n", 1, 7),
    rg.RegisteredModelDeleted("n", 8),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.TYPE)
def test_registry_events_round_trip_through_the_codec(event: rg.RegistryEvent) -> None:
    assert codec.decode_event(msgpack.unpackb(codec.encode_event(event))) == event


def test_every_registry_event_passes_the_door_checks() -> None:
    check_events(EVENTS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (rg.RegisteredModelCreated("a/b", 1), "Names cannot contain '/' or ':'"),
        (rg.RegisteredModelCreated(" ", 1), "Missing value for required parameter"),
        (rg.RegisteredModelCreated("..", 1), "must not resolve to other names"),
        (rg.RegisteredModelAliasSet("m", "v3", 1), "Version alias name 'v3' is reserved"),
        (rg.RegisteredModelAliasSet("m", "a b", 1), "Invalid alias name"),
        (rg.RegisteredModelTagSet("m", "k" * 251, "v"), "exceeds the maximum length of 250"),
        (rg.ModelVersionStageTransitioned("m", 1, "None", 1, True), "not an Active stage"),
        (rg.ModelVersionTagSet("m", 0, "k", "v"), "must be at least 1"),
    ],
)
def test_door_refuses_what_mlflow_refuses(event: rg.RegistryEvent, message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        check_events([event])


def test_canonical_stage_is_case_insensitive() -> None:
    assert rr.canonical_stage("production") == "Production"
    assert rr.canonical_stage("NONE") == "None"
    with pytest.raises(InvalidParameterValue, match="Invalid Model Version stage: Live"):
        rr.canonical_stage("Live")


def test_script_args_name_every_key_once_and_replies_map_to_mlflow_errors() -> None:
    keys, header = rc.script_args(
        "p",
        [
            rg.RegisteredModelRenamed("a", "b", 1),
            rg.ModelVersionCreated("b", 3, 1, "s"),
            rg.RegisteredModelTagSet("a", "k", "v"),
        ],
    )
    assert keys[3:] == ["p:regmodel:{0}:a", "p:regmodel:{0}:b"]
    assert msgpack.unpackb(header)["ops"] == [
        ["mr", 4, "a", 5, "b"],
        ["vc", 5, "b", 3],
        ["ma", 4, "a"],
    ]
    assert rc.read_reply([b"ok", b"1-0"]) == ("1-0",)
    assert rc.read_reply([b"missing"]) == rc.NotLoaded()
    assert rc.read_reply([b"err", b"version_taken", b"b", b"7"]) == rc.VersionTaken("b", 7)
    with pytest.raises(ResourceAlreadyExists, match=r"Registered Model \(name=b\)"):
        rc.read_reply([b"err", b"rename_exists", b"b"])
    with pytest.raises(ResourceDoesNotExist, match=r"\(name=b, version=3\) not found"):
        rc.read_reply([b"err", b"mv_missing", b"b", b"3"])


def test_plan_keeps_registry_statements_in_stream_order() -> None:
    write_plan = plan_events(EVENTS)  # type: ignore[arg-type]
    statements = [s for seg in write_plan.segments for s in seg.registry]
    assert statements[0] == rp.Statement(rp.INSERT_MODEL, ("m", 1, "d"))
    assert statements[-1] == rp.Statement(rp.DELETE_MODEL, ("n",))
    transition = rp.registry_statements(EVENTS[9])
    assert [s.sql for s in transition] == [rp.ARCHIVE_STAGE, rp.SET_STAGE, rp.TOUCH_MODEL]
    created = rp.registry_statements(
        rg.RegisteredModelCreated("x", 1, "", (("k", "1"), ("k", "2")))
    )
    assert created[1].args == ("x", ["k"], ["2"])  # the later tag wins


def test_models_filter_and_order() -> None:
    conditions = rs.parse_models_filter("name ILIKE '%fraud%' and tags.team = 'risk'")
    assert conditions == (
        rs.Condition("attribute", "name", "ILIKE", "%fraud%"),
        rs.Condition("tag", "team", "=", "risk"),
    )
    sql, args = rs.models_query("m.name", conditions, rs.models_order(["timestamp DESC"]), 11, 0)
    assert "m.name ILIKE $1" in sql and "ORDER BY m.last_updated_time DESC, m.name ASC" in sql
    assert "NOT EXISTS" in sql  # prompts are left out
    assert args == ["%fraud%", "risk", "team", 11, 0]
    with pytest.raises(InvalidParameterValue, match="Invalid attribute key 'run_id'"):
        rs.parse_models_filter("run_id = 'x'")
    with pytest.raises(InvalidParameterValue, match="Invalid order by key 'version_number'"):
        rs.models_order(["version_number"])


def test_versions_filter_and_default_order() -> None:
    conditions = rs.parse_versions_filter(f"run_id IN ('{RUN}') and version_number >= 2")
    assert conditions[0].value == (RUN,) and conditions[1].value == 2
    sql, _ = rs.versions_query("v.name", conditions, rs.versions_order(()), 5, 0)
    assert "ORDER BY v.last_updated_time DESC, v.name ASC, v.version DESC" in sql
    with pytest.raises(InvalidParameterValue, match=r"Only \['name', 'run_id'\] attributes"):
        rs.parse_versions_filter("source_path IN ('a')")
    with pytest.raises(InvalidParameterValue, match="numeric attribute 'version_number'"):
        rs.parse_versions_filter("version_number = 1.5")


def test_sources_must_lie_in_the_named_run_or_model() -> None:
    run_root = f"mlflow-artifacts:/1/{RUN}/artifacts"
    src.check_run_source(f"runs:/{RUN}/model", RUN, run_root)
    src.check_run_source(f"{run_root}/model", RUN, run_root)
    src.check_run_source("s3://bucket/models/x", "", None)
    model_root = f"mlflow-artifacts:/1/models/{MODEL}/artifacts"
    src.check_model_source(f"models:/{MODEL}", MODEL, model_root)
    refused = [
        lambda: src.check_run_source(f"runs:/{RUN}/model", "b" * 32, None),
        lambda: src.check_run_source("mlflow-artifacts:/1/other/artifacts", RUN, run_root),
        lambda: src.check_run_source("/etc/passwd", RUN, run_root),
        lambda: src.check_run_source(f"{run_root}/../../x", RUN, run_root),
        lambda: src.check_run_source(f"{run_root}/%2e%2e/x", RUN, run_root),
        lambda: src.check_model_source(f"models:/{MODEL}", "m-" + "2" * 32, None),
        lambda: src.check_model_source(f"runs:/{RUN}/model", MODEL, model_root),
    ]
    for call in refused:
        with pytest.raises(InvalidParameterValue, match="Invalid model version source"):
            call()


def test_models_uris() -> None:
    assert src.parse_models_uri(f"models:/{MODEL}") == src.ModelsUri(model_id=MODEL)
    assert src.parse_models_uri("models:/fraud/3") == src.ModelsUri(name="fraud", version=3)
    assert src.parse_models_uri("models:/fraud@champ") == src.ModelsUri(name="fraud", alias="champ")
    assert src.parse_models_uri("models:/fraud/Staging").stage == "Staging"
    with pytest.raises(InvalidParameterValue, match="Not a proper models:/ URI"):
        src.parse_models_uri("models:/a/b/c")
