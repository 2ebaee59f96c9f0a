"""Multipart bodies under Connexion: bounded before they are buffered, their parts closed.

* :class:`BodyLimitMiddleware`. Connexion's request validation reads a
  multipart body whole into memory before the handler runs (connexion #2062),
  so a limit checked by the handler comes too late. This pure ASGI middleware
  sits before validation: a declared ``Content-Length`` above the limit is
  refused before any of the body is read, and a body without one (chunked) is
  counted as it streams and refused the moment it passes the limit. Either way
  the client gets ``413`` problem+json. Raw ``application/octet-stream``
  uploads are not limited here: their handlers stream them to disk and enforce
  ``max_upload_bytes`` themselves.
* :class:`ClosingMultiPartValidator`. Connexion's multipart validator parses the form once
  to validate it and drops the file parts it opened without closing them
  (connexion #1848): each then raises ``ResourceWarning`` when collected. Its
  replacement closes them once parsed (it only checks which fields exist, it
  never reads a file), and turns Starlette's ``MultiPartException`` (a part
  without headers, a missing name) into a 400 instead of a 500. Handlers still
  close the parts they receive.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from connexion.validators import MultiPartFormDataValidator
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from bitnet_sdk.service.errors import ApiError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "BodyLimitMiddleware",
    "ClosingMultiPartValidator",
    "content_length",
]


class BodyLimitMiddleware:
    """Refuse bodies of the given media types above ``limit(scope)`` bytes with 413.

    Only where the routed operation accepts that media type (``accepts``:
    operationId → media types): a body the operation cannot take at all gets
    Connexion's 415, which says more than a 413 would.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        media_types: tuple[str, ...],
        limit: Callable[[Scope], int],
        hint: str = "",
        accepts: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self.app = app
        self.accepts = accepts or {}
        self.media_types = tuple(m.lower() for m in media_types)
        self.limit = limit
        self.hint = hint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._applies(scope):
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        declared = content_length(_header(scope, b"content-length"))
        if declared is not None and declared > limit:
            raise self._too_large(limit)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise self._too_large(limit)
            return message

        await self.app(scope, limited_receive, send)

    def _applies(self, scope: Scope) -> bool:
        content_type = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
        if content_type not in self.media_types:
            return False
        routing = (scope.get("extensions") or {}).get("connexion_routing") or {}
        accepted = self.accepts.get(routing.get("operation_id", ""))
        return accepted is None or content_type in accepted

    def _too_large(self, limit: int) -> ApiError:
        detail = f"Request bodies of this type are limited to {limit} bytes."
        return ApiError(413, "Payload Too Large", f"{detail} {self.hint}".strip(),
                        slug="payload-too-large", limit_bytes=limit)


def content_length(value: str | None) -> int | None:
    """A ``Content-Length`` value as an int; None when absent or not 1 to 20 ASCII digits.

    (``str.isdigit`` admits ``"²"`` and ``int`` refuses 5,000 digits: both were 500s.)
    """
    if value is None or not _LENGTH.fullmatch(value.strip()):
        return None
    return int(value)


_LENGTH = re.compile(r"[0-9]{1,20}")


def _header(scope: Scope, name: bytes) -> str | None:
    headers: Any = scope.get("headers", ())
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


class _ClosingMultiPartParser(MultiPartParser):
    async def parse(self) -> FormData:
        try:
            form = await super().parse()
        except MultiPartException as exc:  # a part without headers or a name: the client's fault
            raise ApiError(400, "Bad Request",
                           f"The multipart body was refused: {exc.message}") from None
        for _, value in form.multi_items():
            if isinstance(value, UploadFile):
                await value.close()
        return form


class ClosingMultiPartValidator(MultiPartFormDataValidator):
    """Connexion's multipart validator, closing the file parts it opens to validate."""

    @property
    def _form_parser_cls(self) -> type[MultiPartParser]:
        return _ClosingMultiPartParser
