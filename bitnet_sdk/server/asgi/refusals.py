"""Requests Tornado refuses before the application sees them, answered as problem+json.

Tornado checks HTTP framing itself and, on a malformed request, writes the bare
``HTTP/1.1 400 Bad Request`` with no body, whatever the fault: a control character
in a header, a missing ``Host``, a ``Content-Length`` that is not one integer or is
larger than the server takes (which the spec promises as ``413``), broken chunked
encoding. Clients then get the one response of the API that is not a problem.

:class:`ProblemHTTPServer` closes that gap without changing what is refused:

* every request's message delegate is wrapped (:class:`_Watched`, public
  ``HTTPServerConnectionDelegate`` API): it records the headers and any
  ``HTTPInputError`` raised while Tornado builds the request, and it keeps a request
  whose ``Content-Length`` Tornado is about to refuse away from the application (no
  authentication, rate limiting or metering for a request that cannot be read);
* each connection's stream gets a write filter (and its ``read_until``, which reads
  only chunk-size lines, a tally of the chunked body's size): when Tornado writes its bare 400,
  the filter sends instead a complete problem+json response (``413`` for a body over
  the limit, else ``400`` saying what was wrong) with ``Connection: close`` and the
  security headers. If a response was already under way it writes nothing: the
  connection is closing anyway.

:class:`ProblemErrors` does the same for refusals ``RequestHandler`` classes make
(``send_error``, and the plain-text ``finish`` of ``WebSocketHandler``'s handshake
checks).

A header block over ``max_header_size`` makes Tornado close the stream at once
(``UnsatisfiableReadError``), before anything could be written. The stream's ``close``
is wrapped so that, in that case, a ``431`` problem is sent first on a duplicate of the
socket, which then reads and discards what the client is still sending for a short
while before closing (a close with unread data would reset the connection, and the
client could lose the answer).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import weakref
from asyncio import Future
from http import HTTPStatus
from typing import Any, cast

from tornado import httputil
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, UnsatisfiableReadError

from bitnet_sdk.server.asgi.security_headers import API_CSP, BASE_HEADERS

__all__ = ["ProblemErrors", "ProblemHTTPServer", "problem_body"]

#: What ``HTTP1Connection`` writes on any ``HTTPInputError``.
_BARE_400 = b"HTTP/1.1 400 Bad Request\r\n\r\n"
_CONTINUE = b"HTTP/1.1 100 (Continue)\r\n\r\n"
_DIGITS = re.compile(r"[0-9]+")
_SLUGS = {400: "bad-request", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
          413: "payload-too-large", 426: "upgrade-required", 431: "headers-too-large",
          500: "internal"}
#: How long, and how many bytes, a refused connection is drained before it is closed.
_LINGER_S = 2.0
_LINGER_BYTES = 1 << 20


def problem_body(status: int, detail: str, **ext: Any) -> dict[str, Any]:
    """The problem document for a refusal made outside the application."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return {"type": f"urn:bitnet:problem:{_SLUGS.get(status, 'bad-request')}",
            "title": title, "status": status, "detail": detail, **ext}


def _raw_response(status: int, detail: str, **ext: Any) -> bytes:
    body = json.dumps(problem_body(status, detail, **ext)).encode()
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
             "Content-Type: application/problem+json",
             f"Content-Length: {len(body)}",
             "Connection: close",
             *(f"{name}: {value}" for name, value in BASE_HEADERS),
             f"Content-Security-Policy: {API_CSP}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Watch:
    """What is known about the request being read on one connection."""

    def __init__(self, max_body_size: int) -> None:
        self.max_body_size = max_body_size
        self.reset()

    def reset(self) -> None:
        self.headers: httputil.HTTPHeaders | None = None
        self.error: str | None = None
        self.chunked_total = 0
        self.responding = False

    def saw_line(self, future: Future[bytes]) -> None:
        """A line Tornado read with ``read_until``: in a chunked body, a chunk's size."""
        if future.cancelled() or future.exception() is not None:
            return
        with contextlib.suppress(ValueError):
            self.chunked_total += int(future.result()[:-2].strip(), 16)

    def framing_error(self) -> tuple[int, str] | None:
        """The refusal Tornado will make for this request's ``Content-Length``, if any."""
        assert self.headers is not None
        if "Content-Length" not in self.headers:
            return None
        pieces = set(re.split(r",[ \t]*", self.headers["Content-Length"]))
        if len(pieces) != 1 or not _DIGITS.fullmatch(value := pieces.pop()):
            return 400, "Content-Length must be one non-negative integer."
        if len(value) > 20 or int(value) > self.max_body_size:
            return 413, f"Request bodies are limited to {self.max_body_size} bytes."
        return None

    def refusal(self) -> bytes:
        """The response to send instead of Tornado's bare 400."""
        if self.headers is None:
            return _raw_response(400, "The request line or a header is not valid HTTP/1.1 "
                                      "(control characters, a line without a colon, a bad "
                                      "method or version).")
        if self.error is not None:
            return _raw_response(400, f"The request was refused: {self.error[:200]}.")
        framing = self.framing_error()
        if framing is not None:
            status, detail = framing
            ext = {"limit_bytes": self.max_body_size} if status == 413 else {}
            return _raw_response(status, detail, **ext)
        if self.chunked_total > self.max_body_size:
            return _raw_response(413, f"Request bodies are limited to {self.max_body_size} "
                                      "bytes.", limit_bytes=self.max_body_size)
        return _raw_response(400, "The request body's framing is malformed (chunked or "
                                  "compressed encoding).")


class _Watched(httputil.HTTPMessageDelegate):
    """A request's delegate, observed; unreadable requests never reach it."""

    def __init__(self, inner: httputil.HTTPMessageDelegate, watch: _Watch) -> None:
        self.inner = inner
        self.watch = watch
        self.forwarded = False

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Any:
        self.watch.headers = headers
        if self.watch.framing_error() is not None:
            return None  # Tornado refuses it next; the filter answers
        self.forwarded = True
        try:
            return self.inner.headers_received(start_line, headers)
        except httputil.HTTPInputError as exc:
            self.watch.error = str(exc)
            raise

    def data_received(self, chunk: bytes) -> Any:
        return self.inner.data_received(chunk) if self.forwarded else None

    def finish(self) -> None:
        if self.forwarded:
            self.inner.finish()

    def on_connection_close(self) -> None:
        if self.forwarded:
            self.inner.on_connection_close()


class ProblemHTTPServer(HTTPServer):
    """``HTTPServer`` whose own refusals of malformed requests are problem+json."""

    _watches: weakref.WeakKeyDictionary[IOStream, _Watch]

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        if not hasattr(self, "_watches"):
            self._watches = weakref.WeakKeyDictionary()
        limit = self.conn_params.max_body_size
        watch = _Watch(limit if limit is not None else 100 * 1024 * 1024)  # Tornado's default
        self._watches[stream] = watch
        write = stream.write

        def filtered_write(data: bytes | memoryview, *args: Any, **kwargs: Any) -> Any:
            if data == _BARE_400:
                if watch.responding:  # a response is under way: just let Tornado close
                    data = b""
                else:
                    data = watch.refusal()
            elif data != _CONTINUE:
                watch.responding = True
            return write(data, *args, **kwargs)

        read_until = stream.read_until

        def watched_read_until(delimiter: bytes, max_bytes: int | None = None) -> Any:
            future = cast("Future[bytes]", read_until(delimiter, max_bytes))
            if future.done():  # read from the buffer: awaiting it will not yield
                watch.saw_line(future)
            else:  # runs before the reader resumes (callbacks run in order)
                future.add_done_callback(watch.saw_line)
            return future

        close = stream.close
        max_header = self.conn_params.max_header_size or 65536

        def answered_close(exc_info: Any = False) -> None:
            error = sys.exc_info()[1] if exc_info is True else (
                exc_info[1] if isinstance(exc_info, tuple) else exc_info)
            if (isinstance(error, UnsatisfiableReadError) and watch.headers is None
                    and not watch.responding and stream.socket is not None):
                watch.responding = True
                _answer_and_linger(stream.socket, _raw_response(
                    431, f"The request's header block is larger than {max_header} bytes.",
                    limit_bytes=max_header))
            close(exc_info)

        stream.write = filtered_write  # type: ignore[method-assign]
        stream.read_until = watched_read_until  # type: ignore[method-assign]
        stream.close = answered_close  # type: ignore[method-assign]
        super().handle_stream(stream, address)

    def start_request(self, server_conn: object,
                      request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        watch = self._watches.get(getattr(request_conn, "stream", None))  # type: ignore[arg-type]
        if watch is None:
            return delegate
        watch.reset()
        return _Watched(delegate, watch)


def _answer_and_linger(sock: socket.socket, response: bytes) -> None:
    """Send ``response`` on a duplicate of ``sock``, then drain and close it (see the module
    docstring). Best effort: a client that does not read gets nothing."""
    try:
        dup = sock.dup()
        dup.setblocking(False)
        dup.send(response)
        dup.shutdown(socket.SHUT_WR)
    except OSError:
        with contextlib.suppress(NameError, OSError):
            dup.close()
        return
    loop, fd, drained = IOLoop.current(), dup.fileno(), [0]

    def done() -> None:
        if dup.fileno() != -1:
            loop.remove_handler(fd)
            dup.close()

    def drain(_fd: int, _events: int) -> None:
        try:
            data = dup.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        drained[0] += len(data)
        if not data or drained[0] > _LINGER_BYTES:
            done()

    loop.add_handler(fd, drain, IOLoop.READ)
    loop.call_later(_LINGER_S, done)


class ProblemErrors:
    """Mixin (first base) for ``RequestHandler`` classes: their error pages are problem+json.

    Covers ``send_error`` (``write_error``) and refusals written as ``set_status(4xx)``
    then ``finish("text")`` or an empty ``finish()``, as ``WebSocketHandler`` does when a
    handshake is not a valid upgrade. Every response also gets the security headers.
    """

    def set_default_headers(self: Any) -> None:
        for name, value in BASE_HEADERS:
            self.set_header(name, value)
        self.set_header("Content-Security-Policy", API_CSP)

    def write_error(self: Any, status_code: int, **kwargs: Any) -> None:
        self._problem_finish(status_code, self._reason)

    def finish(self: Any, chunk: Any = None) -> Any:
        status = self.get_status()
        if status >= 400 and not self._headers_written and (
                isinstance(chunk, str) or (chunk is None and not self._write_buffer)):
            return self._problem_finish(status, chunk or self._reason)
        return super().finish(chunk)  # type: ignore[misc]

    def _problem_finish(self: Any, status: int, detail: str) -> Any:
        self.set_header("Content-Type", "application/problem+json")
        return super().finish(json.dumps(problem_body(status, detail)))  # type: ignore[misc]
