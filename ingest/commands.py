"""The instructions one shard's append script runs, and the meaning of its replies.

Pure: events in, (KEYS, header) out; a reply in, an outcome or an MLflow-worded error out.
The script itself is ``append.lua``; the op layouts here and there must agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from runstream.schemas import constants as c
from runstream.schemas import experiments as ex
from runstream.schemas import inputs as inp
from runstream.schemas import models as mo
from runstream.schemas import runs as rn
from runstream.schemas.codec import Event
from runstream.schemas.errors import (
    BadRequest,
    InvalidParameterValue,
    InvalidState,
    ParamValueConflict,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
    RunstreamError,
)
from runstream.schemas.metrics import MetricsLogged


@dataclass(frozen=True, slots=True)
class Absent:
    """What PostgreSQL confirmed does not exist, so a missing Redis key means "no such"."""

    runs: frozenset[str] = frozenset()
    experiments: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()

    def __or__(self, other: Absent) -> Absent:
        return Absent(
            self.runs | other.runs,
            self.experiments | other.experiments,
            self.names | other.names,
        )


@dataclass(frozen=True, slots=True)
class Missing:
    """Model keys the script found absent: load them from PostgreSQL and call again."""

    runs: tuple[str, ...] = ()
    experiments: tuple[str, ...] = ()
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Appended:
    entry_ids: tuple[str, ...]
    duplicate: bool = False


@dataclass(slots=True)
class _Keys:
    keys: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    def __call__(self, key: str) -> int:
        i = self.index.get(key)
        if i is None:
            self.keys.append(key)
            i = self.index[key] = len(self.keys)
        return i


_RUN_OPS: dict[type[Any], str] = {
    rn.RunCreated: "rc",
    rn.RunUpdated: "ra",
    rn.RunTagsSet: "ra",
    rn.RunTagDeleted: "ra",
    MetricsLogged: "ra",
    rn.ParamsLogged: "p",
    rn.RunDeleted: "rd",
    rn.RunRestored: "rr",
    # A run's inputs and outputs, and metrics it logs to a model, need an active run.
    inp.DatasetInputLogged: "ra",
    inp.ModelInputLogged: "ra",
    inp.ModelOutputLogged: "ra",
    mo.LoggedModelMetricLogged: "ra",
}
_EXPERIMENT_OPS: dict[type[Any], str] = {
    ex.ExperimentDeleted: "ed",
    ex.ExperimentRestored: "eu",
    ex.ExperimentTagSet: "ea",
    ex.ExperimentTagDeleted: "ea",
}


def script_args(
    prefix: str,
    shard: int,
    events: Sequence[Event],
    absent: Absent,
    deleted_experiments: Sequence[str],
    idempotency_key: str | None,
    *,
    dry: bool = False,
) -> tuple[list[str], bytes]:
    """KEYS and the msgpack header (ARGV[1]) of one shard's append script; ``dry`` asks it to
    check and answer without writing anything."""
    stream = c.stream_key(prefix, shard)
    # Without an idempotency key, KEYS[2] repeats the stream key (the script ignores it).
    idem = c.idempotency_key(prefix, shard, idempotency_key) if idempotency_key else stream
    keys = _Keys(keys=[stream, idem, c.tail_key(prefix, shard)])
    ops: list[list[Any]] = []
    checked: set[str] = set()
    for event in events:
        kind = _RUN_OPS.get(type(event))
        if kind is not None:
            run_id: str = event.run_id  # type: ignore[union-attr]
            if kind == "ra":
                # One liveness check per run and request is enough (metric-heavy batches).
                if run_id in checked:
                    continue
                checked.add(run_id)
            elif kind in ("rd", "rr"):
                checked.discard(run_id)
            op: list[Any] = [
                kind,
                keys(c.run_state_key(prefix, shard, run_id)),
                keys(c.run_params_key(prefix, shard, run_id)),
                int(run_id in absent.runs),
                run_id,
            ]
            if isinstance(event, rn.RunCreated):
                op.append(event.experiment_id)
            elif isinstance(event, rn.ParamsLogged):
                op.append(int(len(event.params) == 1))
                for key, value in event.params:
                    op += (key, value)
            ops.append(op)
        elif isinstance(event, ex.ExperimentCreated):
            ops.append(
                [
                    "ec",
                    keys(c.experiment_state_key(prefix, event.experiment_id)),
                    1,
                    event.experiment_id,
                    keys(c.experiment_name_key(prefix, event.name)),
                    int(event.name in absent.names),
                    event.name,
                    event.artifact_location,
                ]
            )
        elif isinstance(event, mo.LOGGED_MODEL_EVENT_TYPES):
            continue  # checked by ingest.logged_models: a model, once created, exists for good
        elif isinstance(event, ex.ExperimentRenamed):
            ops.append(
                [
                    "er",
                    keys(c.experiment_state_key(prefix, event.experiment_id)),
                    int(event.experiment_id in absent.experiments),
                    event.experiment_id,
                    keys(c.experiment_name_key(prefix, event.name)),
                    int(event.name in absent.names),
                    event.name,
                ]
            )
        else:
            experiment_id: str = event.experiment_id  # type: ignore[union-attr]
            ops.append(
                [
                    _EXPERIMENT_OPS[type(event)],
                    keys(c.experiment_state_key(prefix, experiment_id)),
                    int(experiment_id in absent.experiments),
                    experiment_id,
                ]
            )
    header = {
        "ttl": c.WRITE_MODEL_TTL_SECONDS,
        "idem": int(bool(idempotency_key)),
        "idem_ttl": c.IDEMPOTENCY_TTL_SECONDS,
        "dexp": list(deleted_experiments),
        "dset": c.deleted_experiments_key(prefix),
        "nprefix": c.experiment_name_key(prefix, ""),
        "dry": int(dry),
        "ops": ops,
    }
    return keys.keys, msgpack.packb(header, use_bin_type=False)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_reply(reply: Sequence[Any]) -> Appended | Missing:
    """The script's answer; its refusals raise the error MLflow gives for the same case."""
    status = _text(reply[0])
    if status == "ok":
        return Appended(tuple(_text(r) for r in reply[1:]))
    if status == "dup":
        return Appended(tuple(_text(reply[1]).split(",")), duplicate=True)
    if status == "missing":
        runs, exps, names = (tuple(_text(x) for x in part) for part in reply[1:4])
        return Missing(runs, exps, names)
    if status == "err":
        raise refusal(_text(reply[1]), [_text(r) for r in reply[2:]])
    raise RuntimeError(f"unexpected reply from the append script: {reply!r}")


def refusal(code: str, args: list[str]) -> RunstreamError:
    """MLflow's error for a write-side refusal (``sqlalchemy_store`` wording)."""
    if code == "run_missing":
        return ResourceDoesNotExist(f"Run with id={args[0]} not found")
    if code == "run_deleted":
        return InvalidParameterValue(
            f"The run {args[0]} must be in the 'active' state. Current state is deleted."
        )
    if code == "run_exists":
        return ResourceAlreadyExists(f"Run with id={args[0]} already exists")
    if code == "param_conflict":
        # The script says whether the event held one param (log-parameter's wording) or more.
        run_id, single, rest = args[0], args[1] == "1", args[2:]
        triples = [(rest[i], rest[i + 1], rest[i + 2]) for i in range(0, len(rest), 3)]
        return ParamValueConflict(run_id, triples, batch=not single)
    if code == "exp_missing":
        return ResourceDoesNotExist(f"No Experiment with id={args[0]} exists")
    if code == "exp_deleted":
        return InvalidParameterValue(
            f"The experiment {args[0]} must be in the 'active' state. Current state is deleted."
        )
    if code == "exp_rename_inactive":
        return InvalidState("Cannot rename a non-active experiment.")
    if code == "name_exists":
        return ResourceAlreadyExists(f"Experiment(name={args[0]}) already exists.")
    if code == "rename_exists":
        # MLflow's SQL store surfaces the unique-index violation as BAD_REQUEST.
        return BadRequest(f"Experiment(name={args[0]}) already exists.")
    return RunstreamError(f"write refused: {code} {args}")
