"""The WebSocket client: token streaming and job progress over one connection.

Needs the ``websockets`` package (``pip install "<this package>[ws]"``). The connection
authenticates with the client's credential (an ``auth`` message, answered ``ready``), then
carries several generations and job subscriptions at once; messages are the JSON objects the
API describes (``WsServerMessage``). :class:`InferenceSocket` blocks (one socket per
thread); :class:`AsyncInferenceSocket` is its asyncio twin (:func:`aconnect`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from types import TracebackType
from typing import Any

from .client import BaseClient
from .errors import ApiError, AuthenticationError, PermissionDeniedError

__all__ = ["AsyncInferenceSocket", "InferenceSocket", "aconnect", "connect"]

_ids = itertools.count(1)


class InferenceSocket:
    """One authenticated WebSocket; ``ready`` is the server's greeting (user id, scopes)."""

    def __init__(self, connection: Any) -> None:
        self._ws = connection
        self._pending: deque[dict[str, Any]] = deque()
        self.ready: dict[str, Any] = {}

    def send(self, message: Mapping[str, Any]) -> None:
        self._ws.send(json.dumps(message))

    def recv(self, timeout: float | None = None) -> dict[str, Any]:
        """The next server message (one set aside by :meth:`generate` first)."""
        if self._pending:
            return self._pending.popleft()
        return self._read(timeout)

    def generate(self, request: Any, request_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Run an ``InferenceRequest`` (a model or a dict): its ``token`` messages, then ``done``.

        An ``error`` message for it raises :class:`ApiError`; messages of other requests or
        jobs are kept for :meth:`recv`. Leaving the loop early cancels the generation.
        """
        rid = request_id or f"r{next(_ids)}"
        body = request.to_dict() if hasattr(request, "to_dict") else dict(request)
        self.send({"type": "generate", "request_id": rid, "request": body})
        finished = False
        try:
            while True:
                message = self._read(None)
                if message.get("request_id") != rid or message.get("type") not in {"token", "done", "error"}:
                    self._pending.append(message)
                    continue
                if message["type"] == "error":
                    finished = True
                    raise ApiError.from_problem(message.get("error"))
                yield message
                if message["type"] == "done":
                    finished = True
                    return
        finally:
            if not finished:
                self.send({"type": "cancel", "request_id": rid})

    def subscribe(self, job_id: str) -> None:
        """Receive ``progress`` messages (with the job) whenever the job changes."""
        self.send({"type": "subscribe", "job_id": job_id})

    def unsubscribe(self, job_id: str) -> None:
        self.send({"type": "unsubscribe", "job_id": job_id})

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> InferenceSocket:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _read(self, timeout: float | None) -> dict[str, Any]:
        from websockets.exceptions import ConnectionClosed

        try:
            data = json.loads(self._ws.recv(timeout=timeout))
        except ConnectionClosed as exc:
            raise _closed(exc.rcvd.code if exc.rcvd else 1006, exc.rcvd.reason if exc.rcvd else "") from exc
        if not isinstance(data, dict):
            raise ApiError(status=0, title="unexpected WebSocket message", body=data)
        return data


class AsyncInferenceSocket:
    """The asyncio twin of :class:`InferenceSocket` (every method is a coroutine, ``generate``
    an async iterator)."""

    def __init__(self, connection: Any) -> None:
        self._ws = connection
        self._pending: deque[dict[str, Any]] = deque()
        self.ready: dict[str, Any] = {}

    async def send(self, message: Mapping[str, Any]) -> None:
        await self._ws.send(json.dumps(message))

    async def recv(self, timeout: float | None = None) -> dict[str, Any]:
        """The next server message (one set aside by :meth:`generate` first)."""
        if self._pending:
            return self._pending.popleft()
        return await self._read(timeout)

    async def generate(self, request: Any, request_id: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Run an ``InferenceRequest``: its ``token`` messages, then ``done``; as
        :meth:`InferenceSocket.generate`. Leaving the loop early cancels the generation once the
        iterator is closed: use ``contextlib.aclosing(socket.generate(...))`` to do it at once."""
        rid = request_id or f"r{next(_ids)}"
        body = request.to_dict() if hasattr(request, "to_dict") else dict(request)
        await self.send({"type": "generate", "request_id": rid, "request": body})
        finished = False
        try:
            while True:
                message = await self._read(None)
                if message.get("request_id") != rid or message.get("type") not in {"token", "done", "error"}:
                    self._pending.append(message)
                    continue
                if message["type"] == "error":
                    finished = True
                    raise ApiError.from_problem(message.get("error"))
                yield message
                if message["type"] == "done":
                    finished = True
                    return
        finally:
            if not finished:
                await self.send({"type": "cancel", "request_id": rid})

    async def subscribe(self, job_id: str) -> None:
        """Receive ``progress`` messages (with the job) whenever the job changes."""
        await self.send({"type": "subscribe", "job_id": job_id})

    async def unsubscribe(self, job_id: str) -> None:
        await self.send({"type": "unsubscribe", "job_id": job_id})

    async def close(self) -> None:
        await self._ws.close()

    async def __aenter__(self) -> AsyncInferenceSocket:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def _read(self, timeout: float | None) -> dict[str, Any]:
        from websockets.exceptions import ConnectionClosed

        try:
            data = json.loads(await asyncio.wait_for(self._ws.recv(), timeout))
        except ConnectionClosed as exc:
            raise _closed(exc.rcvd.code if exc.rcvd else 1006, exc.rcvd.reason if exc.rcvd else "") from exc
        if not isinstance(data, dict):
            raise ApiError(status=0, title="unexpected WebSocket message", body=data)
        return data


async def aconnect(client: BaseClient, path: str, *, open_timeout: float = 10.0) -> AsyncInferenceSocket:
    """The asyncio twin of :func:`connect`."""
    from websockets.asyncio.client import connect as ws_connect

    connection = await ws_connect(_ws_url(client, path), open_timeout=open_timeout,
                                  additional_headers={"User-Agent": client.user_agent})
    socket = AsyncInferenceSocket(connection)
    try:
        await socket.send({"type": "auth", "token": client.token or client.api_key or ""})
        ready = await socket.recv(timeout=open_timeout)
        if ready.get("type") != "ready":
            raise ApiError(status=0, title="no ready message", body=ready)
        socket.ready = ready
    except BaseException:
        await socket.close()
        raise
    return socket


def _ws_url(client: BaseClient, path: str) -> str:
    return client.base_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + path


def connect(client: BaseClient, path: str, *, open_timeout: float = 10.0) -> InferenceSocket:
    """Open ``path`` (under the API's base URL) and authenticate with ``client``'s credential."""
    from websockets.sync.client import connect as ws_connect

    credential = client.token or client.api_key
    socket = InferenceSocket(ws_connect(_ws_url(client, path), open_timeout=open_timeout,
                                        additional_headers={"User-Agent": client.user_agent}))
    try:
        socket.send({"type": "auth", "token": credential or ""})
        ready = socket.recv(timeout=open_timeout)
        if ready.get("type") != "ready":
            raise ApiError(status=0, title="no ready message", body=ready)
        socket.ready = ready
    except BaseException:
        socket.close()
        raise
    return socket


def _closed(code: int, reason: str) -> ApiError:
    """The error for a connection the server closed (4401/4403/4429 map to HTTP statuses)."""
    status = {4401: 401, 4403: 403, 4429: 429}.get(code, 0)
    kind = {401: AuthenticationError, 403: PermissionDeniedError}.get(status, ApiError)
    return kind(status=status, title=f"WebSocket closed ({code})", detail=reason or None)
