"""``python -m runstream.projector``: a standalone projector configured by RUNSTREAM_* variables.

SIGTERM or SIGINT stops it cleanly: each shard finishes (commits and acknowledges) the batch
it is applying, the leases are released, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from runstream.loop import run_loop
from runstream.projector.service import run_projector
from runstream.schemas.errors import ConfigurationError
from runstream.settings import Settings


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stats = await run_projector(settings, stop)
    logging.getLogger("runstream.projector").info(
        "applied %d entries, %d points; %d duplicates skipped, %d dead letters",
        stats.entries,
        stats.points,
        stats.duplicates,
        stats.dead,
        extra={"action": "projector_stop"},
    )


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:
        print(f"runstream projector: {exc.message}", file=sys.stderr)
        return 2
    if not settings.database_url or not settings.redis_url:
        print(
            "runstream projector: set RUNSTREAM_DATABASE_URL and RUNSTREAM_REDIS_URL "
            "(or run `runstream server` for the embedded stores)",
            file=sys.stderr,
        )
        return 2
    run_loop(_main(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
