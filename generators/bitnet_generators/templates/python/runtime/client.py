"""The client's state: base URL, credentials, timeouts, retry policy and the httpx clients."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, cast

import httpx

from .retry import RetryPolicy

__all__ = ["BaseClient", "Tokens"]


@dataclass(frozen=True)
class Tokens:
    """Credentials after a refresh; persist ``refresh_token`` if you keep sessions (they rotate)."""

    access_token: str
    refresh_token: str | None = None
    expires_in: int | None = None


class BaseClient:
    """Connection settings and credentials shared by every call (thread-safe).

    ``base_url`` is the server (``http://localhost:8080``; default ``$BITNET_BASE_URL``); the
    API's base path is appended unless already there. ``token`` is sent as a bearer token (an
    access token or an API key), else ``api_key`` (default ``$BITNET_API_KEY``) in the API key
    header. With ``refresh_token``, a 401 refreshes the
    access token once and retries; ``on_tokens`` receives the new tokens. ``timeout`` is in
    seconds (or an :class:`httpx.Timeout`). Use it as a context manager, or call
    :meth:`close` / :meth:`aclose`, to release connections.
    """

    api_base_path: ClassVar[str] = ""
    api_key_header: ClassVar[str | None] = None
    refresh_path: ClassVar[str | None] = None
    #: ``User-Agent`` of every request (the generated client names the SDK and its version).
    user_agent: ClassVar[str] = "bitnet-client-python"
    #: Variables read when ``base_url`` / ``api_key`` are not given.
    env_base_url: ClassVar[str] = "BITNET_BASE_URL"
    env_api_key: ClassVar[str] = "BITNET_API_KEY"

    def __init__(self, base_url: str = "", *, token: str | None = None, api_key: str | None = None,
                 refresh_token: str | None = None, on_tokens: Callable[[Tokens], None] | None = None,
                 timeout: float | httpx.Timeout = 60.0, retry: RetryPolicy | None = None,
                 headers: Mapping[str, str] | None = None, httpx_args: Mapping[str, Any] | None = None) -> None:
        root = (base_url or os.environ.get(self.env_base_url, "")).rstrip("/")
        if not root:
            raise ValueError(f"give base_url or set {self.env_base_url}")
        if self.api_base_path and not root.endswith(self.api_base_path):
            root += self.api_base_path
        self.base_url = root
        self.api_key = api_key if api_key is not None else os.environ.get(self.env_api_key) or None
        self.on_tokens = on_tokens
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.retry = retry if retry is not None else RetryPolicy()
        self.headers = {"User-Agent": self.user_agent, **(headers or {})}
        self.httpx_args = dict(httpx_args or {})
        self._token = token
        self._refresh_token = refresh_token
        self._state_lock = threading.Lock()
        self.refresh_lock = threading.Lock()
        self._async_refresh_lock: asyncio.Lock | None = None
        self._client: httpx.Client | None = None
        self._async_client: httpx.AsyncClient | None = None

    @property
    def token(self) -> str | None:
        with self._state_lock:
            return self._token

    @property
    def refresh_token(self) -> str | None:
        with self._state_lock:
            return self._refresh_token

    def set_tokens(self, access_token: str | None, refresh_token: str | None = None) -> None:
        """Use these credentials from now on (e.g. the tokens ``login`` returned)."""
        with self._state_lock:
            self._token = access_token
            if refresh_token is not None:
                self._refresh_token = refresh_token

    def auth_headers(self, secured: bool, token: str | None) -> dict[str, str]:
        if not secured:
            return {}
        if token:
            return {"Authorization": f"Bearer {token}"}
        if self.api_key and self.api_key_header:
            return {self.api_key_header: self.api_key}
        return {}

    def with_options(self, *, timeout: float | httpx.Timeout | None = None,
                     headers: Mapping[str, str] | None = None, retry: RetryPolicy | None = None) -> BaseClient:
        """This client for some calls with another timeout, extra headers or retry policy.

        The result shares this client's connections and credentials (a refresh through
        either is seen by both): ``client.with_options(timeout=5).get_model(model_id)``.
        """
        return cast(BaseClient, _WithOptions(self, timeout, headers, retry))

    def async_refresh_lock(self) -> asyncio.Lock:
        if self._async_refresh_lock is None:
            self._async_refresh_lock = asyncio.Lock()
        return self._async_refresh_lock

    def get_httpx_client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=self.timeout,
                                        **self.httpx_args)
        return self._client

    def get_async_httpx_client(self) -> httpx.AsyncClient:
        if self._async_client is None:
            self._async_client = httpx.AsyncClient(base_url=self.base_url, headers=self.headers,
                                                   timeout=self.timeout, **self.httpx_args)
        return self._async_client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        if self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None

    def __enter__(self) -> BaseClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> BaseClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


class _WithOptions:
    """A view of a client with other per-call settings; everything else is the client's own."""

    def __init__(self, parent: BaseClient, timeout: float | httpx.Timeout | None,
                 headers: Mapping[str, str] | None, retry: RetryPolicy | None) -> None:
        self._parent = parent
        self.timeout = parent.timeout if timeout is None else (
            timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout))
        self.headers = {**parent.headers, **(headers or {})}
        self.retry = parent.retry if retry is None else retry

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parent, name)

    def with_options(self, **changes: Any) -> BaseClient:
        merged = {"timeout": self.timeout, "retry": self.retry, **changes,
                  "headers": {**self.headers, **(changes.get("headers") or {})}}
        return cast(BaseClient, _WithOptions(self._parent, **merged))
