"""The outermost error handler answers problem+json (Connexion 3.3 + Starlette ≥ 1.0 did not)."""

from __future__ import annotations

import httpx
import pytest
from connexion.middleware.main import ConnexionMiddleware
from connexion.middleware.server_error import ServerErrorMiddleware as ConnexionServerError

from bitnet_sdk.server.server_error import ServerErrorMiddleware, middlewares


async def _boom(scope, receive, send):
    raise RuntimeError("kaboom")


@pytest.mark.anyio
async def test_escaped_exception_becomes_a_problem_500():
    app = ServerErrorMiddleware(_boom)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.get("/anything")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 500
    assert "kaboom" not in r.text  # no internals leak


def test_stack_is_connexions_with_only_the_error_handler_replaced():
    defaults = ConnexionMiddleware.default_middlewares
    stack = middlewares()
    assert len(stack) == len(defaults)
    assert stack[0] is ServerErrorMiddleware and defaults[0] is ConnexionServerError
    assert stack[1:] == defaults[1:]


def test_each_app_gets_its_own_stack():
    from bitnet_sdk.server.app import create_app

    first, second = create_app(), create_app()
    assert first.middleware.middlewares[0] is ServerErrorMiddleware
    assert first.middleware.middlewares is not second.middleware.middlewares
    assert len(first.middleware.middlewares) == len(second.middleware.middlewares)
