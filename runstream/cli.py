"""The ``runstream`` command: the server, its parts, and the operator's tools.

Every flag that sets a ``Settings`` field is generated from the field, so ``--help`` shows
its doc and its variable, a flag wins over the variable, and both are parsed by the same typed
parser (``runstream.settings.parse_text``). Only this module configures logging.

This module imports no server code at module level: in a client-only install
(``pip install runstream``) ``runstream sync`` and ``--help`` work, and the server commands
say which install they need.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import inspect
import itertools
import logging
import os
import re
import runpy
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from runstream import __version__
from runstream.logs import configure_logging
from runstream.preflight import PreflightError
from runstream.schemas.errors import ConfigurationError
from runstream.settings import Settings, env_name, field_types, parse_text, settable_fields

logger = logging.getLogger("runstream.cli")

EXIT_CONFIG = 2
SERVER_EXTRA = "server"
SERVER_COMMANDS = ("server", "ingest", "api", "projector", "migrate", "replay", "users", "bench")
"""Commands that need ``runstream[server]``; ``sync`` is the client's own."""
LOG_LEVEL_ENV = "RUNSTREAM_LOG_LEVEL"

# Fields shown first, in their own group: what an operator sets.
_MAIN_FIELDS = (
    "database_url",
    "redis_url",
    "artifacts_url",
    "s3_endpoint_url",
    "data_dir",
    "host",
    "port",
    "public_url",
    "stream_prefix",
    "shards",
)

_FALLBACK_DOCS = {
    "host": "Address to listen on (0.0.0.0 for every interface).",
    "port": "TCP port to listen on.",
    "max_body_bytes": "Largest request body accepted (bytes); larger answers 413.",
    "projector_block_ms": "How long one XREADGROUP waits for new entries (ms).",
    "db_pool_min": "Smallest PostgreSQL connection pool per process.",
    "db_pool_max": "Largest PostgreSQL connection pool per process.",
}


# What the one-off commands read (their --help lists these only); the services take every field.
_MIGRATE_FIELDS = ("database_url", "data_dir")
_REPLAY_FIELDS = ("database_url", "data_dir", "chunk_points")
_USERS_FIELDS = ("database_url", "redis_url", "stream_prefix", "data_dir")
REPLAY_BATCH = 2_000
"""``projector.replay.REPLAY_BATCH``, repeated so --help needs no server package (a test checks)."""


@cache
def field_docs() -> dict[str, str]:
    """Attribute docstrings of ``Settings`` (the string under each field), read from source."""
    try:
        tree = ast.parse(inspect.getsource(Settings))
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            text = " ".join(following.value.value.split()).replace("``", "")
            docs[node.target.id] = re.sub(r"\s*\(env: [A-Z_]+\)", "", text)
    return {**_FALLBACK_DOCS, **docs}


def settings_fields() -> list[dataclasses.Field[Any]]:
    return settable_fields()


_METAVARS: dict[type, str] = {int: "N", float: "X", Path: "DIR"}


def flag_type(field_name: str) -> Callable[[str], Any]:
    """argparse's ``type=`` for a field: the settings parser, its error as argparse's."""

    def parse(raw: str) -> Any:
        try:
            return parse_text(field_name, raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{raw!r}: {exc}") from None

    return parse


def _add_settings_flags(parser: argparse.ArgumentParser, only: Sequence[str] | None = None) -> None:
    docs = field_docs()
    types = field_types()
    main = parser.add_argument_group("stores and network")
    tuning = parser.add_argument_group("tuning")
    for f in settings_fields():
        group = main if f.name in _MAIN_FIELDS else tuning
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = "unset" if default is None else default
        help_text = f"{docs.get(f.name, '')} (env: {env_name(f.name)}; default: {shown})"
        help_text = help_text.replace("%", "%%").strip()
        if only is not None and f.name not in only:
            # Not read by this command: still accepted (scripts that pass it keep working),
            # not listed by --help.
            help_text = argparse.SUPPRESS
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": help_text}
        if types[f.name] is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        kwargs["type"] = flag_type(f.name)
        kwargs["metavar"] = _METAVARS.get(types[f.name]) or (
            "URL" if f.name.endswith("url") else f.name.upper()
        )
        group.add_argument(flag, **kwargs)


def _add_log_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default=None,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help=f"log level (env: {LOG_LEVEL_ENV}; default: INFO)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runstream",
        description="Event-sourced, MLflow-compatible experiment tracking.",
    )
    parser.add_argument("--version", action="version", version=f"runstream {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, help_text: str, settings: bool = True, only: Sequence[str] | None = None
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _add_log_flag(sub)
        if settings:
            _add_settings_flags(sub, only)
        return sub

    command(
        "server",
        "Run everything in one process: ingest, projector and api on one port, with an "
        "embedded PostgreSQL and Valkey for whichever URL is unset.",
    ).set_defaults(handler=_cmd_server)
    for part, text in (
        ("ingest", "Run the ingest service (writes) against external stores."),
        ("api", "Run the query api (reads, MLflow routes, artifacts) against external stores."),
        ("projector", "Run a projector (stream -> PostgreSQL) against external stores."),
    ):
        command(part, text).set_defaults(handler=_cmd_part, part=part)
    command(
        "migrate",
        "Apply database migrations (embedded PostgreSQL if no URL).",
        only=_MIGRATE_FIELDS,
    ).set_defaults(handler=_cmd_migrate)
    replay = command(
        "replay",
        "Rebuild every read table from the event log, in one transaction (embedded PostgreSQL "
        "under --data-dir if no URL).",
        only=_REPLAY_FIELDS,
    )
    replay.add_argument(
        "--batch",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"event-log entries planned and applied together (default: {REPLAY_BATCH})",
    )
    replay.set_defaults(handler=_cmd_replay)

    dead = command(
        "dead-letters",
        "Show and repair stream entries the projector could not apply: list them, show one, "
        "append one to its stream again (retry) or forget it (drop).",
    )
    dead.add_argument("action", choices=("list", "show", "retry", "drop"))
    dead.add_argument("--shard", type=int, default=None, help="shard of the dead letter")
    dead.add_argument("--id", dest="dead_id", default=None, help="id of the dead letter")
    dead.set_defaults(handler=_cmd_dead_letters)

    users = command(
        "users",
        "Manage users, admin rights and API tokens (auth, docs/auth.md); embedded stores if "
        "no URL.",
        only=_USERS_FIELDS,
    )
    from runstream.auth.admin import add_users_arguments

    add_users_arguments(users)
    users.set_defaults(handler=_cmd_users)

    sync = command("sync", "Upload runs the SDK spooled to disk while offline.", settings=False)
    sync.add_argument("--url", default=None, help="server URL (default: the SDK's own default)")
    sync.add_argument("--spool-dir", type=Path, default=None, help="spool folder")
    sync.set_defaults(handler=_cmd_sync)

    bench = commands.add_parser(
        "bench",
        help="Run the benchmarks (python -m bench); arguments after `bench` are passed on.",
        description="Run the benchmarks from a runstream clone: `runstream bench ARGS` is "
        "`python -m bench ARGS` (see `runstream bench --bench-help`).",
    )
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments for python -m bench")
    bench.set_defaults(handler=lambda args, environ: run_bench(args.args))
    return parser


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r}: expected an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{raw!r}: must be at least 1")
    return value


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    flags = {f.name: getattr(args, f.name, None) for f in settings_fields()}
    return Settings.from_env(environ, **flags)


def missing_server_packages() -> list[str]:
    """The distributions of ``runstream[server]`` that are not installed (none if unknown)."""
    try:
        requirements = importlib.metadata.requires("runstream") or []
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return []
    missing = []
    for requirement in requirements:
        name, _, marker = requirement.partition(";")
        if f'extra == "{SERVER_EXTRA}"' not in marker.replace("'", '"'):
            continue
        name = re.split(r"[\s<>=!~\[(]", name.strip(), maxsplit=1)[0]
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def _server_install_needed(command: str) -> int | None:
    """Exit code 2 and one line when a server command runs in a client-only install."""
    missing = missing_server_packages()
    if not missing:
        return None
    print(
        f"runstream: `runstream {command}` needs the server: pip install 'runstream[server]' "
        f"(not installed: {', '.join(missing)})",
        file=sys.stderr,
    )
    return EXIT_CONFIG


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of the ``runstream`` command; returns the exit code."""
    environ = os.environ if environ is None else environ
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"] and argv[1:2] not in (["-h"], ["--help"]):
        # Everything after `bench` is bench's own (argparse would take its --flags as ours).
        refused = _server_install_needed("bench")
        return refused if refused is not None else run_bench(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in SERVER_COMMANDS:
        refused = _server_install_needed(args.command)
        if refused is not None:
            return refused
    level = args.log_level or environ.get(LOG_LEVEL_ENV, "").upper() or "INFO"
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        print(f"runstream: error: {LOG_LEVEL_ENV}={level!r}: not a log level", file=sys.stderr)
        return EXIT_CONFIG
    handler: Callable[[argparse.Namespace, Mapping[str, str]], int] = args.handler
    configure_logging(level)
    try:
        return handler(args, environ)
    except ConfigurationError as error:
        print(f"runstream: error: {error.message}", file=sys.stderr)
        return EXIT_CONFIG
    except PreflightError as error:  # port taken, data folder held by another server
        print(f"runstream: error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    except OSError as error:  # a store that does not answer, a port in use, ...
        logger.debug("stopped by", exc_info=True)
        print(f"runstream: error: {error}", file=sys.stderr)
        return 1


def _cmd_server(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from runstream.embedded import EmbeddedStoreError
    from runstream.server import run_server

    settings = settings_from(args, environ)
    try:
        return run_server(settings)
    except EmbeddedStoreError as error:
        print(f"runstream: error: {error}", file=sys.stderr)
        return 1


def _require_store_urls(settings: Settings, command: str) -> None:
    for name in ("database_url", "redis_url"):
        if getattr(settings, name) is None:
            raise ConfigurationError(
                f"{env_name(name)} is not set: `runstream {command}` runs against external "
                "stores (use `runstream server` for the all-in-one default with embedded stores)"
            )


def _cmd_part(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from runstream.server import run_parts

    settings = settings_from(args, environ)
    _require_store_urls(settings, args.part)
    return run_parts(settings, (args.part,))


@contextlib.contextmanager
def _database_for(settings: Settings) -> Iterator[str]:
    """The DSN a one-off command (migrate, replay) works on: the given URL, else an embedded
    PostgreSQL under ``data_dir``, held with the folder's lock so no server shares it."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    from runstream.embedded import EmbeddedStores
    from runstream.preflight import DataDirLock

    with DataDirLock(settings.data_dir), EmbeddedStores(settings.data_dir, redis=False) as stores:
        yield stores.database_url


def _cmd_migrate(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from runstream.projector.migrations import migrate_dsn

    with _database_for(settings_from(args, environ)) as dsn:
        applied = asyncio.run(migrate_dsn(dsn))
    print(f"applied migrations: {applied}" if applied else "database is up to date")
    return 0


def _cmd_replay(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from runstream.projector.migrations import migrate_dsn
    from runstream.projector.replay import replay

    settings = settings_from(args, environ)
    # Replay reads the event log in PostgreSQL only: no Redis is started for it.
    with _database_for(settings) as dsn:
        settings = settings.replace(database_url=dsn)
        asyncio.run(migrate_dsn(dsn))
        result = asyncio.run(replay(settings, batch=args.batch or REPLAY_BATCH))
    print(result)
    return 0


def _cmd_dead_letters(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from runstream.projector.dead_letters import operate
    from runstream.resources import create_redis

    settings = settings_from(args, environ)
    if settings.redis_url is None:
        raise ConfigurationError(f"{env_name('redis_url')} is not set: dead letters live in Redis")

    async def run() -> int:
        redis = create_redis(settings)
        try:
            return await operate(
                redis,
                settings.stream_prefix,
                settings.shards,
                args.action,
                args.shard,
                args.dead_id,
                sys.stdout,
            )
        finally:
            await redis.aclose()

    return asyncio.run(run())


@contextlib.contextmanager
def _stores_for(settings: Settings) -> Iterator[Settings]:
    """Settings whose store URLs answer: the given ones, else embedded stores under
    ``data_dir``, held with the folder's lock (stop a server that uses them first)."""
    if settings.database_url is not None and settings.redis_url is not None:
        yield settings
        return
    from runstream.embedded import EmbeddedStores
    from runstream.preflight import DataDirLock

    with (
        DataDirLock(settings.data_dir),
        EmbeddedStores(
            settings.data_dir,
            postgres=settings.database_url is None,
            redis=settings.redis_url is None,
        ) as stores,
    ):
        yield settings.replace(
            database_url=settings.database_url or stores.database_url,
            redis_url=settings.redis_url or stores.redis_url,
        )


def _cmd_users(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from runstream.auth.admin import ACTIONS, run_users
    from runstream.projector.migrations import migrate_dsn
    from runstream.schemas.errors import RunstreamError

    if args.users_action is None:
        print(f"runstream users: error: name an action: {', '.join(ACTIONS)}", file=sys.stderr)
        return EXIT_CONFIG

    with _stores_for(settings_from(args, environ)) as settings:
        assert settings.database_url
        asyncio.run(migrate_dsn(settings.database_url))
        try:
            return asyncio.run(run_users(settings, args))
        except ConfigurationError:
            raise
        except RunstreamError as error:
            print(f"runstream: error: {error.message}", file=sys.stderr)
            return 1


def _cmd_sync(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from runstream.client.spool import sync_spool

    result = sync_spool(args.url, args.spool_dir)
    print(
        f"sent {result.batches_sent} batches ({result.points_sent} points), "
        f"{result.batches_pending} pending, {result.batches_rejected} rejected"
    )
    for error in result.errors:
        print(f"error: {error}", file=sys.stderr)
    # Pending batches (server unreachable) are a failure too: a script must not take them as done.
    return 0 if result.ok else 1


def run_bench(argv: Sequence[str]) -> int:
    """``runstream bench ARGS``: run ``python -m bench ARGS`` in this process."""
    argv = ["--help" if a == "--bench-help" else a for a in argv]
    # bench/ lives in the repository, not in the installed package: run it from a clone.
    if importlib.util.find_spec("bench") is None:
        sys.path.insert(0, os.getcwd())
        if importlib.util.find_spec("bench") is None:
            print(
                "runstream: error: no `bench` package here; run `runstream bench` from the "
                "root of a runstream clone",
                file=sys.stderr,
            )
            return 1
    sys.argv = ["python -m bench", *argv]
    try:
        runpy.run_module("bench", run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
