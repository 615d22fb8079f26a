"""Adopting spool directories left by processes that are gone: their batches are sent by the
next sender for the same server when it is idle, as ``runstream sync`` would send them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from runstream.client.batches import Batch
from runstream.client.config import ClientConfig
from runstream.client.delivery import post_events
from runstream.client.spool import claim_orphans, read_file, reject_file
from runstream.client.transport import Transport

CHECK_SECONDS = 60.0
"""How often an idle sender looks for orphaned directories (and pauses after a failure)."""


class OrphanAdopter:
    def __init__(self, config: ClientConfig, transport: Transport, own_dir: Callable[[], Path]):
        self.config = config
        self.transport = transport
        self._own_dir = own_dir
        self._next_check = 0.0
        self._other_servers: set[str] = set()
        """Directories whose batches were logged for another URL: left to their sender."""

    def adopt(self, interrupted: Callable[[], bool]) -> bool:
        """Send the files of the orphaned directories, oldest first, until ``interrupted()``;
        True when it did any work (the caller then loops without waiting)."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        worked = False
        for claim in claim_orphans(self.config.spool_dir, skip=self._own_dir()):
            try:
                if str(claim.path) in self._other_servers:
                    continue
                for path in claim.files():
                    if interrupted():
                        return True
                    try:
                        spooled = read_file(path)
                    except (OSError, ValueError):
                        continue
                    if spooled.url.rstrip("/") != self.config.url:
                        self._other_servers.add(str(claim.path))
                        break
                    worked = True
                    outcome = post_events(
                        self.transport,
                        spooled.events,
                        spooled.idempotency_key,
                        self.config.compress_min_bytes,
                        spooled.experiment_name,
                    )
                    if outcome.kind == "ok":
                        path.unlink(missing_ok=True)
                    elif outcome.kind == "reject":
                        batch = Batch(
                            spooled.run_id,
                            spooled.events,
                            spooled.points,
                            len(spooled.events),
                            0,
                            spooled.idempotency_key,
                        )
                        reject_file(self.config.spool_dir, batch, spooled.url, outcome.error)
                        path.unlink(missing_ok=True)
                    else:
                        self._next_check = now + CHECK_SECONDS
                        return True
            finally:
                claim.release()
        self._next_check = now + CHECK_SECONDS
        return worked
