"""MLflow's run input/output routes: ``runs/log-inputs``, ``runs/outputs``, ``runs/log-model``.

Inputs and outputs become events on the run's shard; ingest refuses an unknown or deleted run
atomically with the append, as MLflow's ``log_inputs``/``log_outputs`` do. ``log-model``
(MLflow 2's model history) appends the model to the run's ``mlflow.log-model.history`` tag.
"""

from __future__ import annotations

import json
import time

from aiohttp import web

from runstream.api.mlflow import logged_model_queries as lmq
from runstream.api.mlflow import logged_model_requests as mr
from runstream.api.mlflow.handler_io import catch_up, request_fields, write
from runstream.api.reads import require_active_run
from runstream.resources import PG_POOL
from runstream.schemas import constants as c
from runstream.schemas import inputs as inp
from runstream.schemas import runs as rn
from runstream.schemas.codec import Event
from runstream.schemas.errors import InvalidParameterValue
from runstream.schemas.validation import exceeds_maximum_length
from runstream.web import json_response


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def input_events(req: mr.LogInputs, at: int) -> list[Event]:
    events: list[Event] = [
        inp.DatasetInputLogged(
            run_id=req.run_id,
            name=d.name,
            digest=d.digest,
            source_type=d.source_type,
            source=d.source,
            time=at,
            schema=d.schema,
            profile=d.profile,
            tags=d.tags,
        )
        for d in req.datasets
    ]
    events += [inp.ModelInputLogged(req.run_id, model_id, at) for model_id in req.model_ids]
    return events


async def log_inputs(request: web.Request) -> web.Response:
    req = mr.parse_log_inputs(await request_fields(request))
    events = input_events(req, now_ms())
    if not events:
        # Nothing to log; MLflow still refuses an unknown or deleted run.
        events = [rn.RunTagsSet(req.run_id, ())]
    await write(request, events)
    return json_response({})


async def log_outputs(request: web.Request) -> web.Response:
    req = mr.parse_log_outputs(await request_fields(request))
    at = now_ms()
    events: list[Event] = [
        inp.ModelOutputLogged(req.run_id, model_id, step, at) for model_id, step in req.models
    ]
    await write(request, events or [rn.RunTagsSet(req.run_id, ())])
    return json_response({})


def appended_history(previous: str | None, entry: dict[str, object]) -> str:
    """The history tag with ``entry`` added (MLflow's ``record_logged_model``)."""
    history = json.loads(previous) if previous else []
    if not isinstance(history, list):
        history = []
    value = json.dumps([*history, entry])
    if len(value) > c.MAX_TAG_VALUE_LENGTH:
        raise InvalidParameterValue(exceeds_maximum_length("value", c.MAX_TAG_VALUE_LENGTH))
    return value


async def log_model(request: web.Request) -> web.Response:
    req = mr.parse_log_model(await request_fields(request))
    await catch_up(request, [req.run_id])
    # The run's tag as this client last wrote it (read-your-writes); two clients logging
    # models to one run at the same instant may lose one entry, as with MLflow's SQL store.
    row = require_active_run(req.run_id, await lmq.run_state(request.app[PG_POOL], req.run_id))
    value = appended_history(row["history"], req.model)
    await write(request, [rn.RunTagsSet(req.run_id, ((c.LOG_MODEL_HISTORY_TAG, value),))])
    return json_response({})
