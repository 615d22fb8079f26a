"""Telling the user once that no server answers, where the data waits meanwhile.

A training script whose server is down keeps running (nothing raises into the loop), so the
only sign would be a log line, and most scripts configure no logging. The notice therefore
goes to the ``runstream`` loggers when any handler would show it, else through ``warnings``
(printed on stderr once by Python's default filter): one visible message either way, never
both. It is given once per server URL per process.
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)


class ServerUnreachableWarning(UserWarning):
    """No runstream server answered at the configured URL; data is kept and sent later."""


_told: set[str] = set()
_lock = threading.Lock()


def no_server(url: str, spool_dir: Path, error: str, stacklevel: int = 2) -> bool:
    """Say that ``url`` does not answer and where the data waits; False if already said."""
    with _lock:
        if url in _told:
            return False
        _told.add(url)
    message = (
        f"runstream: no server answers at {url} ({error}). Logging goes on: the data waits "
        f"in memory, then in the spool folder {spool_dir}, and is sent when the server "
        f"answers, or by `runstream sync` once it does."
    )
    if logger.hasHandlers():
        logger.warning(message, extra={"action": "server_unreachable"})
    else:
        warnings.warn(message, ServerUnreachableWarning, stacklevel=stacklevel + 1)
    return True


def forget(url: str) -> None:
    """The server at ``url`` answered: say so again if it stops answering."""
    with _lock:
        _told.discard(url)
