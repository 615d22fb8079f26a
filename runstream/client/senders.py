"""One ``Sender`` per server URL and credentials per process; forgotten by fork."""

from __future__ import annotations

import threading

from runstream.client.config import ClientConfig
from runstream.client.sender import Sender

SenderKey = tuple[str, tuple[tuple[str, str], ...]]

_registry: dict[SenderKey, Sender] = {}
_lock = threading.Lock()


def _sender_key(config: ClientConfig) -> SenderKey:
    # Runs that send different credentials (tokens of two users) must not share a sender.
    return config.url, tuple(sorted(config.headers.items()))


def sender_for(config: ClientConfig) -> Sender:
    """The process's sender for ``config.url`` and its credentials; a new one once the last
    has stopped."""
    key = _sender_key(config)
    with _lock:
        sender = _registry.get(key)
        if sender is None or sender.stopping:
            sender = _registry[key] = Sender(config)
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
