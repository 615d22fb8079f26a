"""Passwords, API tokens and the ``Authorization`` header: hashing and parsing, no I/O.

Passwords are hashed with argon2id (argon2-cffi, OWASP's minimum parameters: 19 MiB, 2 passes,
1 lane), slow on purpose; a verified credential is then cached in-process so the write path
pays the hash once per ``auth_cache_seconds``. Tokens are 32 random bytes: nothing to guess,
so one sha256 is the right hash for them (fast to check, useless to a thief of the table).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from runstream.schemas.errors import InvalidParameterValue

MIN_PASSWORD_LENGTH = 12
"""MLflow 3.17's minimum."""
TOKEN_PREFIX = "rst_"
"""Tokens start with it, so a secret scanner can recognise them."""

_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def check_password(password: object) -> str:
    if not isinstance(password, str) or not password:
        raise InvalidParameterValue("Username and password cannot be empty.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidParameterValue(
            f"Password must be at least {MIN_PASSWORD_LENGTH} characters long."
        )
    return password


def check_username(username: object) -> str:
    if not isinstance(username, str) or not username:
        raise InvalidParameterValue("Username and password cannot be empty.")
    if len(username) > 255 or ":" in username or any(ch.isspace() for ch in username):
        raise InvalidParameterValue(
            "Username must be 1 to 255 characters without ':' or whitespace."
        )
    return username


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@functools.cache
def dummy_hash() -> str:
    """Verified against when the user does not exist, so timing does not tell who exists."""
    return hash_password("not a password of anyone")


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class BearerToken:
    token: str


Credentials = BasicCredentials | BearerToken


def parse_authorization(header: str | None) -> Credentials | None:
    """The credentials of an ``Authorization`` header; None when absent or malformed."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return BearerToken(value)
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    if not sep:
        return None
    return BasicCredentials(username, password)


def header_key(header: str) -> bytes:
    """Cache key of a verified header: its hash, so the cache holds no secret."""
    return hashlib.sha256(header.encode()).digest()
