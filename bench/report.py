"""Results of benchmarks: one ``Result`` per measurement, its JSON line, the markdown tables.

The one result type, the one JSON writer (``write_results``: one file per run, named by its
date) and the one markdown renderer (``render_results``) of ``python -m bench``. Pure apart
from ``Context`` (which starts servers on demand) and the two writers; the rest is tested in
``tests/unit/test_bench_report.py``.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar

from bench.harness import (
    BenchStores,
    RedisServer,
    Server,
    start_mlflow,
    start_null_server,
    start_redis,
    start_runstream,
    warm_up,
)

Better = Literal["higher", "lower"]
N = TypeVar("N", int, float)

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
    """``value`` must be ``op`` ``bound``; or, when ``on_ratio``, the ratio to MLflow; or,
    when ``on_floor``, runstream's cost over the null server's (``Result.over_floor``)."""

    op: Literal[">=", "<="]
    bound: float
    on_ratio: bool = False
    on_floor: bool = False

    def met(
        self, value: float | None, ratio: float | None, over_floor: float | None = None
    ) -> bool | None:
        subject = over_floor if self.on_floor else ratio if self.on_ratio else value
        if subject is None or math.isnan(subject):
            return None
        return subject >= self.bound if self.op == ">=" else subject <= self.bound

    def text(self, unit: str) -> str:
        if self.on_floor:
            return f"{self.op} {fmt_number(self.bound)}x null server"
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
    floor_value: float | None = None
    """The same call against the null server (``bench/null_server.py``): the client's own
    cost, the floor any server's figure sits on."""

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
    def over_floor(self) -> float | None:
        """How many times the null server's cost runstream's figure is (1.0: no cost)."""
        return _times(self.value, self.floor_value, self.better)

    @property
    def mlflow_over_floor(self) -> float | None:
        return _times(self.mlflow_value, self.floor_value, self.better)

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        return self.target.met(self.value, self.ratio, self.over_floor)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = self.target.text(self.unit) if self.target else None
        data["ratio"] = _rounded(self.ratio)
        data["passed"] = self.passed
        data["value"] = _rounded(self.value)
        data["mlflow_value"] = _rounded(self.mlflow_value)
        data["floor_value"] = _rounded(self.floor_value)
        data["over_floor"] = _rounded(self.over_floor)
        data["mlflow_over_floor"] = _rounded(self.mlflow_over_floor)
        data["detail"] = _clean(self.detail)
        return data


def _times(value: float | None, floor: float | None, better: Better) -> float | None:
    """``value`` as a multiple of ``floor`` (latency: value/floor; throughput: floor/value)."""
    if value is None or floor is None or value <= 0 or floor <= 0:
        return None
    return value / floor if better == "lower" else floor / value


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


def _times_text(value: float | None) -> str:
    return f"{fmt_number(value)}x" if value is not None else "—"


def render_table(results: Sequence[Result]) -> str:
    """One markdown table: workload, target, runstream, MLflow, ratio, result; and, when a
    row was also measured against the null server, its figure and both servers' multiples
    of it."""
    floors = any(r.floor_value is not None for r in results)
    extra = " null server | runstream ÷ null | MLflow ÷ null |" if floors else ""
    lines = [
        "| workload | metric | target | runstream | MLflow | ratio |" + extra + " result |",
        "|---|---|---|---|---|---|" + ("---|---|---|" if floors else "") + "---|",
    ]
    for r in results:
        target = r.target.text(r.unit) if r.target else "—"
        mlflow = fmt_value(r.mlflow_value, r.unit) if r.mlflow_value is not None else "—"
        ratio = _times_text(r.ratio)
        runstream = fmt_value(r.value, r.unit) if r.value is not None else "—"
        name = f"`{r.name}`" + (f" ({_escape(r.note)})" if r.note else "")
        cells = f"| {name} | {_escape(r.metric)} | {target} | {runstream} | {mlflow} | {ratio} |"
        if floors:
            floor = fmt_value(r.floor_value, r.unit) if r.floor_value is not None else "—"
            cells += (
                f" {floor} | {_times_text(r.over_floor)} | {_times_text(r.mlflow_over_floor)} |"
            )
        lines.append(f"{cells} {verdict(r)} |")
    return "\n".join(lines)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_results(
    results: Sequence[Result],
    facts: dict[str, str],
    command: str,
    mode: str,
    started: str,
    json_path: str = "",
) -> str:
    """The generated part of docs/benchmarks.md: command, machine, the JSON behind every
    table, one table per section."""
    source = f" Every figure below is in `{json_path}`." if json_path else ""
    parts = [
        f"Generated by `{command}` ({mode} mode) on {started}.{source}",
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
    *,
    per_day: bool = True,
    seconds: dict[str, float] | None = None,
) -> Path:
    """``directory/<date>.json`` (``started``'s date): one file per published run, a later
    run on the same day replacing it; with ``per_day=False`` (development runs)
    ``<date>T<time>.json``, one per run."""
    directory.mkdir(parents=True, exist_ok=True)
    name = started[:10] if per_day else started.replace(":", "")
    path = directory / (name + ".json")
    payload = {
        "started": started,
        "command": command,
        "mode": mode,
        "machine": facts,
        "workload_seconds": _clean(seconds or {}),
        "results": [r.to_json() for r in results],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


# -- what workloads get ----------------------------------------------------------------------


class Context:
    """What a workload gets: the mode, the stores, and servers started on first use.

    ``runstream()``, ``mlflow()`` and ``null()`` share one server each for the whole
    ``python -m bench`` run; a workload that needs a fresh runstream server uses
    ``fresh_runstream()`` (same stores, same ``--workers``). Without an external Redis
    (``stores.redis_url``), one dedicated Redis with AOF persistence serves every runstream
    server of the run (each has its own key prefix). Both tracking servers get the same
    ``warm_up`` calls when they start. ``close()`` stops everything and drops the databases.
    """

    def __init__(
        self,
        *,
        quick: bool,
        stores: BenchStores | None = None,
        with_mlflow: bool = True,
        mlflow_workers: int | None = None,
        runstream_workers: int | None = None,
        out: TextIO = sys.stdout,
    ) -> None:
        self.quick = quick
        self.stores = stores or BenchStores.from_env()
        self.with_mlflow = with_mlflow
        self.mlflow_workers = mlflow_workers
        self.runstream_workers = runstream_workers
        self.out = out
        self._stack = contextlib.ExitStack()
        self._runstream: Server | None = None
        self._mlflow: Server | None = None
        self._null: Server | None = None
        self._mlflow_error: str | None = None
        self._redis: RedisServer | None = None

    def size(self, quick: N, full: N) -> N:
        """The quick or the full size of something, by the run's mode."""
        return quick if self.quick else full

    def _stores(self) -> BenchStores:
        """The stores with a Redis URL: the external one, or the run's dedicated AOF Redis."""
        if self.stores.redis_url is not None:
            return self.stores
        if self._redis is None:
            self._redis = self._stack.enter_context(start_redis())
        return BenchStores(self.stores.pg_admin, self._redis.url)

    @contextlib.contextmanager
    def fresh_runstream(
        self, *, run_projector: bool = True, workers: int | None = None
    ) -> Iterator[Server]:
        """A runstream server of its own (fresh database and prefix), stopped on exit;
        ``workers`` overrides the run's ``--runstream-workers``."""
        with start_runstream(
            self._stores(),
            run_projector=run_projector,
            workers=workers if workers is not None else self.runstream_workers,
        ) as server:
            yield server

    def runstream(self) -> Server:
        if self._runstream is None:
            self._runstream = self._stack.enter_context(self.fresh_runstream())
            warm_up(self._runstream.url)
        return self._runstream

    def null(self) -> Server:
        """The shared null server (``bench/null_server.py``)."""
        if self._null is None:
            self._null = self._stack.enter_context(start_null_server())
        return self._null

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
                warm_up(self._mlflow.url)
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

    def fresh_mlflow(self) -> contextlib.AbstractContextManager[Server]:
        """An MLflow server of its own (fresh database), stopped on exit."""
        return start_mlflow(self.stores, workers=self.mlflow_workers)

    def close(self) -> None:
        self._stack.close()
