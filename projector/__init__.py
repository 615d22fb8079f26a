"""The projector: applies stream entries to PostgreSQL read tables, exactly once, in order.

``setup(app, settings)`` runs it inside an aiohttp app; ``run_projector`` runs it standalone
(``python -m runstream.projector``); ``replay`` rebuilds the read tables from the event log.
"""

from __future__ import annotations

from runstream.projector.replay import replay
from runstream.projector.service import Projector, project_until_idle, run_projector, setup

__all__ = ["Projector", "project_until_idle", "replay", "run_projector", "setup"]
