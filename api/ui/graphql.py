"""``POST /graphql``: the four GraphQL queries MLflow's Tracking UI sends.

MLflow's UI (3.x) loads an experiment (``mlflowGetExperiment``), a run (``mlflowGetRun``,
``mlflowSearchRuns``) and sampled metric histories (``mlflowGetMetricHistoryBulkInterval``)
through MLflow's ``/graphql`` endpoint rather than REST. Its schema mirrors the REST messages
with camelCase field names; ``SCHEMA`` below declares the part of it those queries select
(type and field names are MLflow's wire format), and each query resolves to the same JSON the
REST routes answer, read with the same request parsers, queries and views.

The answer has MLflow's shape: ``{"data": ..., "errors": [message, ...] | null}`` (messages
as plain strings). Requires ``graphql-core``, which ``mlflow`` installs (graphene) — the UI is
only served when ``mlflow`` is installed, so ``api.ui`` adds this route only when both are.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import graphql
from aiohttp import web

from runstream.api import queries, views
from runstream.api.mlflow import messages as rq
from runstream.api.mlflow.history import metrics_json, sample
from runstream.api.mlflow.metrics import load_points
from runstream.api.mlflow.runs import search_run_rows
from runstream.api.mlflow.search_store import SEARCH_STORE
from runstream.api.reads import run_not_found
from runstream.resources import PG_POOL, SETTINGS
from runstream.schemas.errors import InvalidParameterValue, RunstreamError
from runstream.schemas.validation import experiment_not_found
from runstream.web import json_response, read_json_body, require, visibility_of

MAX_QUERY_CHARS = 20_000
"""The UI's largest query is ~1,500 characters; anything far bigger is not the UI."""

SCHEMA_SDL = """
directive @component(name: String!) on QUERY | MUTATION

scalar LongString

enum MlflowRunStatus { RUNNING SCHEDULED FINISHED FAILED KILLED }
enum MlflowViewType { ACTIVE_ONLY DELETED_ONLY ALL }
enum MlflowModelVersionStatus { PENDING_REGISTRATION FAILED_REGISTRATION READY }

type ErrorDetail { field: String message: String }
type ApiError {
  code: String message: String helpUrl: String traceId: String errorDetails: [ErrorDetail]
}

type MlflowExperimentTag { key: String value: String }
type MlflowExperiment {
  experimentId: String name: String artifactLocation: String lifecycleStage: String
  lastUpdateTime: LongString creationTime: LongString tags: [MlflowExperimentTag!]
  effectiveTraceArchivalRetention: String workspace: String
}
type MlflowGetExperimentResponse { experiment: MlflowExperiment apiError: ApiError }

type MlflowRunInfo {
  runId: String runUuid: String runName: String experimentId: String userId: String
  status: MlflowRunStatus startTime: LongString endTime: LongString artifactUri: String
  lifecycleStage: String
}
type MlflowMetricExtension {
  key: String value: Float timestamp: LongString step: LongString datasetName: String
  datasetDigest: String modelId: String runId: String
}
type MlflowParam { key: String value: String }
type MlflowRunTag { key: String value: String }
type MlflowRunData {
  metrics: [MlflowMetricExtension!] params: [MlflowParam!] tags: [MlflowRunTag!]
}
type MlflowDataset {
  name: String digest: String sourceType: String source: String schema: String profile: String
}
type MlflowInputTag { key: String value: String }
type MlflowDatasetInput { tags: [MlflowInputTag!] dataset: MlflowDataset }
type MlflowModelInput { modelId: String }
type MlflowRunInputs { datasetInputs: [MlflowDatasetInput!] modelInputs: [MlflowModelInput!] }
type MlflowModelOutput { modelId: String step: LongString }
type MlflowRunOutputs { modelOutputs: [MlflowModelOutput!] }
type MlflowModelVersion {
  name: String version: String creationTimestamp: LongString lastUpdatedTimestamp: LongString
  userId: String currentStage: String description: String source: String runId: String
  status: MlflowModelVersionStatus statusMessage: String runLink: String aliases: [String]
  modelId: String
}
type MlflowRunExtension {
  info: MlflowRunInfo data: MlflowRunData inputs: MlflowRunInputs outputs: MlflowRunOutputs
  experiment: MlflowExperiment modelVersions: [MlflowModelVersion!]
}
type MlflowGetRunResponse { run: MlflowRunExtension apiError: ApiError }
type MlflowSearchRunsResponse {
  runs: [MlflowRunExtension!] nextPageToken: String apiError: ApiError
}
type MlflowMetricWithRunId {
  key: String value: Float timestamp: LongString step: LongString runId: String
}
type MlflowGetMetricHistoryBulkIntervalResponse {
  metrics: [MlflowMetricWithRunId!] apiError: ApiError
}

input MlflowGetExperimentInput { experimentId: String }
input MlflowGetRunInput { runId: String runUuid: String }
input MlflowSearchRunsInput {
  experimentIds: [String] filter: String runViewType: MlflowViewType maxResults: Int
  orderBy: [String] pageToken: String
}
input MlflowGetMetricHistoryBulkIntervalInput {
  runIds: [String] metricKey: String startStep: Int endStep: Int maxResults: Int
}

type Query {
  mlflowGetExperiment(input: MlflowGetExperimentInput): MlflowGetExperimentResponse
  mlflowGetRun(input: MlflowGetRunInput): MlflowGetRunResponse
  mlflowSearchRuns(input: MlflowSearchRunsInput): MlflowSearchRunsResponse
  mlflowGetMetricHistoryBulkInterval(
    input: MlflowGetMetricHistoryBulkIntervalInput
  ): MlflowGetMetricHistoryBulkIntervalResponse
}
"""

_CAMEL_HUMP = re.compile(r"(?<!^)(?=[A-Z])")


def snake_case(name: str) -> str:
    """``artifactLocation`` → ``artifact_location``: GraphQL field name → REST JSON key."""
    return _CAMEL_HUMP.sub("_", name).lower()


def input_fields(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """A GraphQL input object as the REST request fields the parsers in ``mlflow_requests``
    read (snake_case keys, unset fields left out)."""
    return {snake_case(k): v for k, v in (value or {}).items() if v is not None}


def _long_string(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"LongString cannot represent {value!r}")
    return str(value)


def _long_value(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"LongString cannot represent {value!r}") from exc


def _json_float(value: Any) -> float | None:
    """REST JSON spells NaN/±Infinity as strings; GraphQL's Float has no such values, so they
    are null (MLflow's schema answers null for NaN too)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _build_schema() -> graphql.GraphQLSchema:
    schema = graphql.build_schema(SCHEMA_SDL)
    long_string = schema.type_map["LongString"]
    assert isinstance(long_string, graphql.GraphQLScalarType)
    long_string.serialize = _long_string  # type: ignore[method-assign]
    long_string.parse_value = _long_value  # type: ignore[method-assign]
    for type_name in ("MlflowMetricExtension", "MlflowMetricWithRunId"):
        metric_type = schema.type_map[type_name]
        assert isinstance(metric_type, graphql.GraphQLObjectType)
        metric_type.fields["value"].resolve = _resolve_metric_value
    return schema


def _resolve_metric_value(source: Mapping[str, Any], info: graphql.GraphQLResolveInfo) -> Any:
    return _json_float(source.get("value"))


def resolve_field(source: Any, info: graphql.GraphQLResolveInfo, **args: Any) -> Any:
    """REST JSON (snake_case dicts) read by GraphQL field names; root fields are coroutines."""
    if isinstance(source, Mapping):
        value = source.get(info.field_name, source.get(snake_case(info.field_name)))
    else:
        value = getattr(source, info.field_name, None)
    if callable(value):
        return value(info, **args)
    if value is None and info.field_name != "apiError":
        # MLflow resolves from protobuf messages, where an unset list or message reads as an
        # empty one: the UI gets [] and {} there, never null.
        wanted: Any = info.return_type
        if isinstance(wanted, graphql.GraphQLNonNull):
            wanted = wanted.of_type
        if isinstance(wanted, graphql.GraphQLList):
            return []
        if isinstance(wanted, graphql.GraphQLObjectType):
            return {}
    return value


# -- the queries ----------------------------------------------------------------------------------


def _pool(info: graphql.GraphQLResolveInfo) -> Any:
    request: web.Request = info.context
    return request.app[PG_POOL]


async def _with_experiments(
    info: graphql.GraphQLResolveInfo, runs: list[views.JsonDict]
) -> list[views.JsonDict]:
    """``MlflowRunExtension`` adds the run's experiment and its (here: no) model versions."""
    pool = _pool(info)
    wanted = {int(run["info"]["experiment_id"]) for run in runs}
    rows = await queries.experiments_by_ids(pool, sorted(wanted)) if wanted else []
    experiments = {str(row["experiment_id"]): views.experiment_row_to_json(row) for row in rows}
    for run in runs:
        run["experiment"] = experiments.get(run["info"]["experiment_id"])
        run["model_versions"] = []
    return runs


async def get_experiment(
    info: graphql.GraphQLResolveInfo, input: Mapping[str, Any] | None = None
) -> views.JsonDict:
    experiment_id = rq.parse_experiment_ref(input_fields(input))
    await require(info.context, "read", experiment_ids=[str(experiment_id)])
    row = await queries.experiment_by_id(_pool(info), experiment_id)
    if row is None:
        raise experiment_not_found(experiment_id)
    return {"experiment": views.experiment_row_to_json(row)}


async def get_run(
    info: graphql.GraphQLResolveInfo, input: Mapping[str, Any] | None = None
) -> views.JsonDict:
    run_id = rq.parse_run_ref(input_fields(input))
    await require(info.context, "read", run_ids=[run_id])
    row = await queries.run(_pool(info), run_id)
    if row is None:
        raise run_not_found(run_id)
    (run,) = await _with_experiments(info, [views.run_row_to_json(row)])
    return {"run": run}


async def search_runs(
    info: graphql.GraphQLResolveInfo, input: Mapping[str, Any] | None = None
) -> views.JsonDict:
    req = rq.parse_search_runs(input_fields(input))
    store = info.context.app[SEARCH_STORE]
    rows, token = await search_run_rows(store, req, visibility_of(info.context))
    runs = [views.run_row_to_json(row) for row in rows]
    return {"runs": await _with_experiments(info, runs), "next_page_token": token or None}


async def get_metric_history_bulk_interval(
    info: graphql.GraphQLResolveInfo, input: Mapping[str, Any] | None = None
) -> views.JsonDict:
    req = rq.parse_get_metric_history_bulk_interval(input_fields(input))
    await require(info.context, "read", run_ids=req.run_ids)
    pool = _pool(info)
    metrics: list[views.JsonDict] = []
    for run_id in req.run_ids:
        points = await load_points(pool, run_id, req.metric_key)
        if points is not None:
            chosen = sample(points, req.max_results, req.start_step, req.end_step)
            metrics += metrics_json(req.metric_key, chosen, run_id)
    return {"metrics": metrics}


ROOT = {
    "mlflowGetExperiment": get_experiment,
    "mlflowGetRun": get_run,
    "mlflowSearchRuns": search_runs,
    "mlflowGetMetricHistoryBulkInterval": get_metric_history_bulk_interval,
}

SCHEMA = _build_schema()


def error_message(error: graphql.GraphQLError) -> str:
    original = error.original_error
    if isinstance(original, RunstreamError):
        return original.message
    return error.message


async def graphql_endpoint(request: web.Request) -> web.Response:
    """MLflow's ``/graphql``: one operation per request (no batching), queries only."""
    if request.method == "GET":
        body: Any = dict(request.query)
    else:
        settings = request.app[SETTINGS]
        body = await read_json_body(request, settings.max_json_bytes, settings.max_json_items)
    if not isinstance(body, dict):
        raise InvalidParameterValue("GraphQL request must be one JSON object (no batching).")
    query = body.get("query")
    if not isinstance(query, str) or len(query) > MAX_QUERY_CHARS:
        raise InvalidParameterValue(
            f"GraphQL request must have a 'query' of at most {MAX_QUERY_CHARS} characters."
        )
    variables = body.get("variables")
    operation_name = body.get("operationName")
    result = await graphql.graphql(
        SCHEMA,
        query,
        root_value=ROOT,
        context_value=request,
        variable_values=variables if isinstance(variables, dict) else None,
        operation_name=operation_name if isinstance(operation_name, str) else None,
        field_resolver=resolve_field,
    )
    errors = [error_message(e) for e in result.errors] if result.errors else None
    return json_response({"data": result.data, "errors": errors})
