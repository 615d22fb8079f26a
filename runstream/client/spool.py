"""The local spool: batches that could not be sent yet, as files, resent later.

Layout under the spool directory (``RUNSTREAM_SPOOL_DIR``, else ``~/.runstream/spool``)::

    w-<host>-<pid>-<random>/       one writer (a process's sender), numbered files in order
        .lock                      held (flock) by the writer while it lives
        000000000001.rsb           one batch: msgpack map, see ``write_batch``
    rejected/                      batches the server refused with a 4xx, kept for inspection
        <ms>-<idempotency key>.rsb with the server's error in "error"

A writer directory whose lock is free belongs to a process that is gone (it ended, crashed,
or finished its runs with data still unsent): ``sync_spool`` (``runstream sync``) or the
sender of a later run takes it over, sends its files in order and deletes each one after the
server acknowledged it. A batch keeps its ``Idempotency-Key``, so a file sent twice (its
sender died between the answer and the delete) is appended once.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from runstream.client.batches import Batch
from runstream.client.config import ClientConfig, default_spool_dir
from runstream.client.delivery import backoff, merge_tokens, post_events
from runstream.client.transport import Transport

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no ownership checks
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

SPOOL_FORMAT = 1
SUFFIX = ".rsb"
REJECTED = "rejected"
LOCK = ".lock"


@dataclass(slots=True)
class SpooledBatch:
    """A batch read back from a spool file."""

    path: Path
    url: str
    run_id: str
    idempotency_key: str
    events: list[dict[str, Any]]
    points: int
    experiment_name: str | None
    created: int
    error: str | None = None
    started_in: str | None = None


def batch_record(batch: Batch, url: str, error: str | None = None) -> dict[str, Any]:
    return {
        "v": SPOOL_FORMAT,
        "url": url,
        "run_id": batch.run_id,
        "idempotency_key": batch.idempotency_key,
        "experiment_name": batch.experiment_name,
        "started_in": batch.started_in,
        "points": batch.points,
        "created": time.time_ns() // 1_000_000,
        "events": batch.events,
        "error": error,
    }


def write_file(path: Path, record: dict[str, Any]) -> None:
    """Write atomically (temporary file, fsync, rename): a reader never sees half a batch."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        f.write(msgpack.packb(record, use_bin_type=True))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_file(path: Path) -> SpooledBatch:
    """One spool file; raises ``ValueError`` when it is not a spooled batch."""
    try:
        record = msgpack.unpackb(path.read_bytes(), raw=False)
    except Exception as exc:
        raise ValueError(f"{path}: not a spool file ({exc})") from exc
    if not isinstance(record, dict) or record.get("v") != SPOOL_FORMAT:
        raise ValueError(f"{path}: not a spool file of format {SPOOL_FORMAT}")
    return SpooledBatch(
        path=path,
        url=str(record["url"]),
        run_id=str(record["run_id"]),
        idempotency_key=str(record["idempotency_key"]),
        events=list(record["events"]),
        points=int(record.get("points", 0)),
        experiment_name=record.get("experiment_name"),
        created=int(record.get("created", 0)),
        error=record.get("error"),
        started_in=record.get("started_in"),
    )


def reject_file(spool_dir: Path, batch: Batch, url: str, error: str) -> Path:
    """Keep a batch the server refused under ``rejected/``, with the server's error."""
    folder = spool_dir / REJECTED
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.time_ns() // 1_000_000}-{batch.idempotency_key}{SUFFIX}"
    write_file(path, batch_record(batch, url, error))
    return path


def _try_lock(fd: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class SpoolWriter:
    """A writer directory owned by this process while it is open; files numbered in order."""

    def __init__(self, spool_dir: Path) -> None:
        self.spool_dir = spool_dir
        name = f"w-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path = spool_dir / name
        self._fd: int | None = None
        self._next = 1

    def _open(self) -> None:
        if self._fd is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
            _try_lock(self._fd)

    def write(self, batch: Batch, url: str) -> Path:
        """Spool a batch (which must still hold its events); the next file in order."""
        self._open()
        path = self.path / f"{self._next:012d}{SUFFIX}"
        self._next += 1
        write_file(path, batch_record(batch, url))
        return path

    def close(self) -> None:
        """Give the directory up: remove it when empty, else leave it to ``sync_spool``."""
        if self._fd is None:
            return
        try:
            if not any(self.path.glob("*" + SUFFIX)):
                os.unlink(self.path / LOCK)
                self.path.rmdir()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def forget(self) -> None:
        """In a forked child: drop the parent's directory without releasing its lock."""
        if self._fd is not None:
            os.close(self._fd)  # closing a dup of the flock'ed description keeps the lock
        self._fd = None
        name = f"w-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path = self.spool_dir / name
        self._next = 1


class ClaimedDir:
    """A writer directory of a process that is gone, locked by us until ``release``."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    def files(self) -> list[Path]:
        return sorted(self.path.glob("*" + SUFFIX))

    def release(self) -> None:
        try:
            if not self.files():
                os.unlink(self.path / LOCK)
                self.path.rmdir()
        except OSError:
            pass
        os.close(self._fd)


def claim_orphans(spool_dir: Path, skip: Path | None = None) -> Iterator[ClaimedDir]:
    """Writer directories whose owner is gone, each locked while the caller holds it."""
    if not spool_dir.is_dir():
        return
    for path in sorted(spool_dir.glob("w-*")):
        if path == skip or not path.is_dir():
            continue
        try:
            fd = os.open(path / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError:
            continue
        if not _try_lock(fd):
            os.close(fd)
            continue
        yield ClaimedDir(path, fd)


@dataclass(slots=True)
class SyncResult:
    """What ``sync_spool`` did."""

    batches_sent: int = 0
    points_sent: int = 0
    batches_rejected: int = 0
    """Refused by the server (4xx); moved to ``rejected/`` with the error."""
    batches_pending: int = 0
    """Left in the spool: the server could not be reached, or the directory is in use."""
    busy_dirs: int = 0
    """Writer directories skipped because their process is still alive and sending."""
    errors: list[str] = field(default_factory=list)
    token: str = ""
    """Write token covering every batch sent: pass it as ``wait_for`` to ``Client`` reads."""

    @property
    def ok(self) -> bool:
        """True when nothing is left to send and nothing was refused."""
        return self.batches_pending == 0 and self.batches_rejected == 0


def sync_spool(
    url: str | None = None,
    spool_dir: Path | None = None,
    *,
    attempts: int = 5,
    max_backoff: float = 10.0,
) -> SyncResult:
    """Send every spooled batch whose process is gone, oldest first, and delete it once sent.

    ``url`` sends everything to that server instead of the URL each batch was logged for
    (a server that moved). ``spool_dir`` defaults to ``RUNSTREAM_SPOOL_DIR`` or
    ``~/.runstream/spool``. Each batch is tried up to ``attempts`` times (honouring
    ``Retry-After``); when a batch still cannot be sent, the rest of its directory is left
    for the next sync so that the batches of a run stay in order. A batch the server refuses
    (4xx) is moved to ``rejected/`` with the error and not retried. Directories of live
    processes are skipped (``busy_dirs``): their own sender is still working on them.
    Resending is safe: every batch carries the ``Idempotency-Key`` it was first sent with.
    This is what ``runstream sync`` runs.

    A run's creation goes first, wherever it was spooled: a batch of a run the server does
    not know yet waits (with the rest of its directory) while other directories are sent,
    one of which may create it; what still waits after a round that sent nothing is left
    pending, with an error that says why. A run created in an experiment (by name) whose id
    the server does not have (a new server) is created in the experiment of that name there.
    """
    folder = spool_dir if spool_dir is not None else default_spool_dir()
    result = SyncResult()
    if not folder.is_dir():
        return result
    config = ClientConfig.from_env(url)
    transports: dict[str, Transport] = {}
    down: set[str] = set()
    all_dirs = [p for p in folder.glob("w-*") if p.is_dir()]
    claimed = list(claim_orphans(folder))
    result.busy_dirs = len(all_dirs) - len(claimed)
    try:
        waiting = claimed
        while waiting:
            sent_before = result.batches_sent
            unknown_runs: list[tuple[ClaimedDir, int, str]] = []
            for claim in waiting:
                files = claim.files()
                for index, path in enumerate(files):
                    outcome = _sync_file(
                        path, url, folder, transports, down, config, attempts, max_backoff
                    )
                    if outcome is None:
                        result.batches_pending += len(files) - index
                        break
                    kind, points, text = outcome
                    if kind == "unknown_run":
                        unknown_runs.append((claim, len(files) - index, text))
                        break
                    if kind == "ok":
                        result.token = merge_tokens(result.token, text)
                        result.batches_sent += 1
                        result.points_sent += points
                    else:
                        result.batches_rejected += 1
                        result.errors.append(text)
            if result.batches_sent == sent_before:
                for _, left, text in unknown_runs:
                    result.batches_pending += left
                    result.errors.append(text)
                    logger.warning("runstream: %s", text, extra={"action": "spool_unknown_run"})
                break
            waiting = [claim for claim, _, _ in unknown_runs]
    finally:
        for claim in claimed:
            claim.release()
        for transport in transports.values():
            transport.close()
    return result


def _sync_file(
    path: Path,
    url: str | None,
    folder: Path,
    transports: dict[str, Transport],
    down: set[str],
    config: ClientConfig,
    attempts: int,
    max_backoff: float,
) -> tuple[str, int, str] | None:
    """``(kind, points, token or error)``, or None when the batch is left in the spool.

    ``kind`` is ``ok``, ``reject``, or ``unknown_run``: the server does not know the run of
    a batch that does not create it (left in place; its creation may come later).
    """
    try:
        spooled = read_file(path)
    except FileNotFoundError:
        return ("ok", 0, "")
    except ValueError as exc:
        logger.error("runstream: %s", exc, extra={"action": "spool_bad_file"})
        bad = folder / REJECTED
        bad.mkdir(parents=True, exist_ok=True)
        os.replace(path, bad / path.name)
        return ("reject", 0, str(exc))
    target = (url or spooled.url).rstrip("/")
    if target in down:
        return None
    transport = transports.get(target)
    if transport is None:
        transport = transports[target] = Transport(
            target, config.request_timeout, dict(config.headers)
        )
    experiment_name = spooled.experiment_name
    for attempt in range(attempts):
        outcome = post_events(
            transport,
            spooled.events,
            spooled.idempotency_key,
            config.compress_min_bytes,
            experiment_name,
        )
        if outcome.kind == "ok":
            path.unlink(missing_ok=True)
            return ("ok", spooled.points, outcome.token)
        if outcome.kind == "reject" and outcome.error_code == "RESOURCE_DOES_NOT_EXIST":
            creates = _created_experiment(spooled.events)
            if creates is None:
                return (
                    "unknown_run",
                    0,
                    f"{target} has no run {spooled.run_id} and no spooled batch created it: "
                    f"it was created on another server, or by a process still running or "
                    f"whose spool is elsewhere; {path} is left in the spool",
                )
            if creates and spooled.started_in is not None and experiment_name is None:
                # A new server: the run's experiment id is another server's. Create the
                # run in the experiment it was started in by name, as start_run would have.
                logger.warning(
                    "runstream: %s has no experiment %s; creating run %s in experiment %r",
                    target,
                    creates,
                    spooled.run_id,
                    spooled.started_in,
                    extra={"action": "spool_new_experiment"},
                )
                _clear_experiment(spooled.events)
                experiment_name = spooled.started_in
                continue
        if outcome.kind == "reject":
            batch = Batch(
                spooled.run_id,
                spooled.events,
                spooled.points,
                len(spooled.events),
                0,
                spooled.idempotency_key,
                spooled.experiment_name,
            )
            reject_file(folder, batch, spooled.url, outcome.error)
            path.unlink(missing_ok=True)
            logger.error(
                "runstream: server refused spooled batch %s: %s",
                path,
                outcome.error,
                extra={"action": "spool_rejected"},
            )
            return ("reject", 0, outcome.error)
        if attempt + 1 < attempts:
            delay = outcome.retry_after
            time.sleep(min(max_backoff, delay if delay is not None else backoff(attempt, 5.0)))
    down.add(target)
    logger.warning(
        "runstream: could not send %s, left in the spool", path, extra={"action": "spool_retry"}
    )
    return None


def _created_experiment(events: list[dict[str, Any]]) -> str | None:
    """The experiment id of the batch's ``run_created`` ("" when unresolved), or None when
    the batch creates no run."""
    for event in events:
        if event.get("type") == "run_created":
            return str(event.get("experiment_id") or "")
    return None


def _clear_experiment(events: list[dict[str, Any]]) -> None:
    for event in events:
        if event.get("type") == "run_created":
            event["experiment_id"] = ""
