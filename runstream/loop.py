"""The event loop every server process runs on: uvloop where it is installed.

The ``[server]`` extra installs uvloop on Linux and macOS. Profiles of an MLflow call showed
most of runstream's per-request cost in the asyncio loop's own machinery (scheduling
callbacks, timers, socket reads and writes); libuv's loop does that work in C (issue 12,
docs/performance.md). Without uvloop (Windows, a bare install) asyncio's loop is used and
nothing else changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on a uvloop loop when uvloop is importable."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
