"""Ingest: validate writes, check them against the write-side model, append to the stream."""

from __future__ import annotations

from runstream.ingest.app import create_app, setup, use_ingestor
from runstream.ingest.app_keys import INGESTOR
from runstream.ingest.ingestor import Ingestor
from runstream.ingest.watermarks import WATERMARKS, WatermarkWaiter, use_watermarks

__all__ = [
    "INGESTOR",
    "WATERMARKS",
    "Ingestor",
    "WatermarkWaiter",
    "create_app",
    "setup",
    "use_ingestor",
    "use_watermarks",
]
