"""MLflow's metric routes: log-metric, log-parameter, log-batch, get-history and the UI's
get-history-bulk-interval.

Writes: a request's metrics become ONE ``metrics_logged`` event per run, one packed series per
key (points in logged order); params one ``params_logged``; tags one ``run_tags_set``. The
``Ingestor`` appends them atomically on the run's shard, so a changed param refuses the whole
batch. Reads: the series' chunks, ordered and sampled as MLflow's SQL store does
(``mlflow_history``). An unknown run has an empty history, as in MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from aiohttp import web

from runstream.api import queries
from runstream.api.mlflow import messages as rq
from runstream.api.mlflow import pagination
from runstream.api.mlflow.handler_io import catch_up, read_caught_up, request_fields, write
from runstream.api.mlflow.history import (
    OrderedHistories,
    Points,
    history_order,
    metrics_json,
    metrics_json_array,
    page,
    sample,
)
from runstream.api.mlflow.logged_model_requests import model_metric_events
from runstream.api.mlflow.runs import tag_events
from runstream.resources import PG_POOL
from runstream.schemas import runs as rn
from runstream.schemas.codec import Event
from runstream.schemas.errors import InvalidParameterValue, ParamValueConflict
from runstream.schemas.metrics import MetricSeries, MetricsLogged
from runstream.web import json_response


def metrics_event(run_id: str, metrics: Sequence[rq.Metric]) -> MetricsLogged:
    """One event, one series per key in first-logged order, each series' points in order."""
    columns: rq.MetricColumns = {}
    for m in metrics:
        steps, stamps, values = columns.setdefault(m.key, ([], [], []))
        steps.append(m.step)
        stamps.append(m.timestamp)
        values.append(m.value)
    return series_event(run_id, columns)


def series_event(run_id: str, columns: rq.MetricColumns) -> MetricsLogged:
    """One event from metric columns per key (packed in bulk, never point by point)."""
    return MetricsLogged(
        run_id,
        tuple(MetricSeries.from_lists(key, *cols) for key, cols in columns.items()),
    )


def batch_events(batch: rq.LogBatch) -> list[Event]:
    """Params first: if one changes a logged value, nothing of the batch is appended."""
    events: list[Event] = []
    if batch.params:
        events.append(rn.ParamsLogged(batch.run_id, batch.params))
    if batch.series:
        events.append(series_event(batch.run_id, batch.series))
    events += tag_events(batch.run_id, batch.tags)
    if not events:
        # An empty batch still checks that the run exists and is active, as MLflow's does.
        events.append(rn.RunUpdated(batch.run_id))
    return events


async def log_metric(request: web.Request) -> web.Response:
    fields = await request_fields(request)
    req = rq.parse_log_metric(fields)
    # A metric with a model_id is also the logged model's (api/mlflow/logged_model_requests.py).
    model_points = model_metric_events(req.run_id, [fields], [req.metric])
    await write(request, [metrics_event(req.run_id, [req.metric]), *model_points])
    return json_response({})


async def log_param(request: web.Request) -> web.Response:
    req = rq.parse_log_param(await request_fields(request))
    await write(request, [rn.ParamsLogged(req.run_id, ((req.key, req.value),))])
    return json_response({})


async def log_batch(request: web.Request) -> web.Response:
    fields = await request_fields(request)
    batch = rq.parse_log_batch(fields)
    # Metrics with a model_id are also the logged model's (api/mlflow/logged_model_requests.py).
    model_points = model_metric_events(batch.run_id, fields.get("metrics"), batch.metrics)
    try:
        await write(request, [*batch_events(batch), *model_points])
    except ParamValueConflict as conflict:
        raise InvalidParameterValue(conflict.batch_message()) from conflict
    return json_response({})


async def load_points(db: queries.Executor, run_id: str, key: str) -> Points | None:
    chunks = await queries.series_chunks(db, run_id, key)
    if chunks is None:
        return None
    return Points.from_packed(
        b"".join(chunks.steps), b"".join(chunks.timestamps), b"".join(chunks.values)
    )


ORDERED_HISTORIES = web.AppKey("ordered_histories", OrderedHistories)


async def ordered_history(request: web.Request, run_id: str, key: str) -> Points | None:
    """The series in ``get-history`` order; None when the run does not exist."""
    pool = request.app[PG_POOL]
    cache = request.app[ORDERED_HISTORIES]
    count = await queries.series_point_count(pool, run_id, key)
    if count is not None:
        cached = cache.get(run_id, key, count)
        if cached is not None:
            return cached
    points = await load_points(pool, run_id, key)
    if points is None:
        return None
    ordered = history_order(points)
    if count is not None and len(points) == count:
        # Only when nothing landed between the two reads, so the count names this content.
        cache.put(run_id, key, count, ordered)
    return ordered


async def get_metric_history(request: web.Request) -> web.Response:
    req = rq.parse_get_metric_history(await request_fields(request))
    ordered = await read_caught_up(
        request, [req.run_id], lambda: ordered_history(request, req.run_id, req.metric_key)
    )
    fields: list[bytes] = []
    if ordered is not None:
        chosen, next_offset = page(ordered, req.offset, req.max_results)
        if len(chosen):
            fields.append(b'"metrics":' + metrics_json_array(req.metric_key, chosen))
        if next_offset is not None:
            token = orjson.dumps(pagination.encode(next_offset))
            fields.append(b'"next_page_token":' + token)
    return web.Response(body=b"{" + b",".join(fields) + b"}", content_type="application/json")


async def get_metric_history_bulk_interval(request: web.Request) -> web.Response:
    req = rq.parse_get_metric_history_bulk_interval(
        await request_fields(request, repeated=("run_ids",))
    )
    await catch_up(request, req.run_ids)
    metrics = []
    pool = request.app[PG_POOL]
    for run_id in req.run_ids:
        points = await load_points(pool, run_id, req.metric_key)
        if points is None:
            continue
        chosen = sample(points, req.max_results, req.start_step, req.end_step)
        metrics += metrics_json(req.metric_key, chosen, run_id)
    return json_response({"metrics": metrics} if metrics else {})
