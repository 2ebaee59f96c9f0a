"""Sending one call: credentials, token refresh, retries with backoff, and error answers
raised as :class:`~.errors.ApiError`. Sync and async twins share every decision."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from .client import BaseClient, Tokens
from .errors import ApiError, connection_error
from .retry import IDEMPOTENT_METHODS, retryable_status

__all__ = ["asend", "send"]


class _Call:
    """One call's request arguments and the decisions about repeating it."""

    def __init__(self, client: BaseClient, kwargs: dict[str, Any], *, secured: bool,
                 idempotency_header: str | None, accept: str) -> None:
        self.kwargs = {k: v for k, v in kwargs.items() if k != "headers"}
        headers = {k: str(v) for k, v in (kwargs.get("headers") or {}).items()}
        headers["Accept"] = accept
        if idempotency_header and not headers.get(idempotency_header):
            headers[idempotency_header] = str(uuid.uuid4())  # one key for every attempt
        self.headers = headers
        self.secured = secured
        self.idempotent = str(kwargs["method"]).upper() in IDEMPOTENT_METHODS or idempotency_header is not None
        self.policy = client.retry
        self._files = [f for f in _file_objects(self.kwargs) if hasattr(f, "seek")]
        self._starts = [f.tell() for f in self._files]
        self.replayable = all(hasattr(f, "seek") for f in _file_objects(self.kwargs)) and not _is_iterator(
            self.kwargs.get("content"))

    def build(self, http: httpx.Client | httpx.AsyncClient, client: BaseClient, token: str | None) -> httpx.Request:
        for f, start in zip(self._files, self._starts, strict=True):
            f.seek(start)
        headers = {**client.headers, **self.headers, **client.auth_headers(self.secured, token)}
        return http.build_request(**self.kwargs, headers=headers, timeout=client.timeout)

    def retry_delay(self, attempt: int, error: ApiError | None) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        if attempt >= self.policy.max_retries or not self.replayable:
            return None
        if error is None:  # the request failed in transport
            return self.policy.backoff(attempt) if self.idempotent else None
        if not retryable_status(error.status, self.idempotent):
            return None
        wait = error.retry_after if error.retry_after is not None else self.policy.backoff(attempt)
        return wait if wait <= self.policy.max_retry_after else None


def _file_objects(kwargs: dict[str, Any]) -> list[Any]:
    found = []
    content = kwargs.get("content")
    if hasattr(content, "read"):
        found.append(content)
    for item in kwargs.get("files") or []:
        value = item[1] if isinstance(item, tuple) else item
        payload = value[1] if isinstance(value, tuple) and len(value) > 1 else value
        if hasattr(payload, "read"):
            found.append(payload)
    return found


def _is_iterator(content: Any) -> bool:
    if content is None or isinstance(content, bytes | str) or hasattr(content, "read"):
        return False
    return hasattr(content, "__iter__") or hasattr(content, "__aiter__")


def _store_tokens(client: BaseClient, response: httpx.Response) -> bool:
    if not response.is_success:
        return False
    data = response.json()
    if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
        return False
    client.set_tokens(data["access_token"], data.get("refresh_token"))
    if client.on_tokens is not None:
        client.on_tokens(Tokens(data["access_token"], client.refresh_token, data.get("expires_in")))
    return True


def _refresh_form(client: BaseClient) -> dict[str, Any]:
    return {"json": {"refresh_token": client.refresh_token or ""}, "headers": {"Accept": "application/json"}}


def _refresh(client: BaseClient, used: str | None) -> bool:
    with client.refresh_lock:
        if client.token != used:
            return True  # another call refreshed meanwhile
        try:
            response = client.get_httpx_client().post(str(client.refresh_path), **_refresh_form(client))
            return _store_tokens(client, response)
        except (httpx.HTTPError, ValueError):
            return False


async def _arefresh(client: BaseClient, used: str | None) -> bool:
    async with client.async_refresh_lock():
        if client.token != used:
            return True
        try:
            response = await client.get_async_httpx_client().post(str(client.refresh_path), **_refresh_form(client))
            return _store_tokens(client, response)
        except (httpx.HTTPError, ValueError):
            return False


def _can_refresh(client: BaseClient, call: _Call) -> bool:
    return call.secured and client.refresh_token is not None and client.refresh_path is not None


def send(client: BaseClient, kwargs: dict[str, Any], *, secured: bool, idempotency_header: str | None = None,
         stream: bool = False, accept: str = "application/json") -> httpx.Response:
    """Send until an attempt succeeds (2xx) or it is no use trying again (then raise ApiError).

    With ``stream`` the body is left unread: the caller must close the response.
    """
    call = _Call(client, kwargs, secured=secured, idempotency_header=idempotency_header, accept=accept)
    http = client.get_httpx_client()
    refreshed, attempt = False, 0
    while True:
        used = client.token
        try:
            response = http.send(call.build(http, client, used), stream=True)
        except httpx.TransportError as exc:
            delay = call.retry_delay(attempt, None)
            if delay is None:
                raise connection_error(exc) from exc
            time.sleep(delay)
            attempt += 1
            continue
        if response.is_success:
            if not stream:
                try:
                    response.read()
                finally:
                    response.close()
            return response
        try:
            response.read()
        finally:
            response.close()
        error = ApiError.from_response(response)
        if response.status_code == 401 and not refreshed and _can_refresh(client, call):
            refreshed = True
            if _refresh(client, used):
                continue
            raise error
        delay = call.retry_delay(attempt, error)
        if delay is None:
            raise error
        time.sleep(delay)
        attempt += 1


async def asend(client: BaseClient, kwargs: dict[str, Any], *, secured: bool, idempotency_header: str | None = None,
                stream: bool = False, accept: str = "application/json") -> httpx.Response:
    """The ``async`` twin of :func:`send`."""
    call = _Call(client, kwargs, secured=secured, idempotency_header=idempotency_header, accept=accept)
    http = client.get_async_httpx_client()
    refreshed, attempt = False, 0
    while True:
        used = client.token
        try:
            response = await http.send(call.build(http, client, used), stream=True)
        except httpx.TransportError as exc:
            delay = call.retry_delay(attempt, None)
            if delay is None:
                raise connection_error(exc) from exc
            await asyncio.sleep(delay)
            attempt += 1
            continue
        if response.is_success:
            if not stream:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            return response
        try:
            await response.aread()
        finally:
            await response.aclose()
        error = ApiError.from_response(response)
        if response.status_code == 401 and not refreshed and _can_refresh(client, call):
            refreshed = True
            if await _arefresh(client, used):
                continue
            raise error
        delay = call.retry_delay(attempt, error)
        if delay is None:
            raise error
        await asyncio.sleep(delay)
        attempt += 1
