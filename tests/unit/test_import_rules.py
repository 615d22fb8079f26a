"""The import table of docs/architecture.md holds, checked on the source with ``ast``.

| room | may import (besides itself and the standard library / third parties) |
|---|---|
| schemas | nothing of runstream |
| ingest | schemas, runstream.settings/resources/web/telemetry/lean_script |
| projector | schemas, runstream.settings/resources/telemetry/loop/lean_script |
| api | schemas, ingest, runstream.settings/resources/web/telemetry |

and no module of the package imports itself back through others (no import cycle).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Collection
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOMS = {"schemas": "schemas", "ingest": "ingest", "projector": "projector", "api": "api"}
SHARED = ("runstream.settings", "runstream.resources", "runstream.web", "runstream.telemetry")
ALLOWED: dict[str, tuple[str, ...]] = {
    "schemas": ("runstream.schemas",),
    "ingest": ("runstream.ingest", "runstream.schemas", *SHARED, "runstream.lean_script"),
    "projector": ("runstream.projector", "runstream.schemas", "runstream.settings",
                  "runstream.resources", "runstream.telemetry", "runstream.loop",
                  "runstream.lean_script"),
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


# -- no import cycles in the package ------------------------------------------------------------


def package_modules() -> dict[str, Path]:
    """Every module of the ``runstream`` package (the rooms through their links) by name."""
    modules: dict[str, Path] = {}
    for folder, _, files in os.walk(ROOT / "runstream", followlinks=True):
        for file in files:
            if file.endswith(".py"):
                path = Path(folder) / file
                parts = list(path.relative_to(ROOT).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                modules[".".join(parts)] = path
    return modules


def imported_modules(path: Path, package: str, modules: Collection[str]) -> set[str]:
    """The package modules ``path`` imports anywhere in its source: at the top, in a
    function, or under ``TYPE_CHECKING`` (an import moved out of sight still closes a cycle
    for a reader, a type checker and the next refactor). ``from a import b`` imports module
    ``a.b`` when there is one, else ``a``; a name is cut back to the module that defines it."""
    parts = package.split(".")
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                names.add(submodule if submodule in modules else module)
    found = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports (itself left out)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = imported_modules(path, package, modules) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle() -> None:
    modules = package_modules()
    assert {"runstream.client.run", "runstream.schemas.codec", "runstream.api.app"} <= set(modules)
    assert cycles(import_graph(modules)) == []


def test_the_cycle_finder_sees_function_and_type_checking_imports(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("def f():\n    from runstream import b\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from runstream.c import x\n"
    )
    (tmp_path / "c.py").write_text("from runstream.a import f\n")
    (tmp_path / "d.py").write_text("import runstream.a\n")
    modules = {f"runstream.{m}": tmp_path / f"{m}.py" for m in "abcd"}
    assert cycles(import_graph(modules)) == [["runstream.a", "runstream.b", "runstream.c"]]
