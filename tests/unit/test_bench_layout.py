"""The shape of ``bench/``: one harness, no import cycles, type-checked, results committed."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def bench_imports() -> dict[str, set[str]]:
    """bench module -> the bench modules it imports, at any depth of its code (a lazy
    import inside a function closes a cycle as surely as a top-level one)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(BENCH.glob("*.py")):
        name = path.stem
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "bench":
                    found.update(alias.name for alias in node.names)
                elif node.module.startswith("bench."):
                    found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found.update(
                    a.name.split(".")[1] for a in node.names if a.name.startswith("bench.")
                )
        graph[name] = found - {name}
    return graph


def test_bench_has_no_import_cycles() -> None:
    graph = bench_imports()
    assert "loaders" in graph and "read_scale" not in graph
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [])


def test_only_the_harness_entry_points_have_mains() -> None:
    """Workloads run through ``python -m bench``; the null server is a server process the
    harness starts, not a benchmark of its own. ``call_cost`` is the server side's development
    tool (profiles, ratios while optimizing; docs/performance.md), ``cpu_profile`` the
    wrapper it runs the server under, and ``ab_trees`` compares checkouts (a regression's
    before and after, docs/performance.md): none publishes figures."""
    with_main = {p.name for p in BENCH.glob("*.py") if 'if __name__ == "__main__"' in p.read_text()}
    tools = {"call_cost.py", "cpu_profile.py", "ab_trees.py"}
    assert with_main == {"__main__.py", "null_server.py", *tools}


def test_bench_is_type_checked_and_its_published_results_committed() -> None:
    assert "-p bench" in (ROOT / ".ci" / "typecheck").read_text()
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "bench/results/" not in ignored and "bench/results/dev/" in ignored


def test_docs_name_a_committed_json_for_generated_tables() -> None:
    """When the generated block of docs/benchmarks.md names its JSON, that file exists."""
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    block = text.split("<!-- bench:results:begin -->", 1)[1].split("<!-- bench:results:end -->")[0]
    marker = "Every figure below is in `"
    if marker in block:
        path = block.split(marker, 1)[1].split("`", 1)[0]
        assert (ROOT / path).is_file(), path
