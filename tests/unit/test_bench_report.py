"""The pure parts of the benchmark harness: statistics, verdicts, tables, the docs splice."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.harness import BenchStores
from bench.report import (
    DOCS_BEGIN,
    DOCS_END,
    Result,
    Target,
    fmt_number,
    median,
    missing,
    percentile,
    render_results,
    render_table,
    splice,
    summarize,
    write_results,
)


def test_percentile_interpolates_and_handles_edges() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0, 1.0, 3.0], 0) == 1.0
    assert percentile([5.0, 1.0, 3.0], 100) == 5.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    assert percentile(list(map(float, range(101))), 99) == 99.0


def test_summarize_and_median() -> None:
    stats = summarize([3.0, 1.0, 2.0])
    assert stats["n"] == 3
    assert stats["median"] == 2.0
    assert stats["min"] == 1.0 and stats["max"] == 3.0
    assert math.isnan(median([]))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1_234_567.0, "1,230,000"),
        (250_000.0, "250,000"),
        (123.4, "123"),
        (57.25, "57.2"),
        (1.5, "1.50"),
        (0.001234, "0.00123"),
        (0.0, "0"),
        (None, "—"),
        (math.nan, "—"),
    ],
)
def test_fmt_number(value: float | None, text: str) -> None:
    assert fmt_number(value) == text


def test_ratio_is_how_many_times_better() -> None:
    faster = Result("t", "s", "m", 400_000.0, "points/s", mlflow_value=4_000.0)
    assert faster.ratio == 100.0
    quicker = Result("t", "s", "m", 2.0, "ms", better="lower", mlflow_value=60.0)
    assert quicker.ratio == 30.0
    assert Result("t", "s", "m", 1.0, "ms").ratio is None
    assert Result("t", "s", "m", 0.0, "ms", mlflow_value=1.0).ratio is None


def test_targets_on_value_and_on_ratio() -> None:
    cost = Result("c", "s", "m", 1500.0, "ns", better="lower", target=Target("<=", 2000))
    assert cost.passed is True
    slow = Result("c", "s", "m", 2500.0, "ns", better="lower", target=Target("<=", 2000))
    assert slow.passed is False
    side = Result(
        "b", "s", "m", 90_000.0, "points/s", mlflow_value=3000.0, target=Target(">=", 30, True)
    )
    assert side.passed is True
    alone = Result("b", "s", "m", 90_000.0, "points/s", target=Target(">=", 30, True))
    assert alone.passed is None
    assert Target(">=", 30, on_ratio=True).text("points/s") == ">= 30.0x MLflow"
    assert Target("<=", 100).text("ms") == "<= 100 ms"


def test_table_rows_and_verdicts() -> None:
    rows = [
        Result("a", "s", "ingest", 1_500_000.0, "points/s", target=Target(">=", 1_000_000)),
        Result(
            "b",
            "s",
            "log | batch",
            60_000.0,
            "points/s",
            mlflow_value=3_000.0,
            target=Target(">=", 30, True),
        ),
        missing("c", "s", "sweep", "points/s", "routes not served yet"),
    ]
    table = render_table(rows).splitlines()
    assert table[0].startswith("| workload | metric | target | runstream | MLflow | ratio |")
    assert "1,500,000 points/s" in table[2] and table[2].endswith("| pass |")
    assert "log \\| batch" in table[3] and "20.0x" in table[3] and "**miss**" in table[3]
    assert "routes not served yet" in table[4] and table[4].endswith("| not run |")


def test_render_results_groups_sections_and_counts_targets() -> None:
    rows = [
        Result("a", "Write", "m", 2.0, "ms", better="lower", target=Target("<=", 100)),
        Result("b", "Read", "m", 2.0, "ms", better="lower", target=Target("<=", 1)),
    ]
    text = render_results(rows, {"nproc": "2"}, "python -m bench --quick", "quick", "now")
    assert "### Write" in text and "### Read" in text
    assert "`python -m bench --quick`" in text and "nproc 2" in text
    assert "Targets met: 1 of 2" in text


def test_splice_replaces_only_the_generated_block() -> None:
    doc = f"# Benchmarks\n\nintro\n\n{DOCS_BEGIN}\nold\n{DOCS_END}\n\nmethod\n"
    out = splice(doc, "new")
    assert "old" not in out and "new" in out
    assert out.startswith("# Benchmarks\n\nintro") and out.endswith("method\n")
    appended = splice("# Benchmarks\n", "table")
    assert appended.endswith(f"{DOCS_BEGIN}\ntable\n{DOCS_END}\n")


def test_results_file_is_json_with_nan_free_numbers(tmp_path: Path) -> None:
    rows = [Result("a", "s", "m", math.nan, "ms", detail={"x": [math.inf, 1.23456]})]
    path = write_results(tmp_path, rows, {"nproc": "2"}, "cmd", "quick", "2026-01-02T03:04:05")
    data = json.loads(path.read_text())
    assert path.name == "2026-01-02.json"  # one JSON per published run, named by its date
    assert data["results"][0]["value"] is None
    assert data["results"][0]["detail"] == {"x": [None, 1.235]}


def test_stores_from_env_and_database_url() -> None:
    stores = BenchStores.from_env(
        {"RUNSTREAM_BENCH_PG": "postgresql://u@h:5433/admin", "RUNSTREAM_BENCH_REDIS": "redis://r"}
    )
    assert stores.database_url("rs_bench_x") == "postgresql://u@h:5433/rs_bench_x"
    assert stores.redis_url == "redis://r"
    default = BenchStores.from_env({})
    assert default.pg_admin.endswith("/postgres")
    # No Redis given: the harness starts its own with AOF, never the shared one on 6379.
    assert default.redis_url is None


def test_floor_multiples_and_floor_targets() -> None:
    call = Result(
        "c", "s", "m", 2.6, "ms", better="lower", mlflow_value=15.0, floor_value=2.0,
        target=Target("<=", 1.3, on_floor=True),
    )  # fmt: skip
    assert call.over_floor == pytest.approx(1.3)
    assert call.mlflow_over_floor == pytest.approx(7.5)
    assert call.passed is True
    slow = Result("c", "s", "m", 4.0, "ms", better="lower", floor_value=2.0,
                  target=Target("<=", 1.3, on_floor=True))  # fmt: skip
    assert slow.passed is False
    assert Result("c", "s", "m", 4.0, "ms", target=Target("<=", 1.3, on_floor=True)).passed is None
    assert Target("<=", 1.5, on_floor=True).text("ms") == "<= 1.50x null server"
    data = call.to_json()
    assert data["floor_value"] == 2.0 and data["over_floor"] == 1.3


def test_floor_columns_only_where_a_floor_was_measured() -> None:
    plain = render_table([Result("a", "s", "m", 1.0, "ms", better="lower")])
    assert "null server" not in plain
    floored = render_table(
        [
            Result("a", "s", "m", 3.0, "ms", better="lower", mlflow_value=15.0, floor_value=2.0),
            Result("b", "s", "m", 9.0, "points/s"),
        ]
    ).splitlines()
    assert "| null server | runstream ÷ null | MLflow ÷ null |" in floored[0]
    assert floored[1].count("---") == 10
    assert "| 2.00 ms | 1.50x | 7.50x |" in floored[2]
    assert floored[3].endswith("| — | — | — | — |")


def test_render_names_the_json_behind_the_tables() -> None:
    rows = [Result("a", "Write", "m", 2.0, "ms", better="lower")]
    text = render_results(rows, {}, "python -m bench", "full", "now", "bench/results/x.json")
    assert "`bench/results/x.json`" in text.splitlines()[0]


def test_development_results_are_one_file_per_run(tmp_path: Path) -> None:
    rows = [Result("a", "s", "m", 1.0, "ms")]
    first = write_results(tmp_path, rows, {}, "cmd", "quick", "2026-01-02T03:04:05", per_day=False)
    second = write_results(tmp_path, rows, {}, "cmd", "quick", "2026-01-02T03:04:06", per_day=False)
    assert (first.name, second.name) == ("2026-01-02T030405.json", "2026-01-02T030406.json")
