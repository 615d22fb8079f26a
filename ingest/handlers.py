"""Native ingest endpoints: thin handlers over ``Ingestor``.

``POST /api/runstream/v1/events`` takes ``{"events": [...]}`` as msgpack (the SDK, with packed
metric columns) or JSON. The body is decoded whole before anything is appended, so a bad
event anywhere refuses the request with nothing written.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from runstream.ingest.app_keys import INGESTOR
from runstream.ingest.watermarks import WATERMARKS
from runstream.resources import SETTINGS
from runstream.schemas import codec, models
from runstream.schemas import experiments as ex
from runstream.schemas import runs as rn
from runstream.schemas.codec import Event
from runstream.schemas.errors import InvalidParameterValue, MalformedRequest
from runstream.schemas.metrics import MetricsLogged
from runstream.web import json_response, parse_json_body, read_body, read_json_body, require

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


JSON_TYPE = "application/json"


def check_write_content_type(content_type: str) -> None:
    """JSON or msgpack only: a browser sends other types (``text/plain``) cross-origin without
    asking first, so accepting them would let any web page write here (CSRF)."""
    if content_type != JSON_TYPE and content_type not in MSGPACK_TYPES:
        allowed = ", ".join((JSON_TYPE, *MSGPACK_TYPES))
        raise InvalidParameterValue(f"Bad Request. Content-Type must be one of [{allowed}].")


def decode_events_body(body: bytes, content_type: str, max_json_items: int) -> list[Event]:
    """The events of a request body; ``MalformedRequest`` naming the bad field otherwise.
    A JSON body is bounded in items like the MLflow routes' (``parse_json_body``)."""
    if content_type in MSGPACK_TYPES:
        obj = codec.unpack(body, "request body")
    else:
        obj = parse_json_body(body, max_json_items) if body else None
    return events_of(obj)


def events_of(obj: Any) -> list[Event]:
    if not isinstance(obj, dict):
        raise MalformedRequest("Request body must be a map with an 'events' list")
    events = obj.get("events")
    if not isinstance(events, list):
        raise MalformedRequest("Request body field 'events' must be a list of events")
    unknown = set(obj) - {"events"}
    if unknown:
        raise MalformedRequest(f"Request body has unknown field(s) {sorted(unknown)}")
    return [codec.decode_event(e, f"events[{i}]") for i, e in enumerate(events)]


_DELETING = (ex.ExperimentDeleted, ex.ExperimentRestored, rn.RunDeleted, rn.RunRestored)
_DELETING_MODELS = (models.LoggedModelDeleted,)


def event_targets(
    events: list[Event],
) -> dict[str, tuple[set[str], set[str], set[str]]]:
    """What a batch touches, per action it needs (MLflow's: deleting or restoring an
    experiment, a run or a logged model needs "delete", creating an experiment "admin" here
    — the SDK creates them through get-or-create — everything else "update"): action ->
    (run ids, experiment ids, logged model ids). A run created in the batch is checked by
    its experiment, a model created in it likewise."""
    targets: dict[str, tuple[set[str], set[str], set[str]]] = {}
    created_runs = {e.run_id for e in events if isinstance(e, rn.RunCreated)}
    created_models = {e.model_id for e in events if isinstance(e, models.LoggedModelCreated)}
    for event in events:
        if isinstance(event, ex.ExperimentCreated):
            action = "admin"
        elif isinstance(event, _DELETING + _DELETING_MODELS):
            action = "delete"
        else:
            action = "update"
        runs, experiments, model_ids = targets.setdefault(action, (set(), set(), set()))
        run_id = getattr(event, "run_id", None)
        experiment_id = getattr(event, "experiment_id", None)
        model_id = getattr(event, "model_id", None)
        if run_id and (run_id not in created_runs or isinstance(event, rn.RunCreated)):
            if isinstance(event, rn.RunCreated):
                experiments.add(event.experiment_id)
            else:
                runs.add(run_id)
        if experiment_id and not isinstance(event, ex.ExperimentCreated):
            experiments.add(experiment_id)
        if model_id and model_id not in created_models:
            model_ids.add(model_id)
    return targets


def idempotency_key_of(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise InvalidParameterValue(
            "Header 'Idempotency-Key' must be 1 to 200 printable ASCII characters without spaces"
        )
    return key


def wants_wait(request: web.Request) -> bool:
    return request.query.get("wait", "").lower() in ("1", "true", "yes")


async def post_events(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    check_write_content_type(request.content_type)
    # JSON (curl, other languages) parses in Python objects and holds the loop longer per
    # byte than the SDK's msgpack columns, so it gets the MLflow routes' tighter bounds.
    is_json = request.content_type == JSON_TYPE
    body = await read_body(request, settings.max_json_bytes if is_json else settings.max_body_bytes)
    events = decode_events_body(body, request.content_type, settings.max_json_items)
    for action, (run_ids, experiment_ids, model_ids) in event_targets(events).items():
        await require(request, action, run_ids, experiment_ids, model_ids)
    token = await request.app[INGESTOR].append(events, idempotency_key=idempotency_key_of(request))
    if wants_wait(request):
        await request.app[WATERMARKS].wait(token, settings.read_your_writes_timeout)
    points = sum(e.point_count for e in events if isinstance(e, MetricsLogged))
    return json_response({"token": str(token), "events": len(events), "points": points})


async def get_or_create_experiment(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    check_write_content_type(request.content_type)
    obj = await read_json_body(request, settings.max_json_bytes, settings.max_json_items)
    if not isinstance(obj, dict):
        raise MalformedRequest("Request body must be a JSON object with 'name'")
    name: Any = obj.get("name")  # type checked by the Ingestor, with MLflow's message
    experiment_id, created = await request.app[INGESTOR].get_or_create_experiment(name)
    return json_response({"experiment_id": experiment_id, "created": created})
