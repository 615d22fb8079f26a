"""docs/mlflow-compatibility.md names every route of MLflow's server, served or not.

When a new ``mlflow`` grows a route, this fails until the page says what runstream does
with it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "mlflow-compatibility.md"


def test_every_mlflow_route_is_on_the_compatibility_page() -> None:
    handlers = pytest.importorskip("mlflow.server.handlers")
    text = PAGE.read_text()
    missing = [
        f"{method} {path}"
        for path, _, methods in handlers.get_endpoints()
        if not path.startswith("/ajax-api")
        for method in methods
        if f"`{method} {path}`" not in text
    ]
    assert missing == []
