"""Settings.from_env: every variable parsed in one place, flags win, errors name the variable."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

import pytest

from runstream import settings
from runstream.schemas.errors import ConfigurationError
from runstream.settings import Settings


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.artifacts_url is None
    assert settings.data_dir == Path("runstream-data")
    assert (settings.host, settings.port) == ("127.0.0.1", 5000)
    assert settings.tracking_uri == "http://127.0.0.1:5000"


def test_every_kind_of_field_is_parsed() -> None:
    settings = Settings.from_env(
        {
            "RUNSTREAM_DATABASE_URL": "postgresql://u:p@db:5432/rs",
            "RUNSTREAM_REDIS_URL": "redis://cache:6379/1",
            "RUNSTREAM_HOME": "/srv/runstream",
            "RUNSTREAM_PORT": "8080",
            "RUNSTREAM_SHARDS": "16",
            "RUNSTREAM_READ_YOUR_WRITES_TIMEOUT": "2.5",
            "RUNSTREAM_RUN_PROJECTOR": "false",
            "RUNSTREAM_UNRELATED": "ignored",
        }
    )
    assert settings.database_url == "postgresql://u:p@db:5432/rs"
    assert settings.redis_url == "redis://cache:6379/1"
    assert settings.data_dir == Path("/srv/runstream")
    assert settings.port == 8080
    assert settings.shards == 16
    assert settings.read_your_writes_timeout == 2.5
    assert settings.run_projector is False


def test_empty_variables_mean_unset() -> None:
    assert Settings.from_env({"RUNSTREAM_DATABASE_URL": "", "RUNSTREAM_PORT": ""}) == Settings()


def test_flags_win_over_the_environment_and_none_flags_do_not() -> None:
    environ = {"RUNSTREAM_PORT": "8080", "RUNSTREAM_HOST": "0.0.0.0"}
    settings = Settings.from_env(environ, port=9000, host=None)
    assert settings.port == 9000
    assert settings.host == "0.0.0.0"
    assert settings.tracking_uri == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RUNSTREAM_PORT", "eighty"),
        ("RUNSTREAM_PORT", "70000"),
        ("RUNSTREAM_SHARDS", "0"),
        ("RUNSTREAM_RUN_PROJECTOR", "maybe"),
        ("RUNSTREAM_DATABASE_URL", "mysql://db/rs"),
        ("RUNSTREAM_REDIS_URL", "http://cache"),
        ("RUNSTREAM_STREAM_PREFIX", "has space"),
    ],
)
def test_bad_values_name_the_variable_and_the_value(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({variable: value})
    assert variable in caught.value.message
    assert value in caught.value.message


def test_public_url_is_the_tracking_uri() -> None:
    settings = Settings.from_env({"RUNSTREAM_PUBLIC_URL": "https://track.example.com/"})
    assert settings.tracking_uri == "https://track.example.com"


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]
    assert settings.replace(port=1).port == 1


# -- the typed parser: one per field type, driven by the annotations ----------------------------


def test_every_field_has_a_parser_for_its_type() -> None:
    types = settings.field_types()
    assert set(types) == {f.name for f in dataclasses.fields(Settings)} - {"extra"}
    assert set(types.values()) <= set(settings.PARSERS)
    assert types["port"] is int
    assert types["read_your_writes_timeout"] is float
    assert types["run_projector"] is bool
    assert types["data_dir"] is Path
    assert types["database_url"] is str  # `str | None` parses as str
    assert types["consumer_name"] is str


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [(int, int), (int | None, int), (Optional[float], float), (Path | None, Path)],  # noqa: UP045
)
def test_optional_fields_parse_as_their_type(annotation: object, expected: type) -> None:
    assert settings.value_type(annotation) is expected


@pytest.mark.parametrize("annotation", [int | str, list[int], Mapping[str, int]])
def test_a_field_type_without_a_parser_is_a_programming_error(annotation: object) -> None:
    with pytest.raises(TypeError):
        settings.value_type(annotation)


@pytest.mark.parametrize(
    ("field", "raw", "value"),
    [
        ("port", "8080", 8080),
        ("port", " 8080 ", 8080),
        ("backlog_limit", "200_000", 200_000),
        ("read_your_writes_timeout", "2.5", 2.5),
        ("read_your_writes_timeout", "3", 3.0),
        ("run_projector", "TRUE", True),
        ("run_projector", "yes", True),
        ("run_projector", "on", True),
        ("run_projector", "1", True),
        ("run_projector", "False", False),
        ("run_projector", "no", False),
        ("run_projector", "off", False),
        ("run_projector", "0", False),
        ("data_dir", "~/rs data", Path("~/rs data")),
        ("consumer_name", "host:1", "host:1"),
        ("redis_url", "redis://cache:6379/1", "redis://cache:6379/1"),
    ],
)
def test_each_type_parses_its_text(field: str, raw: str, value: object) -> None:
    parsed = settings.parse_field(field, raw)
    assert parsed == value
    assert type(parsed) is type(value)


@pytest.mark.parametrize(
    ("variable", "raw", "reason"),
    [
        ("RUNSTREAM_PORT", "80.5", "expected an integer"),
        ("RUNSTREAM_SHARDS", "", None),  # empty: unset, not an error
        ("RUNSTREAM_CHUNK_POINTS", "1k", "expected an integer"),
        ("RUNSTREAM_READ_YOUR_WRITES_TIMEOUT", "soon", "expected a number"),
        ("RUNSTREAM_READ_YOUR_WRITES_TIMEOUT", "nan", "expected a finite number"),
        ("RUNSTREAM_READ_YOUR_WRITES_TIMEOUT", "inf", "expected a finite number"),
        ("RUNSTREAM_RUN_PROJECTOR", "maybe", "expected one of 1, true"),
    ],
)
def test_parse_errors_name_the_variable_the_value_and_what_was_expected(
    variable: str, raw: str, reason: str | None
) -> None:
    if reason is None:
        assert Settings.from_env({variable: raw}) == Settings()
        return
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({variable: raw})
    assert caught.value.message.startswith(f"{variable}={raw!r}: {reason}")


def test_a_bad_variable_exits_the_command_with_2(capsys: pytest.CaptureFixture[str]) -> None:
    from runstream import cli

    assert cli.main(["migrate"], environ={"RUNSTREAM_CHUNK_POINTS": "lots"}) == 2
    assert "RUNSTREAM_CHUNK_POINTS='lots': expected an integer" in capsys.readouterr().err


def test_every_variable_round_trips_through_the_parser() -> None:
    # Each field's default, written as text the way an operator would, parses back to itself.
    for f in settings.settable_fields():
        if f.default is None:
            continue
        text = str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
        parsed = Settings.from_env({settings.env_name(f.name): text})
        assert getattr(parsed, f.name) == f.default, f.name
