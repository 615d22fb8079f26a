"""The instructions the registry script (``registry.lua``) runs, and its replies. Pure.

Events in, (KEYS, header) out; a reply in, the appended ids, a "load first" or "version
taken" outcome, or MLflow's error out. The op layouts here and in the script must agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from runstream.schemas import constants as c
from runstream.schemas import registry as rg
from runstream.schemas.errors import (
    ResourceAlreadyExists,
    ResourceDoesNotExist,
    RunstreamError,
)


@dataclass(frozen=True, slots=True)
class NotLoaded:
    """The registry's write-side model is not in Redis: load it from PostgreSQL, retry."""


@dataclass(frozen=True, slots=True)
class VersionTaken:
    """Another writer allocated the version first: ``top`` is the model's highest now."""

    name: str
    top: int


def model_not_found(name: str) -> ResourceDoesNotExist:
    return ResourceDoesNotExist(f"Registered Model with name={name} not found")


def version_not_found(name: str, version: int | str) -> ResourceDoesNotExist:
    return ResourceDoesNotExist(f"Model Version (name={name}, version={version}) not found")


def model_exists(name: str) -> ResourceAlreadyExists:
    return ResourceAlreadyExists(f"Registered Model (name={name}) already exists.")


_MODEL_OPS: dict[type[Any], str] = {
    rg.RegisteredModelCreated: "mc",
    rg.RegisteredModelDeleted: "md",
    rg.RegisteredModelUpdated: "ma",
    rg.RegisteredModelTagSet: "ma",
    rg.RegisteredModelTagDeleted: "ma",
    rg.RegisteredModelAliasDeleted: "ma",
}
_VERSION_OPS: dict[type[Any], str] = {
    rg.ModelVersionCreated: "vc",
    rg.ModelVersionDeleted: "vd",
    rg.ModelVersionUpdated: "va",
    rg.ModelVersionStageTransitioned: "va",
    rg.ModelVersionTagSet: "va",
    rg.ModelVersionTagDeleted: "va",
    rg.RegisteredModelAliasSet: "va",
}


def script_args(prefix: str, events: Sequence[rg.RegistryEvent]) -> tuple[list[str], bytes]:
    """KEYS and the msgpack header (ARGV[1]) of the registry script."""
    keys = [
        c.stream_key(prefix, rg.REGISTRY_SHARD),
        c.tail_key(prefix, rg.REGISTRY_SHARD),
        c.registry_loaded_key(prefix),
    ]
    index: dict[str, int] = {}

    def key(name: str) -> int:
        k = c.registered_model_key(prefix, name)
        if k not in index:
            keys.append(k)
            index[k] = len(keys)
        return index[k]

    ops: list[list[Any]] = []
    for event in events:
        if isinstance(event, rg.RegisteredModelRenamed):
            ops.append(["mr", key(event.name), event.name, key(event.new_name), event.new_name])
        elif (kind := _MODEL_OPS.get(type(event))) is not None:
            ops.append([kind, key(event.name), event.name])
        else:
            version: int = event.version  # type: ignore[union-attr]
            ops.append([_VERSION_OPS[type(event)], key(event.name), event.name, version])
    return keys, msgpack.packb({"ops": ops}, use_bin_type=False)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_reply(reply: Sequence[Any]) -> tuple[str, ...] | NotLoaded | VersionTaken:
    """The appended entry ids, or what to do first; refusals raise MLflow's error."""
    status = _text(reply[0])
    if status == "ok":
        return tuple(_text(r) for r in reply[1:])
    if status == "missing":
        return NotLoaded()
    if status == "err":
        code, args = _text(reply[1]), [_text(r) for r in reply[2:]]
        if code == "version_taken":
            return VersionTaken(args[0], int(args[1]))
        raise refusal(code, args)
    raise RuntimeError(f"unexpected reply from the registry script: {reply!r}")


def refusal(code: str, args: list[str]) -> RunstreamError:
    """MLflow's error for a write-side refusal (``model_registry/sqlalchemy_store`` wording)."""
    if code == "rm_exists":
        return model_exists(args[0])
    if code == "rm_missing":
        return model_not_found(args[0])
    if code == "rename_exists":
        return model_exists(args[0])
    if code == "mv_missing":
        return version_not_found(args[0], args[1])
    return RunstreamError(f"registry write refused: {code} {args}")
