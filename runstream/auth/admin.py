"""``runstream users ...``: the operator's tools, straight on the stores (no server needed).

Changes made here are audited like those made through the API (actor ``cli:<os user>``) and
bump the auth generation, so running servers drop cached credentials within a second.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime, timedelta
from typing import TextIO

from runstream.settings import Settings


def add_users_arguments(parser: argparse.ArgumentParser) -> None:
    # Not required here: a client-only install must first hear what to install (cli.main).
    actions = parser.add_subparsers(dest="users_action", metavar="ACTION")
    create = actions.add_parser("create", help="Create a user (password from stdin or a prompt).")
    create.add_argument("username")
    # not --admin: argparse would take it for an abbreviation of --admin-username
    create.add_argument("--is-admin", action="store_true", help="make the user an admin")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    reset = actions.add_parser("reset-password", help="Set a user's password.")
    reset.add_argument("username")
    reset.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    admin = actions.add_parser("set-admin", help="Grant or take away admin rights.")
    admin.add_argument("username")
    admin.add_argument("--revoke", dest="is_admin", action="store_false", help="take admin away")
    delete = actions.add_parser("delete", help="Delete a user (their tokens and grants go too).")
    delete.add_argument("username")
    actions.add_parser("list", help="List users.")
    issue = actions.add_parser("token-issue", help="Issue an API token (printed once).")
    issue.add_argument("username")
    issue.add_argument("--name", default="token", help="what the token is for")
    expiry = issue.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in-days", type=float, default=None)
    expiry.add_argument("--expires-at", default=None, help="ISO-8601 with a zone")
    revoke = actions.add_parser("token-revoke", help="Revoke a token by its id.")
    revoke.add_argument("token_id", type=int)
    tokens = actions.add_parser("token-list", help="List tokens (of one user).")
    tokens.add_argument("username", nargs="?", default=None)


ACTIONS = (
    "create",
    "reset-password",
    "set-admin",
    "delete",
    "list",
    "token-issue",
    "token-revoke",
    "token-list",
)


def _password(args: argparse.Namespace, stdin: TextIO) -> str:
    if args.password_stdin:
        return stdin.readline().rstrip("\n")
    first = getpass.getpass("Password (12 characters at least): ")
    if getpass.getpass("Again: ") != first:
        raise SystemExit("runstream: error: the passwords differ")
    return first


async def run_users(
    settings: Settings,
    args: argparse.Namespace,
    out: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    # Imported here: the parser is built for every command, this only for `users`.
    import asyncpg

    from runstream.auth.store import AuthStore, parse_expiry
    from runstream.resources import create_redis

    assert settings.database_url
    out = sys.stdout if out is None else out
    stdin = sys.stdin if stdin is None else stdin
    actor = f"cli:{getpass.getuser()}"
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    assert pool is not None
    redis = create_redis(settings)
    try:
        store = AuthStore(pool, redis, settings.stream_prefix)
        action = args.users_action
        if action == "create":
            user = await store.create_user(
                actor, args.username, _password(args, stdin), is_admin=args.is_admin
            )
            print(
                f"created user {user.username} (id {user.user_id}, admin: {user.is_admin})",
                file=out,
            )
        elif action == "reset-password":
            await store.update_password(actor, args.username, _password(args, stdin))
            print(f"password of {args.username} changed", file=out)
        elif action == "set-admin":
            await store.update_admin(actor, args.username, args.is_admin)
            print(f"{args.username} admin: {args.is_admin}", file=out)
        elif action == "delete":
            await store.delete_user(actor, args.username)
            print(f"deleted user {args.username}", file=out)
        elif action == "list":
            for user in await store.users():
                print(
                    f"{user.user_id}\t{user.username}\t{'admin' if user.is_admin else ''}", file=out
                )
        elif action == "token-issue":
            expires_at = parse_expiry(args.expires_at)
            if args.expires_in_days is not None:
                expires_at = datetime.now(UTC) + timedelta(days=args.expires_in_days)
            info, token = await store.issue_token(actor, args.username, args.name, expires_at)
            print(f"token {info.token_id} of {args.username} (shown once):", file=sys.stderr)
            print(token, file=out)
        elif action == "token-revoke":
            await store.revoke_token(actor, args.token_id)
            print(f"revoked token {args.token_id}", file=out)
        elif action == "token-list":
            for t in await store.tokens(args.username):
                state = "revoked" if t.revoked_at else f"expires {t.expires_at or 'never'}"
                print(f"{t.token_id}\t{t.username}\t{t.name}\t{state}", file=out)
        return 0
    finally:
        await pool.close()
        await redis.aclose()
