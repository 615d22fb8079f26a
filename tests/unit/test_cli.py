"""The runstream command's parsing, without starting anything."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from runstream import cli
from runstream.settings import Settings


def parse(*argv: str) -> Settings:
    args = cli.build_parser().parse_args(argv)
    return cli.settings_from(args, {})


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"], environ={})
    assert exited.value.code == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command", ["server", "ingest", "api", "projector"])
def test_help_shows_the_variable_of_every_setting(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = help_of(command, capsys)
    for field in cli.settings_fields():
        flag = "--" + field.name.replace("_", "-")
        assert flag in out
        assert f"(env: {cli.env_name(field.name)};" in out
    assert "(env: RUNSTREAM_LOG_LEVEL;" in out


@pytest.mark.parametrize(
    ("command", "own"),
    [
        ("replay", ["--database-url", "--data-dir", "--chunk-points", "--batch"]),
        ("migrate", ["--database-url", "--data-dir"]),
    ],
)
def test_one_off_commands_list_their_own_options_only(
    command: str, own: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = help_of(command, capsys)
    flags = set(re.findall(r"--[a-z][a-z-]+", out))
    assert flags == {*own, "--help", "--log-level"}
    # the others are still accepted, as before, so existing scripts keep working
    args = cli.build_parser().parse_args([command, "--shards", "3", "--redis-url", "redis://r"])
    assert cli.settings_from(args, {}).shards == 3


def test_replay_batch_default_is_the_replays() -> None:
    from runstream.projector.replay import REPLAY_BATCH

    assert cli.REPLAY_BATCH == REPLAY_BATCH
    args = cli.build_parser().parse_args(["replay", "--batch", "50"])
    assert args.batch == 50
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["replay", "--batch", "0"])


def test_flags_and_variables_share_one_parser(capsys: pytest.CaptureFixture[str]) -> None:
    environ = {"RUNSTREAM_READ_YOUR_WRITES_TIMEOUT": "inf"}
    assert cli.main(["server"], environ=environ) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "RUNSTREAM_READ_YOUR_WRITES_TIMEOUT='inf': expected a finite number" in err
    with pytest.raises(SystemExit) as exited:
        cli.main(["server", "--read-your-writes-timeout", "inf"], environ={})
    assert exited.value.code == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "--read-your-writes-timeout: 'inf': expected a finite number" in err


@pytest.mark.parametrize("command", cli.SERVER_COMMANDS)
def test_server_commands_in_a_client_install_say_what_to_install(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The installed metadata is the real source; here it is made to say "client only".
    monkeypatch.setattr(cli, "missing_server_packages", lambda: ["aiohttp", "asyncpg"])
    assert cli.main([command], environ={}) == cli.EXIT_CONFIG
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "pip install 'runstream[server]'" in captured.err
    assert "aiohttp, asyncpg" in captured.err


def test_the_server_packages_are_read_from_the_install_metadata() -> None:
    # This venv has runstream[server]: nothing is missing, and the extra is found at all.
    import importlib.metadata

    extra = [r for r in importlib.metadata.requires("runstream") or [] if "server" in r]
    assert any(r.startswith("aiohttp") for r in extra)
    assert cli.missing_server_packages() == []


def test_field_docs_come_from_settings() -> None:
    docs = cli.field_docs()
    assert "embedded PostgreSQL" in docs["database_url"]
    assert "dead-letter" in docs["max_deliveries"]


def test_flags_map_to_settings_and_win_over_the_environment() -> None:
    args = cli.build_parser().parse_args(
        [
            "server",
            "--database-url",
            "postgresql://db/rs",
            "--data-dir",
            "/tmp/rs",
            "--port",
            "7000",
            "--shards",
            "3",
            "--no-run-projector",
        ]
    )
    settings = cli.settings_from(args, {"RUNSTREAM_PORT": "6000", "RUNSTREAM_SHARDS": "5"})
    assert settings.database_url == "postgresql://db/rs"
    assert settings.data_dir == Path("/tmp/rs")
    assert settings.port == 7000
    assert settings.shards == 3
    assert settings.run_projector is False


def test_absent_flags_leave_the_environment_alone() -> None:
    args = cli.build_parser().parse_args(["api"])
    settings = cli.settings_from(args, {"RUNSTREAM_PORT": "6000", "RUNSTREAM_HOME": "/srv/rs"})
    assert settings.port == 6000
    assert settings.data_dir == Path("/srv/rs")
    assert settings.run_projector is True


def test_a_bad_variable_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["server"], environ={"RUNSTREAM_SHARDS": "many"}) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "RUNSTREAM_SHARDS" in err
    assert "'many'" in err


def test_a_bad_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["server", "--port", "x"], environ={})
    assert exited.value.code == 2
    assert "--port" in capsys.readouterr().err


def test_a_bad_log_level_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["migrate"], environ={"RUNSTREAM_LOG_LEVEL": "loud"}) == cli.EXIT_CONFIG
    assert "RUNSTREAM_LOG_LEVEL" in capsys.readouterr().err


@pytest.mark.parametrize("part", ["ingest", "api", "projector"])
def test_parts_refuse_to_run_without_store_urls(
    part: str, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {"RUNSTREAM_REDIS_URL": "redis://127.0.0.1:1/0"}
    assert cli.main([part], environ=environ) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "RUNSTREAM_DATABASE_URL is not set" in err
    assert "runstream server" in err


def test_bench_passes_its_arguments_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "bench"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(
        "import sys\nprint('bench args', sys.argv[1:])\nsys.exit(3)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    for name in [m for m in sys.modules if m == "bench" or m.startswith("bench.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["bench", "--points", "10", "ingest"], environ={}) == 3
    assert "bench args ['--points', '10', 'ingest']" in capsys.readouterr().out


def test_module_entry_point_is_the_cli() -> None:
    import runstream.__main__ as entry

    assert vars(entry)["main"] is cli.main
