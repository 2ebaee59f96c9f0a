"""``bitnet models push FILE --server URL``: upload a model file to a running server.

The spec's path for large files: ``POST /v1/models`` (JSON) creates a record in status
``pending_upload``, then a resumable upload sends the file: ``GET /v1/models/{id}/upload``
says how many bytes the server holds, and ``PUT /v1/models/{id}/upload`` with
``Content-Range: bytes N-LAST/TOTAL`` streams the rest (nothing held in memory; the
``X-Content-SHA256`` of the whole file is checked at the end) with a progress bar. When the
connection breaks or the server restarts, the push asks for the offset again and continues
from there (``--retries`` times, waiting longer each time); a push that gave up is resumed
on the same record with ``--model ID`` (the command prints it).

Credentials: ``--api-key`` / ``$BITNET_API_KEY`` (an API key) or ``--token`` /
``$BITNET_TOKEN`` (an access token), sent as ``Authorization: Bearer``.
Exit status: 0 when the model is ``ready``, 1 when the server refused or the connection
failed (the message says why and how to restart), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["register", "run_push"]

_CHUNK = 1 << 20


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="work with the models of a running server",
                       description="Upload model files to a BitNet server.")
    actions = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    push = actions.add_parser(
        "push", help="upload a model file (streamed, with a progress bar)",
        description=__doc__.split("\n\n")[1] if __doc__ else None)
    push.add_argument("file", type=Path, help="the model file (GGUF, safetensors, ONNX)")
    push.add_argument("--server", default=os.environ.get("BITNET_SERVER"),
                      help="server URL, e.g. http://127.0.0.1:8080 (default $BITNET_SERVER)")
    push.add_argument("--name", help="model name (default: the file name without its suffix)")
    push.add_argument("--description", help="model description")
    push.add_argument("--public", action="store_true", help="visible to every account")
    push.add_argument("--model", metavar="ID",
                      help="upload to this existing record (pending_upload or invalid): restarts a push")
    push.add_argument("--api-key", default=os.environ.get("BITNET_API_KEY"),
                      help="API key (default $BITNET_API_KEY)")
    push.add_argument("--token", default=os.environ.get("BITNET_TOKEN"),
                      help="access token (default $BITNET_TOKEN)")
    push.add_argument("--retries", type=int, default=5, metavar="N",
                      help="resume up to N times after a broken connection (default 5)")
    push.add_argument("--json", action="store_true", help="print the model record as JSON")
    push.set_defaults(func=run_push)


class PushError(Exception):
    """The server said no or could not be reached: the message is for the operator."""


def _fail(message: str, code: int = 1) -> int:
    print(f"bitnet models push: {message}", file=sys.stderr)
    return code


def run_push(args: argparse.Namespace) -> int:
    if not args.server:
        return _fail("no server: pass --server URL (or set BITNET_SERVER)", 2)
    credential = args.api_key or args.token
    if not credential:
        return _fail("no credentials: pass --api-key KEY or --token TOKEN "
                     "(or set BITNET_API_KEY / BITNET_TOKEN)", 2)
    if not args.file.is_file():
        return _fail(f"{args.file}: no such file", 2)
    try:
        client = _Client(args.server, credential)
    except ValueError as exc:
        return _fail(str(exc), 2)
    model_id = args.model
    try:
        if model_id is None:
            model_id = client.create(_record(args))["id"]
            print(f"created model {model_id}", file=sys.stderr)
        model = client.upload(model_id, args.file, retries=max(0, args.retries))
    except PushError as exc:
        hint = f" Resume with: bitnet models push {args.file} --model {model_id} --server {args.server}"
        return _fail(f"{exc}.{hint if model_id else ''}")
    if args.json:
        print(json.dumps(model, indent=2))
    else:
        print(f"{model['id']} {model.get('name')} {model.get('status')} "
              f"({model.get('kind')}, {model.get('qtype')}, {model.get('size_bytes')} bytes)")
    return 0 if model.get("status") == "ready" else 1


def _record(args: argparse.Namespace) -> dict[str, Any]:
    record: dict[str, Any] = {"name": args.name or args.file.name.split(".")[0]}
    if args.description:
        record["description"] = args.description
    if args.public:
        record["public"] = True
    return record


class _Client:
    """The two calls a push makes, over ``http.client`` (stdlib: no extra dependency)."""

    def __init__(self, server: str, credential: str) -> None:
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--server must be an http:// or https:// URL, not {server!r}")
        self.parts = parts
        self.base = parts.path.rstrip("/")
        self.headers = {"Authorization": f"Bearer {credential}", "Accept": "application/json"}

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.parts.scheme == "https" else http.client.HTTPConnection
        return cls(self.parts.hostname or "", self.parts.port, timeout=600)

    def create(self, record: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(record).encode()
        conn = self._connection()
        try:
            conn.request("POST", f"{self.base}/v1/models", body=body,
                         headers={**self.headers, "Content-Type": "application/json"})
            return _answer(conn.getresponse(), 201)
        except (OSError, http.client.HTTPException) as exc:
            raise PushError(f"cannot reach {self.parts.geturl()}: {exc}") from exc
        finally:
            conn.close()

    def upload(self, model_id: str, path: Path, *, retries: int = 5) -> dict[str, Any]:
        """Send the file resumably; after a broken connection (or a server answering 5xx or
        ``upload-in-progress``) ask for the server's offset and continue from it."""
        size = path.stat().st_size
        digest = _sha256(path, size)
        from bitnet_sdk.cli.output import progress_bar

        bar = progress_bar(total=size, unit="B", unit_scale=True, unit_divisor=1024,
                           desc=f"upload {path.name}")
        try:
            attempt = 0
            while True:
                try:
                    offset = self.offset(model_id, size)
                    if offset:
                        print(f"resuming at byte {offset} of {size}", file=sys.stderr)
                    bar.reset(total=size)
                    bar.update(offset)
                    return self._piece(model_id, path, offset, size, digest, bar)
                except _Transient as exc:
                    attempt += 1
                    if attempt > retries:
                        raise PushError(f"upload of {path} interrupted: {exc}") from exc
                    wait = min(30.0, 0.5 * 2 ** (attempt - 1))
                    print(f"upload interrupted ({exc}); retrying in {wait:g} s", file=sys.stderr)
                    time.sleep(wait)
        finally:
            bar.close()

    def offset(self, model_id: str, size: int) -> int:
        """Bytes of this file the server holds (0 for another file's leftover)."""
        held = self._call("GET", f"/v1/models/{model_id}/upload", None, {})
        return int(held.get("offset", 0)) if held.get("total_bytes") == size else 0

    def _piece(self, model_id: str, path: Path, offset: int, size: int, digest: str,
               bar: Any) -> dict[str, Any]:
        last = max(size - 1, offset)
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Range": f"bytes {offset}-{last}/{size}",
                   "Content-Length": str(size - offset), "X-Content-SHA256": digest}

        def send(conn: http.client.HTTPConnection) -> None:
            with path.open("rb") as fh:
                fh.seek(offset)
                while chunk := fh.read(_CHUNK):
                    conn.send(chunk)
                    bar.update(len(chunk))

        status = self._call("PUT", f"/v1/models/{model_id}/upload", send, headers)
        if not status.get("complete"):  # the server kept less than we sent: continue
            raise _Transient(f"the server holds {status.get('offset')} of {size} bytes")
        return dict(status.get("model") or {})

    def _call(self, method: str, path: str, send: Any, headers: dict[str, str]) -> dict[str, Any]:
        conn = self._connection()
        try:
            conn.putrequest(method, self.base + path)
            for name, value in {**self.headers, **headers}.items():
                conn.putheader(name, value)
            conn.endheaders()
            if send is not None:
                try:
                    send(conn)
                except OSError:  # the server may have answered early (401, 413...): read it
                    pass
            return _answer(conn.getresponse(), 200)
        except (OSError, http.client.HTTPException) as exc:
            raise _Transient(str(exc) or type(exc).__name__) from exc
        finally:
            conn.close()


class _Transient(PushError):
    """A broken connection or a server that may answer better soon: resume."""


def _sha256(path: Path, size: int) -> str:
    from bitnet_sdk.cli.output import progress_bar

    h = hashlib.sha256()
    with path.open("rb") as fh, progress_bar(total=size, unit="B", unit_scale=True,
                                             unit_divisor=1024, desc="sha256", leave=False) as bar:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def _answer(response: http.client.HTTPResponse, expected: int) -> dict[str, Any]:
    raw = response.read()
    try:
        doc = json.loads(raw) if raw else {}
    except ValueError:
        doc = {}
    slug = str(doc.get("type", "")).rpartition(":")[2]
    if response.status >= 500 or (response.status == 409 and
                                   slug in ("upload-in-progress", "upload-offset-mismatch")):
        raise _Transient(f"the server answered {response.status}: {doc.get('detail') or ''}")
    if response.status != expected:
        detail = doc.get("detail") or doc.get("title") or raw[:200].decode("utf-8", "replace")
        problems = "; ".join(f"{e.get('field') or e.get('code')}: {e.get('message')}"
                             for e in doc.get("errors") or [] if isinstance(e, dict))
        raise PushError(f"the server answered {response.status}: {detail}"
                        + (f" ({problems})" if problems else ""))
    return doc if isinstance(doc, dict) else {}
