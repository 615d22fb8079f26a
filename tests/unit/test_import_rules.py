"""The import table of docs/architecture.md holds, checked on the source with ``ast``.

| room | may import (besides itself and the standard library / third parties) |
|---|---|
| schemas | nothing of runstream |
| ingest | schemas, runstream.settings/resources/web/telemetry |
| projector | schemas, runstream.settings/resources/telemetry |
| api | schemas, ingest, runstream.settings/resources/web/telemetry |
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOMS = {"schemas": "schemas", "ingest": "ingest", "projector": "projector", "api": "api"}
SHARED = ("runstream.settings", "runstream.resources", "runstream.web", "runstream.telemetry")
ALLOWED: dict[str, tuple[str, ...]] = {
    "schemas": ("runstream.schemas",),
    "ingest": ("runstream.ingest", "runstream.schemas", *SHARED),
    "projector": ("runstream.projector", "runstream.schemas", "runstream.settings",
                  "runstream.resources", "runstream.telemetry"),
    "api": ("runstream.api", "runstream.ingest", "runstream.schemas", *SHARED),
}  # fmt: skip


def runstream_imports(path: Path, package: str) -> list[tuple[int, str]]:
    """Every ``runstream...`` module a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parts = package.split(".")
    if path.name != "__init__.py":
        parts.append(path.stem)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module == "runstream" or (node.level and not node.module):
                # `from runstream import ingest` / `from . import views` import submodules
                found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, module))
    return [(line, name) for line, name in found if name.split(".")[0] == "runstream"]


def allowed(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(room: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / ROOMS[room]).rglob("*.py")):
        package = "runstream." + ".".join(path.parent.relative_to(ROOT).parts)
        package = package.replace(f"runstream.{ROOMS[room]}", f"runstream.{room}", 1)
        for line, name in runstream_imports(path, package):
            if not allowed(name, ALLOWED[room]):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return bad


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_room_imports_follow_the_architecture_table(room: str) -> None:
    assert violations(room) == []


def test_the_checker_sees_relative_and_from_runstream_imports(tmp_path: Path) -> None:
    source = tmp_path / "views.py"
    source.write_text(
        "from .. import projector\n"
        "from ..ingest import append\n"
        "from runstream import api, settings\n"
        "import runstream.web\n"
        "def f():\n    from . import other\n"
    )
    names = {name for _, name in runstream_imports(source, "runstream.api")}
    assert names == {
        "runstream.projector",
        "runstream.ingest",
        "runstream.api",
        "runstream.settings",
        "runstream.web",
        "runstream.api.other",
    }


def test_the_table_matches_the_architecture_page() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    assert "| `schemas/` | `runstream.schemas` |" in text
    assert "nothing else of runstream" in text
    assert "`schemas`, `ingest`, `runstream.settings/resources/web/telemetry`" in text
