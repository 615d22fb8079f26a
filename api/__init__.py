"""Read side: experiment and run views, metric history, health; MLflow routes reuse the views."""

from __future__ import annotations

from runstream.api.app import create_app, setup

__all__ = ["create_app", "setup"]
