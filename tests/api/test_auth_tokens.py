"""Access tokens the live server must refuse: every way a JWT can be wrong gets a 401 problem.

Each bad token is built from a good one by changing one thing, and the good
one is checked first with the same builder, so a refusal means the server
noticed that one thing.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bitnet_sdk import auth
from bitnet_sdk.config import Settings

PROBLEM = "application/problem+json"
TYP = "at+jwt"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


class Forge:
    """Makes access tokens for ``user_id`` the way the server does, with one change."""

    def __init__(self, settings: Any, user_id: str) -> None:
        self.secret = settings.secret()
        self.settings = settings
        self.user_id = user_id

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "sub": self.user_id, "tier": "developer", "scope": "models:read account",
            "iss": self.settings.jwt_issuer, "aud": self.settings.jwt_audience,
            "iat": now, "nbf": now, "exp": now + 600, "jti": f"jti{now}{id(changes)}",
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, *, key: Any = None, alg: str = "HS256", typ: str = TYP, **changes: Any) -> str:
        return jwt.encode(self.claims(**changes), self.secret if key is None else key,
                          algorithm=alg, headers={"typ": typ})


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """One server for the module: these tests only read, except one revoked token."""
    from bitnet_sdk.server.app import create_app
    from bitnet_sdk.server.asgi.testing import ServerThread

    settings = Settings(data_dir=tmp_path_factory.mktemp("tokens") / "data", demo_model=False)
    app = create_app(settings)
    with ServerThread(app) as server:
        server.app = app
        yield server


@pytest.fixture(scope="module")
def forge(live_server) -> Forge:
    settings = live_server.app.bitnet.settings
    user = auth.create_user("tokens@example.com", None, settings=settings)
    return Forge(settings, user.id)


def _get(server, token: str) -> httpx.Response:
    return httpx.get(server.url + "/v1/auth/me", headers={"Authorization": f"Bearer {token}"})


def _refused(server, token: str) -> None:
    r = _get(server, token)
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["status"] == 401


def test_the_forge_makes_tokens_the_server_accepts(live_server, forge):
    r = _get(live_server, forge.token())
    assert r.status_code == 200, r.text
    assert r.json()["scopes"] == ["models:read", "account"]


@pytest.mark.parametrize(
    "changes",
    [
        lambda now: {"exp": now - 120},  # expired beyond the 30 s leeway
        lambda now: {"nbf": now + 600, "iat": now + 600},  # not valid yet
        lambda now: {"iss": "someone-else"},
        lambda now: {"aud": "another-api"},
        lambda now: {"jti": None},  # a required claim missing
        lambda now: {"exp": None},
        lambda now: {"sub": "usr_doesnotexist0000000000"},
        lambda now: {"scope": 42},
    ],
    ids=["expired", "not-yet-valid", "issuer", "audience", "no-jti", "no-exp", "unknown-user",
         "bad-scope"],
)
def test_bad_claims_are_refused(live_server, forge, changes):
    # Times are taken when the test runs, not at collection: a long session must not age them.
    _refused(live_server, forge.token(**changes(int(time.time()))))


def test_other_key_is_refused(live_server, forge):
    _refused(live_server, forge.token(key="another-secret-of-sufficient-length-123456"))


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithm_with_the_right_key_is_refused(live_server, forge, alg):
    _refused(live_server, forge.token(alg=alg))


def test_rsa_signed_token_is_refused(live_server, forge):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _refused(live_server, forge.token(key=private, alg="RS256"))


def test_unsigned_token_is_refused(live_server, forge):
    claims = forge.claims()
    for alg in ("none", "None", "NONE"):
        unsigned = f"{_b64({'alg': alg, 'typ': TYP})}.{_b64(claims)}."
        _refused(live_server, unsigned)


def test_other_token_type_is_refused(live_server, forge):
    _refused(live_server, forge.token(typ="JWT"))


def test_tampered_payload_is_refused(live_server, forge):
    header, _, signature = forge.token().split(".")
    escalated = forge.claims(scope="models:read account admin metrics")
    _refused(live_server, f"{header}.{_b64(escalated)}.{signature}")
    _refused(live_server, forge.token()[:-2] + "AA")  # a flipped signature


def test_revoked_token_is_refused(live_server, forge):
    token = forge.token()
    r = httpx.post(live_server.url + "/v1/auth/logout",
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 204, r.text
    _refused(live_server, token)


def test_garbage_is_refused(live_server):
    for token in ("x", "a.b.c", "bn_nokey_zzz", "bnr_x.y", "Bearer", "é"):
        r = httpx.get(live_server.url + "/v1/auth/me",
                      headers={"Authorization": f"Bearer {token}".encode()})
        assert r.status_code == 401, (token, r.text)
        assert r.headers["content-type"] == PROBLEM
