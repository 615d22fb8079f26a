"""The MLflow compatibility proof: the same client-level tests against MLflow and runstream.

Runs ``tests/e2e/mlflow`` twice, once against ``mlflow server`` (``RUNSTREAM_COMPAT_TARGET=
mlflow``: PostgreSQL backend store, ``--artifacts-destination``) and once against runstream;
one result per target (tests passed, of those run), every test's outcome in its detail::

    python -m bench --only mlflow_proof

Not part of the default run (it is a test suite, minutes long, not a speed figure).

Outcomes: ``passed``, ``failed``, ``skipped``, ``xfailed`` (a known gap, named in the
test's reason), ``xpassed``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from bench.report import Context, Result

ROOT = Path(__file__).resolve().parents[1]
TESTS = "tests/e2e/mlflow"
TARGETS = ("mlflow", "runstream")


def outcome_of(case: ET.Element) -> tuple[str, str]:
    for child in case:
        if child.tag in ("failure", "error"):
            return "failed", (child.get("message") or "")[:300]
        if child.tag == "skipped":
            kind = child.get("type") or ""
            message = child.get("message") or ""
            if kind == "pytest.xfail":
                return "xfailed", message
            return "skipped", message
    return "passed", ""


def run_target(target: str, extra: list[str]) -> tuple[list[dict[str, str]], float]:
    env = dict(os.environ, RUNSTREAM_COMPAT_TARGET=target)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             f"--junitxml={report}", *extra],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        if not report.exists():
            return [{"target": target, "test": "<session>", "outcome": "failed"}], elapsed
        rows = []
        for case in ET.parse(report).getroot().iter("testcase"):
            outcome, detail = outcome_of(case)
            row = {"target": target, "test": case.get("name", ""), "outcome": outcome}
            if detail:
                row["detail"] = detail
            rows.append(row)
    return rows, elapsed


SECTION = "MLflow compatibility proof (tests/e2e/mlflow on both servers)"


def mlflow_proof(ctx: Context) -> list[Result]:
    """``tests/e2e/mlflow`` against MLflow's server, then against runstream."""
    results = []
    for target in TARGETS:
        rows, elapsed = run_target(target, [TESTS])
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
        results.append(
            Result(
                f"mlflow_proof_{target}",
                SECTION,
                f"tests of {TESTS} passed against {target} (of {len(rows)}; "
                + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
                + f"; {elapsed:.0f} s)",
                float(counts.get("passed", 0)),
                "tests",
                detail={"counts": counts, "tests": rows},
            )
        )
    return results


WORKLOADS: dict[str, Callable[[Context], list[Result]]] = {"mlflow_proof": mlflow_proof}
