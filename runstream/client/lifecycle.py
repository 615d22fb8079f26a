"""Process lifecycle: exit, signals and ``fork()``, installed once by the first run.

- Exit (``atexit``): every run still open is finished within ``RUNSTREAM_FLUSH_TIMEOUT``
  in total (``FAILED`` after an uncaught exception, ``KILLED`` after SIGTERM/SIGINT, else
  ``FINISHED``); what is not delivered by then is spooled.
- SIGTERM: when the previous handler is the default one, ``SystemExit(143)`` is raised in the
  main thread so that ``with`` blocks and ``finally`` clauses run and the exit hook delivers;
  a handler installed before runstream is called instead, and ``SIG_IGN`` stays ignored.
  SIGINT keeps Python's ``KeyboardInterrupt``. Handlers are only installed from the main
  thread.
- ``fork()``: the child gets empty buffers, fresh locks and its own sender thread on its first
  point; the parent keeps its own. Runs inherited by the child are only flushed there, never
  finished.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType, TracebackType
from typing import Any, Protocol

from runstream.client import senders
from runstream.client.config import ClientConfig

logger = logging.getLogger(__name__)


class Run(Protocol):
    """What the hooks need of a run (``runstream.client.run.Run``), without importing it:
    ``run`` tracks itself here, so importing it back would make a cycle."""

    _config: ClientConfig

    @property
    def run_id(self) -> str: ...

    def finish(self, status: str = "FINISHED", timeout: float | None = None) -> bool: ...

    def _after_fork_child(self) -> None: ...


_runs: dict[str, Run] = {}
_lock = threading.Lock()
_installed_pid: int | None = None
_previous: dict[int, Any] = {}
_state: dict[str, Any] = {"uncaught": None, "signal": None}


def track(run: Run) -> None:
    """Keep ``run`` until it is finished, and install the hooks (once per process)."""
    with _lock:
        _runs[run.run_id] = run
    _install()


def forget(run: Run) -> None:
    with _lock:
        _runs.pop(run.run_id, None)


def open_runs() -> list[Run]:
    with _lock:
        return list(_runs.values())


def _install() -> None:
    global _installed_pid
    if _installed_pid is not None:
        return
    _installed_pid = os.getpid()
    atexit.register(finish_all)
    os.register_at_fork(after_in_child=_after_fork_child)
    previous_hook = sys.excepthook

    def excepthook(
        kind: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        _state["uncaught"] = kind
        previous_hook(kind, value, tb)

    sys.excepthook = excepthook
    # multiprocessing children leave through os._exit, skipping atexit, and clear the
    # finalizers they inherit before running the after-fork hooks registered here.
    from multiprocessing import util

    util.register_after_fork(_MP_ANCHOR, _register_mp_finalizer)
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                _previous[signum] = signal.getsignal(signum)
                signal.signal(signum, _on_signal)
            except (ValueError, OSError):  # not the main interpreter, or no such signal
                _previous.pop(signum, None)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    previous = _previous.get(signum)
    _state["signal"] = signum
    for sender in senders.live_senders():
        sender.wake()  # start draining while the stack unwinds
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    raise SystemExit(128 + signum)


def _exit_status() -> str:
    uncaught = _state["uncaught"]
    if _state["signal"] is not None or (
        uncaught is not None and issubclass(uncaught, KeyboardInterrupt)
    ):
        return "KILLED"
    if uncaught is not None:
        return "FAILED"
    return "FINISHED"


def finish_all(timeout: float | None = None) -> None:
    """Finish every open run within ``timeout`` seconds in total (the exit hook)."""
    runs = open_runs()
    if not runs:
        return
    budget = timeout if timeout is not None else max(r._config.flush_timeout for r in runs)
    deadline = time.monotonic() + budget
    status = _exit_status()
    for run in runs:
        try:
            run.finish(status, timeout=max(0.0, deadline - time.monotonic()))
        except Exception:
            logger.exception("runstream: finishing run %s at exit failed", run.run_id)


def _after_fork_child() -> None:
    global _lock
    _lock = threading.Lock()
    senders.reset_after_fork()
    for run in list(_runs.values()):
        run._after_fork_child()


class _Anchor:
    """A weak-referenceable object for ``multiprocessing.util.register_after_fork``."""


_MP_ANCHOR = _Anchor()


def _register_mp_finalizer(_: object) -> None:
    from multiprocessing import util

    util.Finalize(None, finish_all, exitpriority=100)
