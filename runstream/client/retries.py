"""When the sender may try again: exponential backoff after failures, or the server's
``Retry-After`` (429/503), which a ``flush`` does not cut short.

Only the sender thread records failures and successes; ``hurry`` comes from threads that
flush. Each is a single attribute write, so the worst race sends one request early.
"""

from __future__ import annotations

import time

from runstream.client.delivery import backoff

MAX_RETRY_AFTER = 60.0
"""Longest ``Retry-After`` honoured, in seconds (a bad header must not stall a run)."""


class RetryClock:
    def __init__(self, max_backoff: float) -> None:
        self.max_backoff = max_backoff
        self.failing = 0
        """Consecutive failed attempts."""
        self._retry_at = 0.0
        self._server_asked = False

    def failed(self, retry_after: float | None) -> float:
        """Record a failed attempt; the seconds to wait before the next."""
        self.failing += 1
        if retry_after is not None:
            delay = min(retry_after, MAX_RETRY_AFTER)
        else:
            delay = backoff(self.failing, self.max_backoff)
        self._retry_at = time.monotonic() + delay
        self._server_asked = retry_after is not None
        return delay

    def succeeded(self) -> bool:
        """Record a delivery; True when it ends a run of failures."""
        was_failing = self.failing > 0
        self.failing = 0
        return was_failing

    def wait_left(self) -> float:
        """Seconds until the next attempt may go (<= 0: now)."""
        return self._retry_at - time.monotonic()

    def hurry(self) -> None:
        """Try now rather than after a long backoff, unless the server asked for the wait."""
        if not self._server_asked:
            self._retry_at = 0.0
