"""Which shard an event goes to, and the write tokens readers wait on."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from runstream.schemas.constants import EXPERIMENT_SHARD
from runstream.schemas.errors import InvalidParameterValue


def shard_of_run(run_id: str, shards: int) -> int:
    """Stable across processes and restarts (unlike ``hash``): all of a run's events meet here."""
    return zlib.crc32(run_id.encode()) % shards


def shard_of_experiment(experiment_id: str, shards: int) -> int:
    return EXPERIMENT_SHARD


def parse_entry_id(entry_id: str | bytes) -> tuple[int, int]:
    """Redis stream id ``"<ms>-<seq>"`` as a pair that orders like the stream."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_entry_id(pair: tuple[int, int]) -> str:
    return f"{pair[0]}-{pair[1]}"


@dataclass(frozen=True, slots=True)
class WriteToken:
    """The stream positions a write reached; a read may wait until each shard's watermark passes.

    Text form: ``"<shard>:<ms>-<seq>"`` joined by ``","``, e.g. ``"3:1700000000000-0"``.
    """

    positions: tuple[tuple[int, tuple[int, int]], ...]

    def __str__(self) -> str:
        return ",".join(f"{shard}:{format_entry_id(pos)}" for shard, pos in self.positions)

    @classmethod
    def parse(cls, text: str) -> WriteToken:
        positions = []
        try:
            for part in filter(None, text.split(",")):
                shard, _, entry = part.partition(":")
                positions.append((int(shard), parse_entry_id(entry)))
        except ValueError as exc:
            raise InvalidParameterValue(f"Invalid write token {text!r}") from exc
        return cls(tuple(positions))

    def merged(self, other: WriteToken) -> WriteToken:
        best: dict[int, tuple[int, int]] = dict(self.positions)
        for shard, pos in other.positions:
            if shard not in best or pos > best[shard]:
                best[shard] = pos
        return WriteToken(tuple(sorted(best.items())))


def shard_of_model(model_id: str, shards: int) -> int:
    """All of a logged model's own events meet here (metrics a run logs to it go with the run)."""
    return zlib.crc32(model_id.encode()) % shards
