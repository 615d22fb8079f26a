"""Client processes for benchmarks: each a fresh interpreter, as a training script is.

Workloads hand a module-level function and its arguments to ``in_processes`` (concurrent,
one process each; ``in_processes_lined_up`` also lines their measured phases up) or to a
``ClientProcesses`` (one reused process per server: importing ``mlflow`` costs seconds on a
busy machine). Children print nothing on stdout, which carries the JSON lines of results;
every wait is bounded by ``CHILD_TIMEOUT``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

CHILD_TIMEOUT = 1800.0
"""Longest a client process may take before the workload gives up (seconds)."""

Child = Callable[..., dict[str, Any]]


def pool(processes: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        processes, mp_context=multiprocessing.get_context("spawn"), initializer=quiet_child
    )


def quiet_child() -> None:
    """Silence a client process's stdout (the mlflow client prints "View run ..." lines)."""
    import logging

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def in_processes(fn: Child, calls: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Run ``fn(*args)`` for each args tuple, each in its own fresh process, concurrently."""
    with children_returned(fn, calls) as outs:
        return outs


@contextlib.contextmanager
def children_returned(
    fn: Child, calls: Sequence[tuple[Any, ...]], *, lined_up: bool = False
) -> Iterator[list[dict[str, Any]]]:
    """``in_processes``, yielding the children's results as soon as all have returned.

    The processes exit after the ``with`` block: a workload that times what follows its
    children (their points becoming queryable) must not count their exit, which takes ~0.7 s
    with Ray imported. ``lined_up=True`` calls each child as ``fn(*args, folder, parties)``:
    a child calls ``barrier(folder, parties)`` where its measured phase begins, so that all
    start it together (the barrier's folder is removed afterwards).
    """
    folder = tempfile.mkdtemp(prefix="rs-bench-barrier-") if lined_up else None
    if folder is not None:
        calls = [(*args, folder, len(calls)) for args in calls]
    try:
        with pool(len(calls)) as executor:
            futures = [executor.submit(fn, *args) for args in calls]
            yield [f.result(timeout=CHILD_TIMEOUT) for f in futures]
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def in_processes_lined_up(fn: Child, calls: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """``in_processes`` with the children's measured phases lined up by ``barrier``."""
    with children_returned(fn, calls, lined_up=True) as outs:
        return outs


def barrier(folder: str, parties: int, timeout: float = 600.0) -> None:
    """Wait until ``parties`` client processes reached this point (a file each in
    ``folder``), so that their measured phases overlap: spawning a process and importing
    ``mlflow`` takes seconds, unevenly, on a busy machine."""
    Path(folder, f"{os.getpid()}-{uuid.uuid4().hex}").touch()
    deadline = time.monotonic() + timeout
    while len(os.listdir(folder)) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"barrier: {len(os.listdir(folder))} of {parties} arrived")
        time.sleep(0.005)


def mlflow_env(url: str) -> None:
    """Point this (child) process's mlflow client at ``url``, telemetry off, few retries."""
    os.environ["MLFLOW_TRACKING_URI"] = url
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    import mlflow

    mlflow.set_tracking_uri(url)  # the client process is reused from one workload to the next


class ClientProcesses:
    """One client process per key (a server URL), reused by sequential calls."""

    def __init__(self) -> None:
        self._pools: dict[str, ProcessPoolExecutor] = {}

    def run(self, key: str, child: Child, *args: Any) -> dict[str, Any]:
        executor = self._pools.get(key)
        if executor is None:
            executor = self._pools[key] = pool(1)
        out: dict[str, Any] = executor.submit(child, *args).result(timeout=CHILD_TIMEOUT)
        return out

    def close(self) -> None:
        for executor in self._pools.values():
            executor.shutdown(cancel_futures=True)

    def __enter__(self) -> ClientProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
