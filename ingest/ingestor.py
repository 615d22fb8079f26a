"""The write path: check events, run each shard's append script, answer with a write token.

Every entry point (the native batch endpoint, the MLflow-compatible routes in ``api``) hands
its events to ``Ingestor.append``. Stateless checks run first (``rules``); then, per shard, one
Lua script (``append.lua``) checks the write-side model, records the change and XADDs the
entry, atomically, so two clients racing on the same param get exactly one acceptance.

A request that spans several shards is applied whole or refused whole: stateless checks
refuse bad input before any shard is touched, and then every shard's script runs once in
check-only mode (``dry``) before any of them appends, so an unknown run or a changed param on
one shard refuses the request with nothing written anywhere. Between the check and the
append, another client's write could still change a verdict (say, delete one of the runs in
those few milliseconds); that race is narrow and is the price of not locking across Redis
slots (docs/design-decisions.md, "Requests that span shards").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Sequence
from importlib import resources

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from runstream import telemetry
from runstream.ingest import rules
from runstream.ingest.backlog import BacklogGauge
from runstream.ingest.commands import Absent, Appended, read_reply, script_args
from runstream.ingest.logged_models import LoggedModelChecks
from runstream.ingest.model import WriteModel
from runstream.ingest.registry import RegistryWriter
from runstream.lean_script import LeanScript
from runstream.schemas import constants as c
from runstream.schemas import experiments as ex
from runstream.schemas import registry as rg
from runstream.schemas import runs as rn
from runstream.schemas.codec import Event
from runstream.schemas.entries import encode_entries
from runstream.schemas.errors import (
    InvalidParameterValue,
    ResourceAlreadyExists,
    RunstreamError,
    TemporarilyUnavailable,
)
from runstream.schemas.metrics import MetricsLogged
from runstream.schemas.sharding import WriteToken, parse_entry_id, shard_of_model, shard_of_run
from runstream.schemas.validation import validate_experiment_name
from runstream.settings import Settings

logger = logging.getLogger(__name__)

MAX_LOAD_ROUNDS = 4
"""Script calls per shard and request: the first, and one after each load from PostgreSQL."""

_LIFECYCLE_EVENTS = (ex.ExperimentDeleted, ex.ExperimentRestored)


def default_artifact_location(experiment_id: str) -> str:
    """Where an experiment's artifacts go unless the client says otherwise (MLflow's proxy)."""
    return f"mlflow-artifacts:/{experiment_id}"


def run_artifact_uri(experiment_location: str, run_id: str) -> str:
    return f"{experiment_location.rstrip('/')}/{run_id}/artifacts"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Ingestor:
    def __init__(self, redis: aioredis.Redis, pool: asyncpg.Pool, settings: Settings) -> None:
        self.redis = redis
        self.pool = pool
        self.settings = settings
        self.prefix = settings.stream_prefix
        self.shards = settings.shards
        self.model = WriteModel(redis, pool, self.prefix, self.shards)
        self.backlog = BacklogGauge(redis, self.prefix, settings.backlog_limit)
        self.logged_models = LoggedModelChecks(redis, pool, self.prefix, self.shards, self.model)
        self.registry = RegistryWriter(
            redis, pool, self.prefix, self.backlog, settings.read_your_writes_timeout
        )
        text = resources.files("runstream.ingest").joinpath("append.lua").read_text()
        self._script = LeanScript(redis, text)

    async def aclose(self) -> None:
        await self._script.aclose()

    async def append(
        self, events: Sequence[Event], *, idempotency_key: str | None = None
    ) -> WriteToken:
        """Append ``events``; ``experiment_created`` events get their id assigned here."""
        rules.check_events(events)
        if any(rg.is_registry_event(e) for e in events):
            token, _ = await self.append_registry(events)  # type: ignore[arg-type]
            return token
        async with _store_errors(self.settings.store_timeout):
            prepared = [
                await self._assign_id(e) if isinstance(e, ex.ExperimentCreated) else e
                for e in events
            ]
            prepared = await self.logged_models.prepare(prepared)
            token = await self._append(prepared, idempotency_key)
            await self.logged_models.remember(prepared)
            return token

    async def append_registry(
        self, events: Sequence[rg.RegistryEvent]
    ) -> tuple[WriteToken, list[rg.RegistryEvent]]:
        """Append registry events (alone: they have their own script and shard); returns the
        events as appended, new model versions numbered."""
        if not all(rg.is_registry_event(e) for e in events):
            raise InvalidParameterValue(
                "Registry events cannot be mixed with other events in one request."
            )
        rules.check_events(events)
        async with _store_errors(self.settings.store_timeout):
            return await self.registry.append(events)

    async def _assign_id(self, event: ex.ExperimentCreated) -> ex.ExperimentCreated:
        experiment_id = await self.model.next_experiment_id()
        location = event.artifact_location or default_artifact_location(experiment_id)
        return dataclasses.replace(event, experiment_id=experiment_id, artifact_location=location)

    async def create_experiment(
        self,
        name: str,
        artifact_location: str | None = None,
        tags: Sequence[tuple[str, str]] = (),
    ) -> str:
        experiment_id, _ = await self.create_experiment_with_token(name, artifact_location, tags)
        return experiment_id

    async def create_experiment_with_token(
        self,
        name: str,
        artifact_location: str | None = None,
        tags: Sequence[tuple[str, str]] = (),
    ) -> tuple[str, WriteToken]:
        validate_experiment_name(name)
        async with _store_errors(self.settings.store_timeout):
            experiment_id = await self.model.next_experiment_id()
            event = ex.ExperimentCreated(
                experiment_id=experiment_id,
                name=name,
                artifact_location=artifact_location or default_artifact_location(experiment_id),
                creation_time=now_ms(),
                tags=tuple(tags),
            )
            rules.check_events([event])
            return experiment_id, await self._append([event], None)

    async def get_or_create_experiment(self, name: str) -> tuple[str, bool]:
        """The id of the experiment called ``name`` (deleted ones too), creating it if none."""
        validate_experiment_name(name)
        async with _store_errors(self.settings.store_timeout):
            found = await self.model.experiment_id_of(name)
        if found is not None:
            return found, False
        try:
            return await self.create_experiment(name), True
        except ResourceAlreadyExists:
            # Another client created it between our look-up and our append.
            async with _store_errors(self.settings.store_timeout):
                found = await self.model.experiment_id_of(name)
            if found is None:
                raise
            return found, False

    async def _append(self, events: Sequence[Event], idempotency_key: str | None) -> WriteToken:
        events = await self._complete_runs(events)
        by_shard: dict[int, list[Event]] = {}
        for event in events:
            run_id = getattr(event, "run_id", None)
            model_id = getattr(event, "model_id", None)
            if run_id is not None:
                shard = shard_of_run(run_id, self.shards)
            elif model_id is not None:
                # A logged model's own events (schemas.models) meet on its shard.
                shard = shard_of_model(model_id, self.shards)
            else:
                shard = c.EXPERIMENT_SHARD
            by_shard.setdefault(shard, []).append(event)
        shards = sorted(by_shard)
        await self.backlog.check(shards)
        deleted = await self.model.deleted_experiments()
        if len(shards) > 1:
            # All shards say yes before any appends: whole or nothing (module docstring).
            checks = await asyncio.gather(
                *(
                    self._append_shard(s, by_shard[s], (), deleted, idempotency_key, dry=True)
                    for s in shards
                ),
                return_exceptions=True,
            )
            _raise_first(checks)
        at = now_ms()
        key = idempotency_key
        appends = [
            self._append_shard(s, by_shard[s], encode_entries(at, by_shard[s]), deleted, key)
            for s in shards
        ]
        results: list[Appended | BaseException]
        if len(appends) == 1:
            # Most requests touch one run, hence one shard: awaited here rather than through
            # gather's task, a loop turn and a task less on every write (issue 12).
            try:
                results = [await appends[0]]
            except Exception as exc:  # sorted by _raise_first below, as gather's are
                results = [exc]
        else:
            results = await asyncio.gather(*appends, return_exceptions=True)
        if any(isinstance(e, _LIFECYCLE_EVENTS) for e in events):
            self.model.forget_deleted_experiments()
        _raise_first(results)
        positions = []
        for shard, result in zip(shards, results, strict=True):
            assert isinstance(result, Appended)
            if not result.duplicate:
                self.backlog.note_appended(shard, len(result.entry_ids))
                _count_accepted(shard, by_shard[shard])
            positions.append((shard, parse_entry_id(result.entry_ids[-1])))
        return WriteToken(tuple(positions))

    async def _append_shard(
        self,
        shard: int,
        events: Sequence[Event],
        entries: Sequence[bytes],
        deleted: Sequence[str],
        idempotency_key: str | None,
        *,
        dry: bool = False,
    ) -> Appended:
        absent = Absent()
        for _ in range(MAX_LOAD_ROUNDS):
            keys, header = script_args(
                self.prefix, shard, events, absent, deleted, idempotency_key, dry=dry
            )
            reply = await self._script(keys, [header, *entries])
            outcome = read_reply(reply)
            if isinstance(outcome, Appended):
                return outcome
            absent = absent | await self.model.load(shard, outcome)
        raise TemporarilyUnavailable(
            f"The write-side model of shard {shard} kept changing while loading; retry."
        )

    async def _complete_runs(self, events: Sequence[Event]) -> list[Event]:
        """Check the experiments of new runs and give runs their default artifact URI.

        Experiments live in another Redis slot than most runs, so this check is made here,
        before the run's own shard script, rather than inside it.
        """
        created_here = {
            e.experiment_id: e.artifact_location
            for e in events
            if isinstance(e, ex.ExperimentCreated)
        }
        wanted = sorted(
            {
                e.experiment_id
                for e in events
                if isinstance(e, rn.RunCreated) and e.experiment_id not in created_here
            }
        )
        if not wanted:
            return list(events)
        infos = await self.model.active_experiments(wanted)
        locations = dict(created_here)
        for experiment_id in wanted:
            locations[experiment_id] = infos[experiment_id].artifact_location
        return [
            dataclasses.replace(
                e, artifact_uri=run_artifact_uri(locations[e.experiment_id], e.run_id)
            )
            if isinstance(e, rn.RunCreated) and not e.artifact_uri
            else e
            for e in events
        ]


def _raise_first(results: Sequence[object]) -> None:
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        # A store failure outranks a refusal: the client must retry, not give up.
        for error in errors:
            if not isinstance(error, RunstreamError):
                raise error
        raise errors[0]


def _count_accepted(shard: int, events: Sequence[Event]) -> None:
    points_counter, events_counter = telemetry.accepted_counters(shard)
    points = sum(e.point_count for e in events if isinstance(e, MetricsLogged))
    if points:
        points_counter.inc(points)
    events_counter.inc(len(events))


@contextlib.asynccontextmanager
async def _store_errors(timeout: float) -> AsyncIterator[None]:  # noqa: ASYNC109
    """Store outages become 503 with Retry-After; the SDK backs off and retries. A store that
    accepts the connection but does not answer (a frozen Redis) counts as an outage after
    ``timeout`` seconds, rather than holding the request for ever."""
    try:
        async with asyncio.timeout(timeout if timeout > 0 else None):
            yield
    except TimeoutError as exc:
        logger.warning(
            "a store did not answer within %gs", timeout, extra={"action": "store_timeout"}
        )
        raise TemporarilyUnavailable(f"A store did not answer within {timeout:g}s") from exc
    except (RedisConnectionError, RedisTimeoutError) as exc:
        logger.warning("redis unavailable: %s", exc, extra={"action": "redis_unavailable"})
        raise TemporarilyUnavailable(f"Redis is unavailable: {exc}") from exc
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as exc:
        logger.warning("postgresql unavailable: %s", exc, extra={"action": "postgres_unavailable"})
        raise TemporarilyUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
