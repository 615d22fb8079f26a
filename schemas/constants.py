"""Names on the wire and limits, each with its unit.

Every Redis key runstream writes is built here, so that a deployment can be inspected (and a
test isolated) by prefix alone. Keys of one shard share a Redis Cluster hash tag ``{<shard>}``
so that the write-side script touches one slot.
"""

from __future__ import annotations

# -- streams and groups -------------------------------------------------------------------------

DEFAULT_PREFIX = "rs"
DEFAULT_SHARDS = 8
CONSUMER_GROUP = "projector"
EXPERIMENT_SHARD = 0
"""Experiment events all go to shard 0, so name uniqueness is checked in one Redis slot."""

ENTRY_FORMAT_VERSION = 1
"""Version of the stream entry envelope (``{"v", "at", "ev"}``)."""


def stream_key(prefix: str, shard: int) -> str:
    return f"{prefix}:events:{{{shard}}}"


def dead_letter_key(prefix: str, shard: int) -> str:
    return f"{prefix}:dead:{{{shard}}}"


def watermark_key(prefix: str, shard: int) -> str:
    """String key holding the id of the newest entry of the shard applied in PostgreSQL."""
    return f"{prefix}:watermark:{{{shard}}}"


def watermark_channel(prefix: str) -> str:
    """Pub/sub channel on which projectors announce ``"<shard> <entry id>"`` after commit."""
    return f"{prefix}:watermarks"


def tail_key(prefix: str, shard: int) -> str:
    """String key holding the id of the newest entry appended to the shard (set by ingest).

    A read that must see every write accepted before it waits until the shard's watermark
    reaches this id (see ``WatermarkWaiter.catch_up``).
    """
    return f"{prefix}:tail:{{{shard}}}"


def lease_key(prefix: str, shard: int) -> str:
    """Which projector consumes a shard; one at a time keeps the order per run."""
    return f"{prefix}:lease:{{{shard}}}"


def idempotency_key(prefix: str, shard: int, request_key: str) -> str:
    return f"{prefix}:idem:{{{shard}}}:{request_key}"


def run_state_key(prefix: str, shard: int, run_id: str) -> str:
    """Write-side model of a run: hash with ``exp``, ``life`` (active/deleted)."""
    return f"{prefix}:run:{{{shard}}}:{run_id}"


def run_params_key(prefix: str, shard: int, run_id: str) -> str:
    """Write-side model of a run's params: hash key -> value, to refuse a changed value."""
    return f"{prefix}:params:{{{shard}}}:{run_id}"


def experiment_name_key(prefix: str, name: str) -> str:
    return f"{prefix}:expname:{{{EXPERIMENT_SHARD}}}:{name}"


def experiment_state_key(prefix: str, experiment_id: str) -> str:
    return f"{prefix}:exp:{{{EXPERIMENT_SHARD}}}:{experiment_id}"


def experiment_counter_key(prefix: str) -> str:
    return f"{prefix}:expseq:{{{EXPERIMENT_SHARD}}}"


def deleted_experiments_key(prefix: str) -> str:
    """Write-side set of deleted experiment ids (plus the member ``""`` once loaded).

    Runs of a deleted experiment count as deleted (MLflow cascades the delete); run shards
    live in other slots, so ingest passes this set to their scripts.
    """
    return f"{prefix}:expdeleted:{{{EXPERIMENT_SHARD}}}"


# -- limits -------------------------------------------------------------------------------------

MAX_ENTITY_KEY_LENGTH = 250
"""Characters in a metric, param or tag key (MLflow's limit)."""
MAX_PARAM_VALUE_LENGTH = 6000
"""Characters in a param value (MLflow's limit)."""
MAX_TAG_VALUE_LENGTH = 8000
"""Characters in a run tag value (MLflow's limit)."""
MAX_EXPERIMENT_TAG_VALUE_LENGTH = 20000
"""Characters in an experiment tag value (MLflow's limit)."""
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_RUN_NAME_LENGTH = 250
MAX_USER_ID_LENGTH = 256
"""Characters in a run's user id (MLflow's ``runs.user_id`` is ``VARCHAR(256)``)."""
MAX_ARTIFACT_LOCATION_LENGTH = 2000

# MLflow's request limits: every entry point imports them from here (ingest may import nothing
# but schemas/), none keeps a copy.

SEARCH_MAX_RESULTS_DEFAULT = 1000
"""Runs (and native list pages) when a search names no ``max_results`` (MLflow's default)."""
SEARCH_MAX_RESULTS_THRESHOLD = 50_000
"""Most results of one search page: runs, experiments, logged models (MLflow's ceiling)."""
LOGGED_MODEL_SEARCH_MAX_RESULTS_DEFAULT = 100
"""Logged models when a search names no ``max_results`` (MLflow's default)."""
MAX_METRICS_PER_BATCH = 1000
"""Metrics in one ``runs/log-batch`` request."""
MAX_PARAMS_TAGS_PER_BATCH = 100
"""Params, and separately tags, in one ``runs/log-batch`` request."""
MAX_ENTITIES_PER_BATCH = 1000
"""Metrics, params and tags together in one ``runs/log-batch`` request."""
MAX_RUNS_PER_HISTORY_BULK = 100
"""Runs in one ``metrics/get-history-bulk`` or ``get-history-bulk-interval`` request."""
MAX_HISTORY_BULK_RESULTS = 25_000
"""Points in one ``metrics/get-history-bulk`` answer (the UI's endpoint)."""
MAX_RESULTS_PER_RUN = 2500
"""Points per run of ``get-history-bulk-interval``."""
MAX_DATASETS_PER_REQUEST = 1000
"""Dataset inputs in one ``runs/log-inputs`` request (MLflow's MAX_DATASETS_PER_BATCH)."""
MAX_MODELS_PER_REQUEST = 1000
"""Model inputs or outputs in one ``runs/log-inputs`` or ``runs/outputs`` request."""
MAX_MODEL_NAME_LENGTH = 500
"""Characters in a logged model's name."""
MAX_MODEL_TYPE_LENGTH = 500
MAX_MODEL_TAG_KEY_LENGTH = 255
MAX_MODEL_PARAM_KEY_LENGTH = 255
MAX_DATASET_NAME_LENGTH = 500
MAX_DATASET_DIGEST_LENGTH = 36
MAX_DATASET_SOURCE_TYPE_LENGTH = 36
MAX_DATASET_SOURCE_LENGTH = 65_535
MAX_DATASET_SCHEMA_LENGTH = 1_048_575
MAX_DATASET_PROFILE_LENGTH = 16_777_215
MAX_INPUT_TAG_KEY_LENGTH = 255
MAX_INPUT_TAG_VALUE_LENGTH = 500

# -- MLflow's reserved tags -----------------------------------------------------------------------

RUN_NAME_TAG = "mlflow.runName"
"""The run tag that mirrors a run's name."""
DATASET_CONTEXT_TAG = "mlflow.data.context"
"""The dataset input tag naming its use (``training``, ``eval``, ...)."""
LOG_MODEL_HISTORY_TAG = "mlflow.log-model.history"
"""The run tag listing the models logged to it (JSON)."""

# -- native limits --------------------------------------------------------------------------------

MAX_EVENTS_PER_REQUEST = 10_000
"""Events in one native ingest request."""
MAX_POINTS_PER_REQUEST = 2_000_000
"""Metric points in one native ingest request."""
MAX_POINTS_PER_SERIES_EVENT = 1_000_000
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
"""Bytes in one ingest request body (after decompression)."""

MAX_ENTRY_BYTES = 8 * 1024 * 1024
"""Bytes in one stream entry; ingest splits a shard's events over several entries past this."""

RUN_ID_LENGTH = 32
"""Run ids are uuid4 hex strings, as MLflow makes them."""

WRITE_MODEL_TTL_SECONDS = 7 * 24 * 3600
"""Write-side run state expires when idle and is reloaded from PostgreSQL on next use."""
IDEMPOTENCY_TTL_SECONDS = 24 * 3600


def logged_model_key(prefix: str, shard: int, model_id: str) -> str:
    """Write-side fact that a logged model exists: string holding its experiment id.

    Models are never removed (their delete is a lifecycle stage), so the fact, once set, stays
    true; it expires when idle and is reloaded from PostgreSQL's ``logged_models``.
    """
    return f"{prefix}:model:{{{shard}}}:{model_id}"


def live_cursor_key(prefix: str, token: str) -> str:
    """Hash series id -> points sent, of one live stream (``api/native/live.py``): its event
    ids name this key instead of listing every series, so their size does not grow."""
    return f"{prefix}:live:{token}"


LIVE_CURSOR_TTL_SECONDS = 3600
"""A live stream can be resumed with its Last-Event-ID this long after its last event."""


def changes_channel(prefix: str) -> str:
    """Pub/sub channel on which projectors announce, after each committed batch, what it
    changed, for live streams (api/native/live_hub.py). One msgpack map per batch:
    ``{"s": shard, "e": "<newest entry id>", "m": [[run_id, key], ...], "r": [run_id, ...]}``
    with ``m`` the metric series that got points and ``r`` the runs whose row changed."""
    return f"{prefix}:changes"


def registry_loaded_key(prefix: str) -> str:
    """Marker that the registry's write-side model is complete in Redis (loaded whole from
    PostgreSQL, then kept by the registry script): without it, no registry write is accepted."""
    return f"{prefix}:regloaded:{{{EXPERIMENT_SHARD}}}"


def registered_model_key(prefix: str, name: str) -> str:
    """Write-side state of one registered model: hash ``top`` (highest version number ever
    allocated) and ``v:<n>`` for each live version. No TTL: the registry is kept whole."""
    return f"{prefix}:regmodel:{{{EXPERIMENT_SHARD}}}:{name}"
