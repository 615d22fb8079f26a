"""After fork(): the child gets an empty buffer and its own lock; the parent keeps its own."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runstream.client import lifecycle
from runstream.client.buffer import MetricGroup
from runstream.client.config import ClientConfig
from runstream.client.run import Run

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


def points(run: Run) -> dict[str, list[list[float]]]:
    items, _ = run._buffer.take()
    out: dict[str, list[list[float]]] = {}
    for item in items:
        if isinstance(item, MetricGroup):
            for key, steps, _stamps, values in item.columns:
                out.setdefault(key, []).extend([s, v] for s, v in zip(steps, values, strict=True))
    return out


def test_child_buffer_is_fresh(tmp_path: Path) -> None:
    config = ClientConfig(url="http://127.0.0.1:9", spool_dir=tmp_path, flush_interval=60)
    run = Run("f" * 32, config, experiment_id="1")
    lifecycle.track(run)
    try:
        run.log({"a": 1.0})
        run.log({"a": 2.0})
        parent_lock = run._buffer.lock
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            try:
                report = {
                    "pending_at_start": run._buffer.pending_points,
                    "new_lock": run._buffer.lock is not parent_lock,
                    "no_sender": run._sender is None,
                }
                run.log({"a": 30.0})
                run.log({"b": 40.0})
                report["sender_started"] = run._sender is not None
                report["points"] = points(run)
                report["logged"] = run.stats().points_logged
                os.write(write, json.dumps(report).encode())
            finally:
                os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        child = json.loads(os.read(read, 1 << 16))
        os.close(read)
        assert status == 0
        assert child["pending_at_start"] == 0 and child["new_lock"] and child["no_sender"]
        assert child["sender_started"]
        # The child's own points only; its auto steps carry on from the parent's counters.
        assert child["points"] == {"a": [[2, 30.0]], "b": [[0, 40.0]]}
        assert child["logged"] == 2
        # The parent keeps its points and its lock.
        assert run._buffer.lock is parent_lock
        assert points(run) == {"a": [[0, 1.0], [1, 2.0]]}
    finally:
        run.finish(timeout=0)
    assert run.finished
