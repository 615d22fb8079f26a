"""runstream: event-sourced, MLflow-compatible experiment tracking built for high-frequency logging."""

__version__ = "0.1.0"
