"""Settings.from_env: every variable parsed in one place, flags win, errors name the variable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

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
