"""Single sign-on: JWTs of a local identity provider (own RSA key, JWKS served by the test)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa

from runstream.server import build_app
from runstream.settings import Settings

AUDIENCE = "runstream"
KID = "test-key"


@pytest.fixture
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def issuer(key: rsa.RSAPrivateKey) -> AsyncIterator[str]:
    """An identity provider's discovery document and JWKS, on a local port."""
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    app = web.Application()
    base: dict[str, str] = {}

    async def discovery(request: web.Request) -> web.Response:
        return web.json_response({"issuer": base["url"], "jwks_uri": base["url"] + "/jwks"})

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response({"keys": [{**public, "kid": KID, "alg": "RS256", "use": "sig"}]})

    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks", jwks)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base["url"] = str(server.make_url("")).rstrip("/")
    try:
        yield base["url"]
    finally:
        await server.close()


@pytest.fixture
async def url(settings: Settings, issuer: str) -> AsyncIterator[str]:
    auth = dataclasses.replace(
        settings,
        auth="basic",
        admin_password="admin-password-0123",
        oidc_issuer=issuer,
        oidc_audience=AUDIENCE,
        oidc_username_claim="preferred_username",
        oidc_admin_value="mlops",
    )
    server = TestServer(build_app(auth), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def token(key: rsa.RSAPrivateKey, issuer: str, **claims: Any) -> str:
    body = {
        "iss": issuer,
        "aud": AUDIENCE,
        "exp": int(time.time()) + 300,
        "preferred_username": "carol",
        **claims,
    }
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": KID})


async def status_of(
    http: aiohttp.ClientSession, url: str, bearer: str, method: str = "GET", body: Any = None
) -> int:
    headers = {"Authorization": f"Bearer {bearer}"}
    async with http.request(method, url, headers=headers, json=body) as answer:
        return answer.status


async def test_identity_provider_tokens(
    url: str, issuer: str, key: rsa.RSAPrivateKey, http: aiohttp.ClientSession
) -> None:
    get = f"{url}/api/2.0/mlflow/experiments/get?experiment_id=0"
    assert await status_of(http, get, token(key, issuer)) == 200
    async with http.get(
        f"{url}/api/2.0/mlflow/users/current",
        headers={"Authorization": f"Bearer {token(key, issuer)}"},
    ) as answer:
        me = await answer.json()
    assert me["user"]["username"] == "carol" and me["user"]["is_admin"] is False

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert await status_of(http, get, token(other_key, issuer)) == 401  # not the issuer's key
    assert await status_of(http, get, token(key, issuer, aud="someone-else")) == 401
    assert await status_of(http, get, token(key, "https://evil.example")) == 401
    assert await status_of(http, get, token(key, issuer, exp=int(time.time()) - 10)) == 401
    assert await status_of(http, get, token(key, issuer, preferred_username=None)) == 401

    create = f"{url}/api/2.0/mlflow/users/create"
    body = {"username": "dave", "password": "dave-password-0123"}
    assert await status_of(http, create, token(key, issuer), "POST", body) == 403
    admin = token(key, issuer, preferred_username="erin", groups=["staff", "mlops"])
    assert await status_of(http, create, admin, "POST", body) == 200
