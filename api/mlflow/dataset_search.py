"""``POST /api/3.0/mlflow/datasets/search`` over the datasets runs logged with
``mlflow.log_input``.

MLflow 3's UI lists an experiment's datasets on its Datasets page through this route, which
MLflow's server answers from its evaluation-dataset store (GenAI datasets with records).
runstream has no evaluation datasets; it answers with the datasets its runs logged (one per
experiment, name and digest, ``datasets`` table), in the same ``Dataset`` message, so the page
lists what was logged instead of an error. ``dataset_id`` is derived from (experiment, name,
digest), so it is stable across replays. docs/mlflow-compatibility.md names the difference.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from runstream.api.mlflow import filter_grammar as g
from runstream.api.mlflow import pagination
from runstream.api.mlflow import search_filter as sf
from runstream.api.mlflow.handler_io import request_fields
from runstream.api.mlflow.messages import (
    optional_int,
    optional_string,
    string_list,
)
from runstream.api.views import JsonDict
from runstream.resources import PG_POOL
from runstream.schemas.errors import InvalidParameterValue, ResourceDoesNotExist
from runstream.web import json_response, visibility_of

DEFAULT_PAGE = 1000
MAX_PAGE = 1000
NAME_COMPARATORS = {"=": "=", "!=": "<>", "LIKE": "LIKE", "ILIKE": "ILIKE"}
ORDER_COLUMNS = {
    "name": "d.name",
    "created_time": "d.first_logged_time",
    "last_update_time": "last_update_time",
}


def dataset_id(experiment_id: int, name: str, digest: str) -> str:
    """``d-`` and 32 hex digits of sha256 over the key (``DATASET_ID_SQL`` computes the same)."""
    raw = f"{experiment_id}\x1f{name}\x1f{digest}".encode()
    return "d-" + hashlib.sha256(raw).hexdigest()[:32]


DATASET_ID_SQL = (
    "'d-' || left(encode(sha256(convert_to("
    "d.experiment_id::text || chr(31) || d.name || chr(31) || d.digest, 'UTF8')), 'hex'), 32)"
)


def dataset_to_json(row: Mapping[str, Any]) -> JsonDict:
    out: JsonDict = {
        "dataset_id": dataset_id(row["experiment_id"], row["name"], row["digest"]),
        "name": row["name"],
    }
    if row["schema"]:
        out["schema"] = row["schema"]
    if row["profile"]:
        out["profile"] = row["profile"]
    out["digest"] = row["digest"]
    out["created_time"] = row["first_logged_time"]
    out["last_update_time"] = row["last_update_time"]
    if row["created_by"]:
        out["created_by"] = row["created_by"]
        out["last_updated_by"] = row["created_by"]
    out["experiment_ids"] = [str(row["experiment_id"])]
    return out


SELECT = """
SELECT d.experiment_id, d.name, d.digest, d.schema, d.profile, d.first_logged_time,
       r.user_id AS created_by,
       COALESCE((SELECT max(i.logged_time) FROM run_dataset_inputs i
                 WHERE i.experiment_id = d.experiment_id AND i.name = d.name
                   AND i.digest = d.digest), d.first_logged_time) AS last_update_time
FROM datasets d LEFT JOIN runs r ON r.run_id = d.first_run_id
"""


def search_sql(
    experiment_ids: list[int], filter_string: str | None, order_by: list[str]
) -> tuple[str, list[Any]]:
    """The query (without LIMIT/OFFSET: the caller appends ``$n``/``$n+1``)."""
    args: list[Any] = [experiment_ids]
    where = ["(cardinality($1::bigint[]) = 0 OR d.experiment_id = ANY($1::bigint[]))"]
    if filter_string:
        for raw in sf._clauses(filter_string):
            key = g.trim_backticks(raw.identifier.removeprefix("attribute."))
            comparator = raw.comparator.upper()
            if key != "name" or comparator not in NAME_COMPARATORS:
                raise InvalidParameterValue(
                    f"Invalid dataset filter '{filter_string}': only name with "
                    f"{', '.join(NAME_COMPARATORS)} is supported."
                )
            value = sf._string_value(raw.value)
            if value is None:
                raise InvalidParameterValue(f"Invalid dataset filter '{filter_string}'.")
            args.append(value)
            where.append(f"d.name {NAME_COMPARATORS[comparator]} ${len(args)}")
    order = []
    for clause in order_by or ["created_time DESC"]:
        ident, ascending = g.order_by_parts(clause)
        column = ORDER_COLUMNS.get(ident.strip())
        if column is None:
            raise InvalidParameterValue(
                f"Invalid order_by key '{ident}'. Valid keys are {sorted(ORDER_COLUMNS)}"
            )
        order.append(f"{column} {'ASC' if ascending else 'DESC'}")
    order.append("d.experiment_id, d.name, d.digest")
    sql = f"{SELECT} WHERE {' AND '.join(where)} ORDER BY {', '.join(order)}"
    return sql, args


async def search_datasets(request: web.Request) -> web.Response:
    fields = await request_fields(request, repeated=("experiment_ids", "order_by"))
    try:
        experiment_ids = [int(e) for e in string_list(fields, "experiment_ids")]
    except ValueError:
        raise InvalidParameterValue("experiment_ids must be integers") from None
    visible = visibility_of(request)
    if visible is not None:  # auth: only the experiments the caller may read
        if not experiment_ids:  # every experiment: the readable ones
            rows = await request.app[PG_POOL].fetch("SELECT experiment_id FROM experiments")
            experiment_ids = [r["experiment_id"] for r in rows]
        experiment_ids = [e for e in experiment_ids if visible.allows(str(e))]
        if not experiment_ids:
            return json_response({"datasets": []})
    max_results = optional_int(fields, "max_results") or DEFAULT_PAGE
    if not 1 <= max_results <= MAX_PAGE:
        raise InvalidParameterValue(f"max_results must be between 1 and {MAX_PAGE}")
    offset = pagination.decode(optional_string(fields, "page_token") or None).offset
    sql, args = search_sql(
        experiment_ids,
        optional_string(fields, "filter_string") or None,
        string_list(fields, "order_by"),
    )
    n = len(args)
    rows = await request.app[PG_POOL].fetch(
        f"{sql} LIMIT ${n + 1} OFFSET ${n + 2}", *args, max_results + 1, offset
    )
    out: JsonDict = {}
    if rows:
        out["datasets"] = [dataset_to_json(r) for r in rows[:max_results]]
    if len(rows) > max_results:
        out["next_page_token"] = pagination.encode(offset + max_results)
    return json_response(out)


async def _dataset(request: web.Request) -> Mapping[str, Any]:
    wanted = request.match_info["dataset_id"]
    row: Mapping[str, Any] | None = await request.app[PG_POOL].fetchrow(
        f"{SELECT} WHERE {DATASET_ID_SQL} = $1", wanted
    )
    visible = visibility_of(request)
    if row is None or (visible is not None and not visible.allows(str(row["experiment_id"]))):
        raise ResourceDoesNotExist(f"Dataset '{wanted}' not found.")
    return row


async def get_dataset(request: web.Request) -> web.Response:
    """``GET .../datasets/{dataset_id}``: one logged dataset, found by its derived id."""
    return json_response({"dataset": dataset_to_json(await _dataset(request))})


async def get_dataset_records(request: web.Request) -> web.Response:
    """``GET .../datasets/{dataset_id}/records``: a logged dataset's rows are not stored (only
    its source, schema and profile are), so it has no records (a JSON list, as MLflow's)."""
    await _dataset(request)
    return json_response({"records": "[]"})


async def get_dataset_experiment_ids(request: web.Request) -> web.Response:
    row = await _dataset(request)
    return json_response({"experiment_ids": [str(row["experiment_id"])]})
