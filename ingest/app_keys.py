"""Typed app keys of the ingest room (apart, so handlers and app import them without a cycle)."""

from __future__ import annotations

from aiohttp import web

from runstream.ingest.ingestor import Ingestor

INGESTOR = web.AppKey("ingestor", Ingestor)
