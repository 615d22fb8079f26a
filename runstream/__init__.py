"""runstream: event-sourced, MLflow-compatible experiment tracking built for high-frequency logging.

The training-side SDK::

    import runstream

    with runstream.start_run(experiment="mnist", params={"lr": 0.01}) as run:
        for step in range(1000):
            run.log({"loss": loss, "acc": acc})

``run.log`` does no I/O: points go to an in-memory columnar buffer that a background thread
sends in msgpack batches. ``runstream.Client`` reads runs and metric histories back.
Importing ``runstream`` loads no server code (no aiohttp, asyncpg or redis).
"""

__version__ = "0.1.0"

from runstream.client.config import ClientConfig
from runstream.client.reader import Client, History
from runstream.client.run import Run, RunStats, init, start_run
from runstream.client.spool import SyncResult, sync_spool
from runstream.client.transport import HTTPError

__all__ = [
    "Client",
    "ClientConfig",
    "HTTPError",
    "History",
    "Run",
    "RunStats",
    "SyncResult",
    "__version__",
    "init",
    "start_run",
    "sync_spool",
]
