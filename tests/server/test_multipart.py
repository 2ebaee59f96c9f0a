"""Multipart bodies: the size limit before Connexion buffers them, and validator parts closed."""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import httpx
import pytest
from connexion.uri_parsing import OpenAPIURIParser

from bitnet_sdk.server.multipart import BodyLimitMiddleware, ClosingMultiPartValidator
from bitnet_sdk.service.errors import ApiError

MULTIPART = b"multipart/form-data; boundary=xyz"


class Inner:
    """An ASGI app that reads the whole body and records what it got."""

    def __init__(self) -> None:
        self.body = b""
        self.called = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.called = True
        more = True
        while more:
            message = await receive()
            self.body += message.get("body", b"")
            more = message.get("more_body", False)


def _run(app: Any, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> int:
    """Drive ``app`` with a body in ``chunks``; returns how many chunks it pulled."""
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunks[pulled - 1],
                "more_body": pulled < len(chunks)}

    async def send(message: Any) -> None:
        raise AssertionError("nothing is sent by these apps")

    scope = {"type": "http", "method": "POST", "path": "/v1/models", "headers": headers}
    asyncio.run(app(scope, receive, send))
    return pulled


def _limited(inner: Inner, limit: int = 100) -> BodyLimitMiddleware:
    return BodyLimitMiddleware(inner, media_types=("multipart/form-data",), limit=lambda _: limit)


def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    inner = Inner()
    with pytest.raises(ApiError) as err:
        _run(_limited(inner), [(b"content-type", MULTIPART), (b"content-length", b"101")], [b"x"])
    assert err.value.status == 413 and err.value.ext["limit_bytes"] == 100
    assert not inner.called


def test_chunked_body_is_refused_when_it_passes_the_limit() -> None:
    inner = Inner()
    chunks = [b"a" * 40] * 5
    with pytest.raises(ApiError) as err:
        _run(_limited(inner), [(b"content-type", MULTIPART)], chunks)
    assert err.value.status == 413
    assert inner.body == b"a" * 80  # the third chunk crossed the limit: never handed on


def test_bodies_within_the_limit_and_other_types_pass() -> None:
    inner = Inner()
    _run(_limited(inner), [(b"content-type", MULTIPART), (b"content-length", b"100")], [b"b" * 100])
    assert inner.body == b"b" * 100
    raw = Inner()
    _run(_limited(raw), [(b"content-type", b"application/octet-stream")], [b"c" * 500] * 3)
    assert raw.body == b"c" * 1500


def test_validator_closes_the_parts_it_opens() -> None:
    request = httpx.Request("POST", "http://x/", files={"file": ("f.bin", b"\0" * 5000)},
                            data={"name": "n"})
    body = request.read()
    headers = [(k.lower().encode(), v.encode()) for k, v in request.headers.items()]
    schema = {"type": "object", "required": ["file", "name"], "additionalProperties": False,
              "properties": {"file": {"type": "string", "format": "binary"},
                             "name": {"type": "string"}}}
    validator = ClosingMultiPartValidator(schema=schema, required=True, encoding="utf-8",
                                          strict_validation=True,
                                          uri_parser=OpenAPIURIParser([], {"schema": schema}))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(validator.wrap_receive(receive, scope={"type": "http", "headers": headers}))
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
