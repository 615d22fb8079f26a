"""Native read routes of experiments and runs, and what every read does first.

Every read honours ``?wait_for=<token>`` (or the ``X-Runstream-Wait-For`` header): it waits
until the projector's watermarks pass the token's entries, so a client reads its own writes,
and answers 503 with Retry-After when they do not within ``read_your_writes_timeout``.
Handlers stay thin: parse, wait, query (``queries``), shape (``views``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from runstream.api import queries, views
from runstream.api.mlflow.pagination import check_page_size
from runstream.ingest.watermarks import WATERMARKS
from runstream.resources import PG_POOL, SETTINGS
from runstream.schemas import constants as c
from runstream.schemas.errors import InvalidParameterValue, ResourceDoesNotExist
from runstream.schemas.sharding import WriteToken
from runstream.schemas.validation import experiment_not_found, invalid_value, parse_experiment_id
from runstream.web import json_response, visibility_of

WAIT_FOR_PARAM = "wait_for"
WAIT_FOR_HEADER = "X-Runstream-Wait-For"


# -- what every read does ------------------------------------------------------------------------


def write_token_of(request: web.Request) -> WriteToken | None:
    text = request.query.get(WAIT_FOR_PARAM) or request.headers.get(WAIT_FOR_HEADER)
    if not text:
        return None
    token = WriteToken.parse(text)
    return token if token.positions else None


async def await_token(request: web.Request) -> None:
    """Wait for the request's write token, if any, to be applied in PostgreSQL."""
    token = write_token_of(request)
    if token is None:
        return
    # Raises TemporarilyUnavailable (503, Retry-After) past the timeout.
    await request.app[WATERMARKS].wait(token, request.app[SETTINGS].read_your_writes_timeout)


# -- MLflow's errors -----------------------------------------------------------------------------


def run_not_found(run_id: str) -> ResourceDoesNotExist:
    return ResourceDoesNotExist(f"Run with id={run_id} not found")


def require_active_run(run_id: str, row: Any) -> Any:
    """The run's row, refused as MLflow refuses a missing or deleted run."""
    if row is None:
        raise run_not_found(run_id)
    if row["lifecycle_stage"] != "active":
        raise InvalidParameterValue(
            f"The run {run_id} must be in the 'active' state. "
            f"Current state is {row['lifecycle_stage']}."
        )
    return row


# -- paging and views ----------------------------------------------------------------------------


def parse_view_type(request: web.Request) -> tuple[str, ...]:
    view = request.query.get("view_type", "ACTIVE_ONLY").upper()
    stages = views.LIFECYCLE_STAGES_OF_VIEW.get(view)
    if stages is None:
        raise InvalidParameterValue(
            invalid_value("view_type", view, "expected ACTIVE_ONLY, DELETED_ONLY or ALL")
        )
    return stages


def parse_page(request: web.Request) -> tuple[int, int]:
    """(limit, offset) from ``max_results`` and the opaque ``page_token`` we handed out."""
    raw_limit = request.query.get("max_results", str(c.SEARCH_MAX_RESULTS_DEFAULT))
    raw_offset = request.query.get("page_token") or "0"
    try:
        limit = check_page_size(int(raw_limit))
    except ValueError:
        raise InvalidParameterValue(invalid_value("max_results", raw_limit)) from None
    try:
        offset = int(raw_offset)
    except ValueError:
        raise InvalidParameterValue(invalid_value("page_token", raw_offset)) from None
    if offset < 0:
        raise InvalidParameterValue(invalid_value("page_token", raw_offset))
    return limit, offset


def paged(name: str, items: list[views.JsonDict], limit: int, offset: int) -> views.JsonDict:
    """The queries fetch ``limit + 1`` rows so that a next page is known without a count."""
    out: views.JsonDict = {name: items[:limit]}
    if len(items) > limit:
        out["next_page_token"] = str(offset + limit)
    return out


# -- handlers ------------------------------------------------------------------------------------


async def list_experiments(request: web.Request) -> web.Response:
    """``GET /api/runstream/v1/experiments`` → ``{"experiments": [...], "next_page_token"?}``."""
    stages = parse_view_type(request)
    limit, offset = parse_page(request)
    await await_token(request)
    visible = visibility_of(request)
    rows = await queries.experiments(request.app[PG_POOL], stages, limit + 1, offset, visible)
    return json_response(
        paged("experiments", [views.experiment_row_to_json(r) for r in rows], limit, offset)
    )


async def get_experiment(request: web.Request) -> web.Response:
    """``GET /api/runstream/v1/experiments/{experiment_id}`` → ``{"experiment": {...}}``."""
    experiment_id = parse_experiment_id(request.match_info["experiment_id"])
    await await_token(request)
    row = await queries.experiment_by_id(request.app[PG_POOL], experiment_id)
    if row is None:
        raise experiment_not_found(experiment_id)
    return json_response({"experiment": views.experiment_row_to_json(row)})


async def list_runs(request: web.Request) -> web.Response:
    """``GET /api/runstream/v1/experiments/{experiment_id}/runs`` → ``{"runs": [...]}``,
    newest start first."""
    experiment_id = parse_experiment_id(request.match_info["experiment_id"])
    stages = parse_view_type(request)
    limit, offset = parse_page(request)
    await await_token(request)
    pool = request.app[PG_POOL]
    rows = await queries.runs_of_experiment(pool, experiment_id, stages, limit + 1, offset)
    if not rows and await queries.experiment_by_id(pool, experiment_id) is None:
        raise experiment_not_found(experiment_id)
    return json_response(paged("runs", [views.run_row_to_json(r) for r in rows], limit, offset))


async def get_run(request: web.Request) -> web.Response:
    """``GET /api/runstream/v1/runs/{run_id}`` → ``{"run": {...}}`` (MLflow's GetRun answer)."""
    run_id = request.match_info["run_id"]
    await await_token(request)
    row = await queries.run(request.app[PG_POOL], run_id)
    if row is None:
        raise run_not_found(run_id)
    return json_response({"run": views.run_row_to_json(row)})
