"""One ``Sender`` per server URL per process, created on first use and forgotten by fork."""

from __future__ import annotations

import threading

from runstream.client.config import ClientConfig
from runstream.client.sender import Sender

_registry: dict[str, Sender] = {}
_lock = threading.Lock()


def sender_for(config: ClientConfig) -> Sender:
    """The process's sender for ``config.url``; a new one once the last has stopped."""
    with _lock:
        sender = _registry.get(config.url)
        if sender is None or sender.stopping:
            sender = _registry[config.url] = Sender(config)
        return sender


def live_senders() -> list[Sender]:
    """Senders that have not stopped (to wake them on a signal)."""
    with _lock:
        return [s for s in _registry.values() if not s.stopping]


def reset_after_fork() -> None:
    """In a forked child: forget the parent's senders (their threads do not exist here)."""
    global _lock
    _lock = threading.Lock()
    for sender in _registry.values():
        sender.after_fork_child()
    _registry.clear()
