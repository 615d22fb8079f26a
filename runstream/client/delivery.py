"""One delivery attempt of a batch, classified: delivered, retry later, or refused for good."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

from runstream.client.batches import encode_body, maybe_gzip
from runstream.client.transport import MSGPACK, Transport, TransportError
from runstream.schemas.errors import InvalidParameterValue
from runstream.schemas.sharding import WriteToken

EVENTS_PATH = "/api/runstream/v1/events"
GET_OR_CREATE_PATH = "/api/runstream/v1/experiments/get-or-create"
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: Literal["ok", "retry", "reject"]
    error: str = ""
    retry_after: float | None = None
    """Seconds the server asked to wait (429/503 ``Retry-After``)."""
    token: str = ""
    points: int = 0
    status: int = 0
    """The HTTP status of the answer; 0 when there was none (refused, reset, timed out)."""
    error_code: str = ""
    """The server's ``error_code`` of a refusal (``RESOURCE_DOES_NOT_EXIST``, ...)."""


def merge_tokens(old: str, new: str) -> str:
    """The newer position per shard of two write tokens (text form)."""
    if not old or not new:
        return new or old
    try:
        return str(WriteToken.parse(old).merged(WriteToken.parse(new)))
    except InvalidParameterValue:
        return new


def backoff(attempt: int, cap: float) -> float:
    """Exponential backoff with full jitter: 0.25 s, 0.5 s, 1 s, ... up to ``cap``."""
    return float(random.uniform(0.5, 1.0) * min(cap, 0.25 * 2 ** min(attempt, 20)))


def resolve_experiment(transport: Transport, name: str, timeout: float | None = None) -> str:
    """The id of the experiment ``name``, created when missing (raises on failure)."""
    answer = transport.request_json("POST", GET_OR_CREATE_PATH, {"name": name}, timeout=timeout)
    return str(answer["experiment_id"])


def fill_experiment(events: list[dict[str, Any]], experiment_id: str) -> None:
    """Put the resolved experiment id into the ``run_created`` events that lack one."""
    for event in events:
        if event.get("type") == "run_created" and not event.get("experiment_id"):
            event["experiment_id"] = experiment_id


def post_events(
    transport: Transport,
    events: list[dict[str, Any]],
    idempotency_key: str,
    compress_min_bytes: int = 0,
    experiment_name: str | None = None,
) -> Outcome:
    """Send one batch; never raises for transport or HTTP failures."""
    try:
        if experiment_name is not None:
            fill_experiment(events, resolve_experiment(transport, experiment_name))
        body, encoding = maybe_gzip(encode_body(events), compress_min_bytes)
        headers = {
            "Content-Type": MSGPACK,
            "Accept": "application/json",
            "Idempotency-Key": idempotency_key,
        }
        if encoding:
            headers["Content-Encoding"] = encoding
        response = transport.request("POST", EVENTS_PATH, body, headers)
    except TransportError as exc:
        return Outcome("retry", str(exc))
    except Exception as exc:  # an HTTPError from get-or-create, a bad answer: retry later
        status = getattr(exc, "status", 0)
        kind: Literal["retry", "reject"] = (
            "reject" if 400 <= status < 500 and status not in RETRY_STATUSES else "retry"
        )
        code = str(getattr(exc, "error_code", ""))
        return Outcome(
            kind, f"experiment {experiment_name!r}: {exc}", status=status, error_code=code
        )
    if response.status < 300:
        try:
            data = response.decode()
        except ValueError:
            data = {}
        token = str(data.get("token", "")) if isinstance(data, dict) else ""
        points = int(data.get("points", 0)) if isinstance(data, dict) else 0
        return Outcome("ok", token=token, points=points, status=response.status)
    refusal = response.error()
    error, status, code = str(refusal), response.status, refusal.error_code
    if status in (429, 503):
        return Outcome("retry", error, response.retry_after(1.0), status=status, error_code=code)
    if status in RETRY_STATUSES:
        return Outcome("retry", error, status=status, error_code=code)
    return Outcome("reject", error, status=status, error_code=code)
