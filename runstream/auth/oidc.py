"""Single sign-on: an OpenID Connect identity provider's JWTs accepted as bearer tokens.

With ``RUNSTREAM_OIDC_ISSUER`` and ``RUNSTREAM_OIDC_AUDIENCE`` set, a bearer token that is a
JWT is verified with PyJWT against the issuer's published keys (JWKS, found through its
discovery document unless ``RUNSTREAM_OIDC_JWKS_URL`` names it; keys are cached and refetched
when an unknown key id appears): signature, issuer, audience, expiry. The username is the
``RUNSTREAM_OIDC_USERNAME_CLAIM`` claim; ``RUNSTREAM_OIDC_ADMIN_VALUE`` in the
``RUNSTREAM_OIDC_ADMIN_CLAIM`` claim makes the caller an admin. A user seen for the first
time gets a runstream user (without a password) so that permissions can be granted to them.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from runstream.schemas.errors import Unauthenticated
from runstream.settings import Settings

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
"""Asymmetric only: a shared-secret (HS*) token could be minted by anyone holding the key."""
HTTP_TIMEOUT = 10.0


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith("rst_")


@dataclass(frozen=True, slots=True)
class Identity:
    username: str
    is_admin: bool
    expires_at: datetime


class OidcVerifier:
    def __init__(self, settings: Settings) -> None:
        assert settings.oidc_issuer and settings.oidc_audience
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience
        self.jwks_url = settings.oidc_jwks_url
        self.username_claim = settings.oidc_username_claim
        self.admin_claim = settings.oidc_admin_claim
        self.admin_value = settings.oidc_admin_value
        self._keys: jwt.PyJWKClient | None = None

    async def identity(self, token: str) -> Identity:
        """The verified identity of a JWT; Unauthenticated when anything does not hold."""
        try:
            keys = await self._key_client()
            # PyJWKClient fetches over blocking HTTP (only when the key is not cached).
            key = await asyncio.to_thread(keys.get_signing_key_from_jwt, token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, OSError, ValueError) as exc:
            raise Unauthenticated(f"Invalid identity token: {exc}") from exc
        username = claims.get(self.username_claim)
        if not isinstance(username, str) or not username:
            raise Unauthenticated(f"Identity token has no '{self.username_claim}' claim")
        granted = claims.get(self.admin_claim)
        values = granted if isinstance(granted, list) else [granted]
        is_admin = self.admin_value is not None and self.admin_value in values
        expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)
        return Identity(username, is_admin, expires_at)

    async def _key_client(self) -> jwt.PyJWKClient:
        if self._keys is None:
            url: str = self.jwks_url if self.jwks_url else await asyncio.to_thread(self._discover)
            self._keys = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=HTTP_TIMEOUT)
        return self._keys

    def _discover(self) -> str:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as answer:
            document = json.loads(answer.read())
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise ValueError(f"{url} has no jwks_uri")
        return jwks_uri
