"""The MLflow compatibility proof: the same client-level tests against MLflow and runstream.

Runs ``tests/e2e/mlflow`` twice, once against ``mlflow server`` (``RUNSTREAM_COMPAT_TARGET=
mlflow``: PostgreSQL backend store, ``--artifacts-destination``) and once against runstream,
and prints one JSON line per test and target, then one summary line per target::

    python bench/mlflow_proof.py [test paths] [extra pytest args]

Test paths default to the whole ``tests/e2e/mlflow`` directory.

Outcomes: ``passed``, ``failed``, ``skipped``, ``xfailed`` (a known gap, named in the
test's reason), ``xpassed``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

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


def main(argv: list[str]) -> int:
    if not any(not arg.startswith("-") for arg in argv):
        argv = [TESTS, *argv]
    exit_code = 0
    for target in TARGETS:
        rows, elapsed = run_target(target, argv)
        counts: dict[str, int] = {}
        for row in rows:
            print(json.dumps(row), flush=True)
            counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
        summary = {"target": target, "summary": counts, "seconds": round(elapsed, 1)}
        print(json.dumps(summary), flush=True)
        if counts.get("failed"):
            exit_code = 1
    return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
