"""The newcomer path cannot rot: the README's commands are the ones CI runs and documents."""

from __future__ import annotations

import re
from pathlib import Path

from runstream import cli
from runstream.client import config as client_config

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CI_RUN = (ROOT / ".ci" / "run").read_text()

SERVER_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -e '.[server]' && .venv/bin/runstream server"
)
TEST_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -e '.[server,dev]' "
    "&& .venv/bin/python -m pytest"
)
TEST_STORE_VARIABLES = {
    "RUNSTREAM_TEST_LOCAL_STORES",
    "RUNSTREAM_TEST_DATABASE_URL",
    "RUNSTREAM_TEST_REDIS_URL",
}


def quickstart() -> str:
    match = re.search(r"^## Quickstart\n(.*?)^## ", README, re.S | re.M)
    assert match, "README has no Quickstart section"
    return match[1]


def code_lines(text: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_quickstart_has_exactly_the_two_commands() -> None:
    lines = code_lines(quickstart())
    assert lines[:2] == [SERVER_COMMAND, TEST_COMMAND]


def test_ci_runs_the_readme_install_and_test_commands() -> None:
    lines = [line.strip() for line in CI_RUN.splitlines()]
    venv, install, tests = (part.strip() for part in TEST_COMMAND.split("&&"))
    assert venv in lines
    assert install in lines
    assert any(line.startswith(tests) for line in lines)
    assert "set -euo pipefail" in lines


def test_ci_runs_lint_format_and_types() -> None:
    assert ".venv/bin/ruff check ." in CI_RUN
    assert ".venv/bin/ruff format --check ." in CI_RUN
    assert "PYTHON=$PWD/.venv/bin/python .ci/typecheck" in CI_RUN


def test_every_setting_is_documented() -> None:
    names = [cli.env_name(f.name) for f in cli.settings_fields()] + [cli.LOG_LEVEL_ENV]
    missing = [name for name in names if f"`{name}`" not in README]
    assert missing == []


def test_every_documented_variable_exists() -> None:
    sdk = {"RUNSTREAM_URL", "RUNSTREAM_SPOOL_DIR"} | {
        "RUNSTREAM_" + name.upper() for name in client_config._ENV_FIELDS
    }
    known = (
        {cli.env_name(f.name) for f in cli.settings_fields()}
        | {cli.LOG_LEVEL_ENV}
        | sdk
        | TEST_STORE_VARIABLES
    )
    documented = set(re.findall(r"`(RUNSTREAM_[A-Z_]+)`", README))
    assert documented - known == set()


def test_every_command_is_documented() -> None:
    parser = cli.build_parser()
    commands = next(
        action.choices
        for action in parser._actions  # argparse offers no public way to list subcommands
        if isinstance(action.choices, dict)
    )
    for name in commands:
        assert f"`runstream {name}`" in README


def test_readme_links_resolve() -> None:
    for target in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (ROOT / target).exists(), target


def test_ci_uses_the_local_stores_the_readme_describes() -> None:
    assert 'export RUNSTREAM_TEST_LOCAL_STORES="${RUNSTREAM_TEST_LOCAL_STORES:-1}"' in CI_RUN
    for name in TEST_STORE_VARIABLES:
        assert f"`{name}" in README


def test_the_dockerfile_installs_the_server() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "'runstream[server]'" in dockerfile


def test_readme_and_help_agree_on_what_read_your_writes_timeout_governs() -> None:
    row = next(line for line in README.splitlines() if "`--read-your-writes-timeout`" in line)
    doc = cli.field_docs()["read_your_writes_timeout"]
    # what the code waits for: handler_io.wait_for/catch_up, reads.await_token, post_events
    for phrase in (
        "MLflow reads",
        "MLflow writes that answer with what they wrote",
        "?wait_for=",
        "?wait=1",
        "503 with Retry-After",
    ):
        assert phrase in row, phrase
        assert phrase in doc, phrase
