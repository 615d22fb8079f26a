"""Results of benchmarks: one ``Result`` per measurement, its JSON line, the markdown tables.

Pure apart from ``Context`` (which starts servers on demand) and the two writers
(``write_results``, ``write_markdown``); the rest is tested in ``tests/unit``.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from bench.harness import BenchStores, Server, start_mlflow, start_runstream

Better = Literal["higher", "lower"]

DOCS_BEGIN = "<!-- bench:results:begin -->"
DOCS_END = "<!-- bench:results:end -->"


# -- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def summarize(values: Sequence[float]) -> dict[str, float]:
    """n, median, p90, p99, min, max of samples (for a result's ``detail``)."""
    return {
        "n": len(values),
        "median": median(values),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "min": min(values) if values else math.nan,
        "max": max(values) if values else math.nan,
    }


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """``value`` (or ``ratio`` against MLflow, when ``on_ratio``) must be ``op`` ``bound``."""

    op: Literal[">=", "<="]
    bound: float
    on_ratio: bool = False

    def met(self, value: float | None, ratio: float | None) -> bool | None:
        subject = ratio if self.on_ratio else value
        if subject is None or math.isnan(subject):
            return None
        return subject >= self.bound if self.op == ">=" else subject <= self.bound

    def text(self, unit: str) -> str:
        if self.on_ratio:
            return f"{self.op} {fmt_number(self.bound)}x MLflow"
        return f"{self.op} {fmt_number(self.bound)} {unit}".strip()


@dataclass(slots=True)
class Result:
    """One measurement; ``mlflow_value`` set when the same workload ran against MLflow."""

    name: str
    section: str
    metric: str
    value: float | None
    unit: str
    better: Better = "higher"
    target: Target | None = None
    mlflow_value: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """How many times better than MLflow (>1 means runstream is better)."""
        if self.value is None or self.mlflow_value is None:
            return None
        if self.value <= 0 or self.mlflow_value <= 0:
            return None
        if self.better == "higher":
            return self.value / self.mlflow_value
        return self.mlflow_value / self.value

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        return self.target.met(self.value, self.ratio)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = self.target.text(self.unit) if self.target else None
        data["ratio"] = _rounded(self.ratio)
        data["passed"] = self.passed
        data["value"] = _rounded(self.value)
        data["mlflow_value"] = _rounded(self.mlflow_value)
        data["detail"] = _clean(self.detail)
        return data


def missing(name: str, section: str, metric: str, unit: str, why: str, **kw: Any) -> Result:
    """A workload that could not run (a part not built yet, a server that failed)."""
    return Result(name, section, metric, None, unit, note=why, **kw)


def _rounded(value: float | None) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return float(f"{value:.4g}") if abs(value) < 1000 else round(value, 1)


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return _rounded(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def emit(result: Result, out: TextIO = sys.stdout) -> None:
    """Print a result as one JSON line."""
    print(json.dumps(result.to_json(), sort_keys=False), file=out, flush=True)


# -- rendering -------------------------------------------------------------------------------


def fmt_number(value: float | None) -> str:
    """Three significant figures with thousands separators: 1,230,000 / 1.23 / 0.00123."""
    if value is None or math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{float(f'{value:.3g}'):,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude == 0:
        return "0"
    return f"{value:.3g}"


def fmt_value(value: float | None, unit: str) -> str:
    text = fmt_number(value)
    return text if value is None or not unit else f"{text} {unit}"


def verdict(result: Result) -> str:
    if result.value is None:
        return "not run"
    passed = result.passed
    return "—" if passed is None else ("pass" if passed else "**miss**")


def render_table(results: Sequence[Result]) -> str:
    """One markdown table: workload, target, runstream, MLflow, ratio, result."""
    lines = [
        "| workload | metric | target | runstream | MLflow | ratio | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        target = r.target.text(r.unit) if r.target else "—"
        mlflow = fmt_value(r.mlflow_value, r.unit) if r.mlflow_value is not None else "—"
        ratio = f"{fmt_number(r.ratio)}x" if r.ratio is not None else "—"
        runstream = fmt_value(r.value, r.unit) if r.value is not None else "—"
        name = f"`{r.name}`" + (f" ({_escape(r.note)})" if r.note else "")
        lines.append(
            f"| {name} | {_escape(r.metric)} | {target} | {runstream} | {mlflow} | {ratio} "
            f"| {verdict(r)} |"
        )
    return "\n".join(lines)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_results(
    results: Sequence[Result], facts: dict[str, str], command: str, mode: str, started: str
) -> str:
    """The generated part of docs/benchmarks.md: command, machine, one table per section."""
    parts = [
        f"Generated by `{command}` ({mode} mode) on {started}.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()) + ".",
    ]
    sections: dict[str, list[Result]] = {}
    for r in results:
        sections.setdefault(r.section, []).append(r)
    for section, rows in sections.items():
        parts += ["", f"### {section}", "", render_table(rows)]
    passed = sum(1 for r in results if r.passed)
    judged = sum(1 for r in results if r.passed is not None)
    parts += ["", f"Targets met: {passed} of {judged} measured against a target."]
    return "\n".join(parts)


def splice(document: str, generated: str) -> str:
    """Replace what is between the markers of ``document`` (or append them with it)."""
    block = f"{DOCS_BEGIN}\n{generated}\n{DOCS_END}"
    if DOCS_BEGIN in document and DOCS_END in document:
        head, rest = document.split(DOCS_BEGIN, 1)
        _, tail = rest.split(DOCS_END, 1)
        return head + block + tail
    return document.rstrip("\n") + "\n\n" + block + "\n"


def write_markdown(path: Path, generated: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(splice(text, generated))


def write_results(
    directory: Path,
    results: Iterable[Result],
    facts: dict[str, str],
    command: str,
    mode: str,
    started: str,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (started.replace(":", "").replace("-", "") + ".json")
    payload = {
        "started": started,
        "command": command,
        "mode": mode,
        "machine": facts,
        "results": [r.to_json() for r in results],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


# -- what workloads get ----------------------------------------------------------------------


class Context:
    """What a workload gets: the mode, the stores, and servers started on first use.

    ``runstream()`` and ``mlflow()`` share one server each for the whole ``python -m bench``
    run (a workload that needs a fresh one uses ``bench.harness`` directly);
    ``close()`` stops them and drops their databases.
    """

    def __init__(
        self,
        *,
        quick: bool,
        stores: BenchStores | None = None,
        with_mlflow: bool = True,
        mlflow_workers: int | None = None,
        out: TextIO = sys.stdout,
    ) -> None:
        self.quick = quick
        self.stores = stores or BenchStores.from_env()
        self.with_mlflow = with_mlflow
        self.mlflow_workers = mlflow_workers
        self.out = out
        self._stack = contextlib.ExitStack()
        self._runstream: Server | None = None
        self._mlflow: Server | None = None
        self._mlflow_error: str | None = None

    def size(self, quick: int, full: int) -> int:
        return quick if self.quick else full

    def runstream(self) -> Server:
        if self._runstream is None:
            self._runstream = self._stack.enter_context(start_runstream(self.stores))
        return self._runstream

    def mlflow(self) -> Server | None:
        """The shared MLflow server; None when disabled or when it would not start."""
        if not self.with_mlflow or self._mlflow_error is not None:
            return None
        if self._mlflow is None:
            started = time.monotonic()
            try:
                self._mlflow = self._stack.enter_context(
                    start_mlflow(self.stores, workers=self.mlflow_workers)
                )
            except Exception as exc:
                self._mlflow_error = f"{type(exc).__name__}: {exc}"
                print(f"bench: mlflow server failed: {exc}", file=sys.stderr)
                return None
            print(
                f"bench: mlflow server up in {time.monotonic() - started:.1f} s "
                f"({self._mlflow.workers} workers)",
                file=sys.stderr,
            )
        return self._mlflow

    def close(self) -> None:
        self._stack.close()
