"""Write-side checks of logged-model events, made before their shard's append script runs.

- ``logged_model_created`` gets its id (``m-<32 hex>``) when the client left it empty, and
  its artifact location ``<experiment location>/models/<id>/artifacts``; its experiment must
  exist and be active (MLflow's ``create_logged_model``).
- Every other event of a model must name a model that exists, deleted or not (MLflow's
  ``_get_logged_model_record``): else RESOURCE_DOES_NOT_EXIST with MLflow's message.

A model is never removed, so "it exists" once true stays true: the check needs no atomicity
with the append, unlike a param's value. The fact is a Redis key per model (set after the
create is appended, before the client hears the id) with PostgreSQL's ``logged_models`` as
the fallback when the key has expired.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence

import asyncpg
import redis.asyncio as aioredis

from runstream.ingest.model import WriteModel
from runstream.schemas import constants as c
from runstream.schemas import models as mo
from runstream.schemas.codec import Event
from runstream.schemas.errors import ResourceDoesNotExist
from runstream.schemas.sharding import shard_of_model

MODELS_FOLDER = "models"
ARTIFACTS_FOLDER = "artifacts"


def new_model_id() -> str:
    return f"m-{uuid.uuid4().hex}"


def model_artifact_location(experiment_location: str, model_id: str) -> str:
    """MLflow's ``append_to_uri_path(location, "models", model_id, "artifacts")``."""
    return f"{experiment_location.rstrip('/')}/{MODELS_FOLDER}/{model_id}/{ARTIFACTS_FOLDER}"


def model_not_found(model_id: str) -> ResourceDoesNotExist:
    return ResourceDoesNotExist(f"Logged model with ID '{model_id}' not found.")


def referenced_models(events: Sequence[Event]) -> list[str]:
    """Ids of the models that ``events`` change but do not create, in first-use order."""
    created = {e.model_id for e in events if isinstance(e, mo.LoggedModelCreated)}
    wanted: dict[str, None] = {}
    for event in events:
        if isinstance(event, mo.LOGGED_MODEL_EVENT_TYPES) and event.model_id not in created:
            wanted[event.model_id] = None
    return list(wanted)


class LoggedModelChecks:
    def __init__(
        self,
        redis: aioredis.Redis,
        pool: asyncpg.Pool,
        prefix: str,
        shards: int,
        write_model: WriteModel,
    ) -> None:
        self.redis = redis
        self.pool = pool
        self.prefix = prefix
        self.shards = shards
        self.write_model = write_model

    def _key(self, model_id: str) -> str:
        return c.logged_model_key(self.prefix, shard_of_model(model_id, self.shards), model_id)

    async def prepare(self, events: Sequence[Event]) -> list[Event]:
        """``events`` with new models completed; raises MLflow's error for a bad reference."""
        if not any(isinstance(e, mo.LOGGED_MODEL_EVENT_TYPES) for e in events):
            return list(events)
        completed = await self._complete_created(events)
        missing = await self.missing(referenced_models(completed))
        if missing:
            raise model_not_found(missing[0])
        return completed

    async def _complete_created(self, events: Sequence[Event]) -> list[Event]:
        created = [e for e in events if isinstance(e, mo.LoggedModelCreated)]
        if not created:
            return list(events)
        wanted = sorted({e.experiment_id for e in created})
        infos = await self.write_model.active_experiments(wanted)
        out: list[Event] = []
        for event in events:
            if isinstance(event, mo.LoggedModelCreated):
                model_id = event.model_id or new_model_id()
                location = event.artifact_location or model_artifact_location(
                    infos[event.experiment_id].artifact_location, model_id
                )
                event = dataclasses.replace(event, model_id=model_id, artifact_location=location)
            out.append(event)
        return out

    async def missing(self, model_ids: Sequence[str]) -> list[str]:
        """The ids among ``model_ids`` of which no model exists."""
        if not model_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for model_id in model_ids:
            pipe.expire(self._key(model_id), c.WRITE_MODEL_TTL_SECONDS)
        known = await pipe.execute()
        unknown = [m for m, hit in zip(model_ids, known, strict=True) if not hit]
        if not unknown:
            return []
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT model_id, experiment_id FROM logged_models WHERE model_id = ANY($1)",
                unknown,
            )
        found = {r["model_id"]: str(r["experiment_id"]) for r in rows}
        if found:
            await self._set(found)
        return [m for m in unknown if m not in found]

    async def remember(self, events: Sequence[Event]) -> None:
        """Record the models that ``events`` (now appended) created."""
        created = {
            e.model_id: e.experiment_id for e in events if isinstance(e, mo.LoggedModelCreated)
        }
        if created:
            await self._set(created)

    async def _set(self, experiments_of: dict[str, str]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for model_id, experiment_id in experiments_of.items():
            pipe.set(self._key(model_id), experiment_id, ex=c.WRITE_MODEL_TTL_SECONDS)
        await pipe.execute()
