"""``python -m bench`` (or ``runstream bench``): run the benchmarks, print and record them.

    python -m bench --quick                 # every workload, small sizes (< 2 minutes idle)
    python -m bench                         # full sizes: run it on a quiet machine
    python -m bench --only end_to_end --only sdk_call_cost --no-docs

Prints one JSON line per measurement, saves them all to ``bench/results/<timestamp>.json``
and rewrites the generated part of ``docs/benchmarks.md`` (unless ``--no-docs``).
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from bench import write_workloads
from bench.harness import BenchStores, machine_facts
from bench.report import (
    Context,
    Result,
    emit,
    missing,
    render_results,
    write_markdown,
    write_results,
)

ROOT = Path(__file__).resolve().parent.parent
OTHER_MODULES = ("bench.sdk_overhead", "bench.read_scale", "bench.search_scale")
"""Modules whose ``WORKLOADS`` join the run when they expose it."""

Workload = Callable[[Context], Iterable[Result]]


def all_workloads() -> tuple[dict[str, Workload], list[str]]:
    """Every workload by name, and notes on the modules that offer none yet."""
    workloads: dict[str, Workload] = dict(write_workloads.WORKLOADS)
    notes = []
    for module_name in OTHER_MODULES:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # another engineer's module mid-edit must not stop the run
            notes.append(f"{module_name}: not importable ({exc!r})")
            continue
        offered = getattr(module, "WORKLOADS", None)
        if not isinstance(offered, dict):
            notes.append(f"{module_name}: exposes no WORKLOADS (run it as a script)")
            continue
        workloads.update(offered)
    return workloads, notes


def build_parser(names: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for development")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(names),
        metavar="NAME",
        help=f"run only this workload (repeatable): {', '.join(names)}",
    )
    parser.add_argument("--no-mlflow", action="store_true", help="skip MLflow's server")
    parser.add_argument(
        "--mlflow-workers",
        type=int,
        default=None,
        help="uvicorn workers of mlflow server (default: MLflow's own default, 4)",
    )
    parser.add_argument("--pg", default=None, help="admin PostgreSQL DSN (env: RUNSTREAM_BENCH_PG)")
    parser.add_argument("--redis", default=None, help="Redis URL (env: RUNSTREAM_BENCH_REDIS)")
    parser.add_argument(
        "--results-dir", type=Path, default=ROOT / "bench" / "results", help="where JSON goes"
    )
    parser.add_argument(
        "--docs", type=Path, default=ROOT / "docs" / "benchmarks.md", help="markdown to update"
    )
    parser.add_argument("--no-docs", action="store_true", help="do not touch the markdown")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    workloads, notes = all_workloads()
    args = build_parser(list(workloads)).parse_args(argv)
    argv_text = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "-m", "bench", *argv_text])
    env_stores = BenchStores.from_env()
    stores = BenchStores(args.pg or env_stores.pg_admin, args.redis or env_stores.redis_url)
    mode = "quick" if args.quick else "full"
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    for note in notes:
        print(f"bench: {note}", file=sys.stderr)
    facts = machine_facts(stores)
    ctx = Context(
        quick=args.quick,
        stores=stores,
        with_mlflow=not args.no_mlflow,
        mlflow_workers=args.mlflow_workers,
    )
    results: list[Result] = []
    try:
        for name in args.only or list(workloads):
            t0 = time.monotonic()
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            try:
                produced = list(workloads[name](ctx))
            except Exception as exc:  # one failing workload does not lose the others
                produced = [missing(name, "Failed workloads", name, "", f"{exc!r}"[:300])]
            for result in produced:
                emit(result)
            results += produced
            print(f"bench: {name} took {time.monotonic() - t0:.1f} s", file=sys.stderr)
    finally:
        ctx.close()
    facts["mlflow_server_workers"] = str(args.mlflow_workers or "default (4)")
    path = write_results(args.results_dir, results, facts, command, mode, started)
    print(f"bench: results in {path}", file=sys.stderr)
    if not args.no_docs:
        write_markdown(args.docs, render_results(results, facts, command, mode, started))
        print(f"bench: tables in {args.docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
