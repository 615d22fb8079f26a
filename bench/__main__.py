"""``python -m bench`` (or ``runstream bench``): run the benchmarks, print and record them.

    python -m bench                         # every published table: run it on a quiet machine
    python -m bench --quick                 # every workload, small sizes (development)
    python -m bench --only mlflow_call_latency --only mlflow_sweep
    python -m bench --only mlflow_log_batch_4proc --runstream-workers 2

Prints one JSON line per measurement. A full run of every default workload is a published
run: its JSON goes to ``bench/results/<date>.json`` (committed) and its tables into
``docs/benchmarks.md``. Any other run (``--quick``, ``--only``) writes
``bench/results/dev/<date>T<time>.json`` (git-ignored) and leaves the docs alone unless
``--docs PATH`` is given.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from bench import (
    auth_overhead,
    mlflow_proof,
    mlflow_protocol,
    raw_protocol,
    read_workloads,
    storage,
    write_workloads,
)
from bench.harness import BenchStores, machine_facts, runstream_has_workers_flag
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
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"

Workload = Callable[[Context], Iterable[Result]]

PUBLISHED: dict[str, Workload] = {
    **write_workloads.WORKLOADS,
    **mlflow_protocol.WORKLOADS,
    **raw_protocol.WORKLOADS,
    **read_workloads.WORKLOADS,
    **storage.WORKLOADS,
}
"""Every table of docs/benchmarks.md, in the order they run (the read workloads load large
series into the shared servers, so they come after the MLflow-protocol ones)."""
OPT_IN: dict[str, Workload] = {
    **write_workloads.OPT_IN,
    **read_workloads.OPT_IN,
    **mlflow_proof.WORKLOADS,
    **auth_overhead.OPT_IN,
}
"""Run only when named with ``--only``: diagnostics, not published figures."""


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
    parser.add_argument(
        "--runstream-workers",
        type=int,
        default=None,
        metavar="N",
        help="run `runstream server --workers N` (when the server has that flag; else noted "
        "and ignored): one point of the scaling curve",
    )
    parser.add_argument("--pg", default=None, help="admin PostgreSQL DSN (env: RUNSTREAM_BENCH_PG)")
    parser.add_argument(
        "--redis",
        default=None,
        help="use this Redis as it is configured (env: RUNSTREAM_BENCH_REDIS); default: a "
        "dedicated redis-server with AOF on (appendfsync everysec), as deployed",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help=f"where the JSON goes (default: {RESULTS.relative_to(ROOT)} for a published "
        "run, its dev/ folder otherwise)",
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=None,
        help=f"markdown to update (default: {DOCS.relative_to(ROOT)}, by a published run only)",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not touch any markdown")
    return parser


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    workloads = {**PUBLISHED, **OPT_IN}
    args = build_parser(list(workloads)).parse_args(argv)
    argv_text = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "-m", "bench", *argv_text])
    env_stores = BenchStores.from_env()
    stores = BenchStores(args.pg or env_stores.pg_admin, args.redis or env_stores.redis_url)
    published = not args.quick and not args.only
    mode = "quick" if args.quick else "full"
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    facts = machine_facts(stores)
    facts["mlflow_server_workers"] = str(args.mlflow_workers or "default (4)")
    facts["runstream_server_workers"] = _workers_fact(args.runstream_workers)
    ctx = Context(
        quick=args.quick,
        stores=stores,
        with_mlflow=not args.no_mlflow,
        mlflow_workers=args.mlflow_workers,
        runstream_workers=args.runstream_workers,
    )
    results: list[Result] = []
    seconds: dict[str, float] = {}
    run_started = time.monotonic()
    try:
        for name in args.only or list(PUBLISHED):
            t0 = time.monotonic()
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            try:
                produced = list(workloads[name](ctx))
            except Exception as exc:  # one failing workload does not lose the others
                produced = [missing(name, "Failed workloads", name, "", f"{exc!r}"[:300])]
            for result in produced:
                emit(result)
            results += produced
            seconds[name] = time.monotonic() - t0
            print(f"bench: {name} took {seconds[name]:.1f} s", file=sys.stderr)
    finally:
        ctx.close()
    facts["duration"] = f"{time.monotonic() - run_started:.0f} s"
    directory = args.results_dir or (RESULTS if published else RESULTS / "dev")
    path = write_results(
        directory, results, facts, command, mode, started, per_day=published, seconds=seconds
    )
    print(f"bench: results in {path}", file=sys.stderr)
    docs = args.docs or (DOCS if published else None)
    if docs is not None and not args.no_docs:
        write_markdown(
            docs, render_results(results, facts, command, mode, started, _relative(path))
        )
        print(f"bench: tables in {docs}", file=sys.stderr)
    return 0


def _workers_fact(asked: int | None) -> str:
    if asked is None:
        return "default"
    if runstream_has_workers_flag():
        return str(asked)
    return f"1 (--runstream-workers {asked} asked; this runstream server has no --workers)"


if __name__ == "__main__":
    sys.exit(main())
