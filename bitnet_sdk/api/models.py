"""Model registry operations: list, create, read, update, delete, metadata, validation,
download and upload of model files.

Thin: HTTP in, :mod:`bitnet_sdk.service.registry.models` call, HTTP out. Database and
file work runs in worker threads; file bodies stream in both directions in
blocks of :data:`~bitnet_sdk.service.registry.uploads.BLOCK_SIZE` and never sit whole in
memory (except multipart bodies, which Connexion buffers and
:class:`~bitnet_sdk.server.body_limit.BodyLimitMiddleware` bounds).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from connexion import request
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse

from bitnet_sdk.api._http import json_response, no_content
from bitnet_sdk.api.model_views import metadata_view, model_view, validation_view
from bitnet_sdk.auth.principal import Principal
from bitnet_sdk.server.context import current
from bitnet_sdk.server.multipart import content_length
from bitnet_sdk.service.accounting import storage_quota
from bitnet_sdk.service.errors import ApiError, bad_request, conflict, forbidden, not_found
from bitnet_sdk.service.pagination import InvalidCursor
from bitnet_sdk.service.registry import models as registry
from bitnet_sdk.service.registry import resumable, storage, uploads

__all__ = [
    "create_model",
    "delete_model",
    "download_model_file",
    "get_model",
    "get_model_metadata",
    "get_model_upload",
    "get_model_validation",
    "list_models",
    "update_model",
    "upload_model_file",
    "upload_model_piece",
]

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


@contextmanager
def _problems() -> Iterator[None]:
    """Turn the registry's and the upload code's refusals into problem responses."""
    try:
        yield
    except registry.ModelNotFound as exc:
        raise not_found("Model", exc.model_id) from exc
    except registry.PermissionDenied as exc:
        raise forbidden(str(exc)) from exc
    except registry.ModelConflict as exc:
        raise conflict(str(exc)) from exc
    except registry.InvalidModelFile as exc:
        problems = exc.report["problems"]
        raise ApiError(422, "Unprocessable Content", str(exc), slug="invalid-model-file",
                       errors=[{"field": "file", "message": f"{p['code']}: {p['message']}"}
                              for p in problems],
                      problems=problems) from exc
    except InvalidCursor as exc:
        raise bad_request(str(exc), errors=[{"field": "cursor", "message": str(exc)}]) from exc
    except storage_quota.StorageQuotaExceeded as exc:
        raise storage_problem(exc) from exc
    except uploads.UploadTooLarge as exc:
        raise ApiError(413, "Payload Too Large", f"{exc}; the server accepts at most "
                       f"{exc.limit} bytes here.", slug="payload-too-large",
                       limit_bytes=exc.limit) from exc
    except uploads.DigestMismatch as exc:
        raise ApiError(422, "Unprocessable Content", str(exc), slug="digest-mismatch",
                       errors=[{"field": "X-Content-SHA256", "message": str(exc)}]) from exc
    except resumable.OffsetMismatch as exc:
        held = exc.held
        extra = {} if held.total is None else {"total_bytes": held.total}
        raise ApiError(409, "Conflict", str(exc), slug="upload-offset-mismatch",
                       headers={"Upload-Offset": str(held.offset)}, offset=held.offset,
                       errors=[{"field": "Content-Range", "message": str(exc)}], **extra) from exc
    except resumable.UploadBusy as exc:
        raise ApiError(409, "Conflict", f"{exc}; retry when it has ended.",
                       slug="upload-in-progress") from exc
    except uploads.IncompleteUpload as exc:
        raise bad_request(str(exc), errors=[{"field": "Content-Length", "message": str(exc)}]) from exc


def storage_problem(exc: storage_quota.StorageQuotaExceeded) -> ApiError:
    """The 413 ``storage-quota-exceeded`` problem (the spec's "Quotas")."""
    return ApiError(413, "Payload Too Large", str(exc), slug="storage-quota-exceeded",
                    **exc.as_problem_detail())


def _actor(token_info: dict[str, Any]) -> Principal:
    return Principal.from_token_info(token_info)


def list_models(token_info: dict[str, Any], cursor: str | None = None, limit: int = 20,
                kind: str | None = None, qtype: str | None = None, status: str | None = None,
                name_prefix: str | None = None) -> Any:
    actor = _actor(token_info)
    with _problems():
        page = registry.list_models(actor, cursor=cursor, limit=limit, kind=kind,
                                    qtype=qtype, status=status, name_prefix=name_prefix)
    return json_response({"data": [model_view(r, actor) for r in page.items],
                          "next_cursor": page.next_cursor})


async def create_model(body: dict[str, Any], token_info: dict[str, Any], file: Any = None) -> Any:
    """JSON: an empty ``pending_upload`` record. Multipart: the record and its (small) file."""
    actor = _actor(token_info)
    fields: dict[str, Any] = {k: body[k] for k in ("name", "description", "tags", "public") if k in body}
    with _problems():
        if file is None:
            record = await asyncio.to_thread(registry.create_model, actor, **fields)
        else:
            try:
                record = await asyncio.to_thread(_register_upload, actor, file, fields)
            finally:
                await file.close()  # Connexion does not close form files (connexion #1848)
    view = model_view(record, actor)
    return json_response(view, 201, {"Location": view["links"]["self"]})


def _register_upload(actor: Principal, file: Any, fields: dict[str, Any]) -> Any:
    settings = current().settings
    with uploads.copy_to_partial(file.file, settings.uploads_dir,
                                 max_bytes=uploads.multipart_limit(settings)) as partial:
        return registry.register_file(settings, partial, owner_id=actor.user_id, **fields)


def get_model(model_id: str, token_info: dict[str, Any]) -> Any:
    with _problems():
        record = registry.get_model(_actor(token_info), model_id)
    return json_response(model_view(record, _actor(token_info)))


def update_model(model_id: str, body: dict[str, Any], token_info: dict[str, Any]) -> Any:
    with _problems():
        record = registry.update_model(_actor(token_info), model_id, body)
    return json_response(model_view(record, _actor(token_info)))


def delete_model(model_id: str, token_info: dict[str, Any]) -> Any:
    with _problems():
        registry.delete_model(_actor(token_info), model_id, current().settings)
    return no_content()


def get_model_metadata(model_id: str, token_info: dict[str, Any]) -> Any:
    with _problems():
        record = registry.get_model(_actor(token_info), model_id)
    if record.status != "ready" or not record.metadata:
        raise conflict(f"Model {model_id!r} is {record.status} and has no file to describe.")
    return json_response(metadata_view(record))


def get_model_validation(model_id: str, token_info: dict[str, Any]) -> Any:
    with _problems():
        record = registry.get_model(_actor(token_info), model_id)
    if not record.validation_report:
        raise conflict(f"Model {model_id!r} is {record.status}: no file has been checked yet.")
    return json_response(validation_view(record))


# -- file transfer ---------------------------------------------------------------------


async def upload_model_file(model_id: str, token_info: dict[str, Any]) -> Any:
    """Stream the body to a partial file, check size and digest, validate, publish."""
    actor = _actor(token_info)
    settings = current().settings
    # Absent when the body is chunked.
    declared = content_length(request.headers.get("content-length"))
    digest = request.headers.get("x-content-sha256")
    with _problems():
        record = await asyncio.to_thread(registry.check_upload, actor, model_id)
        if declared is not None and declared > settings.max_upload_bytes:
            raise uploads.UploadTooLarge(settings.max_upload_bytes)
        room = await asyncio.to_thread(storage_quota.remaining, record.owner_id, settings)
        if room is not None and declared is not None and declared > room:
            await asyncio.to_thread(storage_quota.check, record.owner_id, declared, settings)
        limit = settings.max_upload_bytes if room is None else min(settings.max_upload_bytes, room)
        try:
            partial = await uploads.receive_to_partial(
                request.stream(), settings.uploads_dir, max_bytes=limit,
                expected_size=declared, expected_sha256=digest)
        except ClientDisconnect as exc:
            raise uploads.IncompleteUpload("the client went away during the upload") from exc
        except uploads.UploadTooLarge:
            if limit == settings.max_upload_bytes:
                raise
            # Past what the quota leaves (not the size limit): the quota's answer, checked again.
            await asyncio.to_thread(storage_quota.check, record.owner_id, limit + 1, settings)
            raise
        record = await _validate_and_publish(actor, model_id, partial)
        # A whole file replaces any resumable upload left behind.
        await asyncio.to_thread(resumable.forget, settings.uploads_dir, model_id)
    return json_response(model_view(record, actor))


async def _validate_and_publish(actor: Principal, model_id: str,
                                partial: uploads.PartialFile) -> Any:
    """Validate a completed upload and publish it as the model's file (the partial is gone after)."""
    settings = current().settings
    try:
        report = await asyncio.to_thread(registry.inspect_file, partial.path)
        if not report.ok:
            await asyncio.to_thread(registry.record_invalid, actor, model_id, report)
            raise registry.InvalidModelFile(report.validation)
        return await asyncio.to_thread(registry.attach_file, actor, model_id, partial,
                                       report, settings)
    finally:
        await asyncio.shield(asyncio.to_thread(partial.discard))


async def upload_model_piece(model_id: str, token_info: dict[str, Any]) -> Any:
    """One ``Content-Range`` piece of a resumable upload: the upload's new state, with the
    validated model once the last byte is in. Bytes received before a broken connection
    are flushed and kept."""
    actor = _actor(token_info)
    settings = current().settings
    declared = content_length(request.headers.get("content-length"))
    header = request.headers.get("content-range", "")
    with _problems():
        record = await asyncio.to_thread(registry.check_upload, actor, model_id)
        try:
            wanted = resumable.parse_content_range(header)
        except ValueError as exc:
            raise bad_request(str(exc), errors=[{"field": "Content-Range",
                                                 "message": str(exc)}]) from exc
        if declared is not None and declared != wanted.length:
            message = (f"Content-Length {declared} differs from the {wanted.length} bytes "
                       "of Content-Range")
            raise bad_request(message, errors=[{"field": "Content-Length", "message": message}])
        if wanted.total > settings.max_upload_bytes:
            raise uploads.UploadTooLarge(settings.max_upload_bytes)
        await asyncio.to_thread(storage_quota.check, record.owner_id, wanted.total, settings)
        piece = await asyncio.to_thread(resumable.open_piece, settings.uploads_dir, model_id,
                                        wanted)
        partial = None
        try:
            try:
                await _receive_piece(request.stream(), piece, wanted.length)
            except ClientDisconnect as exc:
                raise uploads.IncompleteUpload(
                    "the client went away during the upload; resume from GET .../upload") from exc
            offset = await asyncio.to_thread(piece.sync)
            if offset == piece.total:
                partial = await asyncio.to_thread(piece.into_partial, settings.uploads_dir,
                                                  request.headers.get("x-content-sha256"))
        finally:
            await asyncio.shield(asyncio.to_thread(piece.release))
        held = resumable.UploadState(offset, piece.total)
        if partial is None:
            return json_response(_upload_status(model_id, held),
                                 headers={"Upload-Offset": str(offset)})
        record = await _validate_and_publish(actor, model_id, partial)
    return json_response({**_upload_status(model_id, held), "complete": True,
                          "model": model_view(record, actor)},
                         headers={"Upload-Offset": str(offset)})


async def _receive_piece(chunks: AsyncIterator[bytes], piece: resumable.Piece, length: int) -> None:
    """Append at most ``length`` body bytes to ``piece`` in blocks; what arrived before an
    error or a disconnect is written too (the client resumes after it)."""
    block: list[bytes] = []
    pending = received = 0
    try:
        async for chunk in chunks:
            if received + len(chunk) > length:
                block.append(chunk[: length - received])  # the range's own bytes are kept
                raise uploads.IncompleteUpload(
                    f"the body is longer than the {length} bytes of its Content-Range")
            received += len(chunk)
            block.append(chunk)
            pending += len(chunk)
            if pending >= uploads.BLOCK_SIZE:
                await asyncio.to_thread(piece.write, b"".join(block))
                block, pending = [], 0
    finally:
        if block:
            await asyncio.shield(asyncio.to_thread(piece.write, b"".join(block)))


def _upload_status(model_id: str, held: resumable.UploadState) -> dict[str, Any]:
    status: dict[str, Any] = {"model_id": model_id, "offset": held.offset, "complete": False}
    if held.total is not None:
        status["total_bytes"] = held.total
    return status


async def get_model_upload(model_id: str, token_info: dict[str, Any]) -> Any:
    """How many bytes of the model's resumable upload the server holds (flushed first)."""
    with _problems():
        await asyncio.to_thread(registry.check_upload, _actor(token_info), model_id)
    held = await asyncio.to_thread(resumable.state, current().settings.uploads_dir, model_id)
    return json_response(_upload_status(model_id, held),
                         headers={"Upload-Offset": str(held.offset)})


async def download_model_file(model_id: str, token_info: dict[str, Any]) -> Any:
    """The file, whole or one byte range, streamed from the model storage."""
    settings = current().settings
    with _problems():
        record = await asyncio.to_thread(registry.get_model, _actor(token_info), model_id)
    if record.status != "ready" or not record.file_path:
        raise conflict(f"Model {model_id!r} is {record.status} and has no file.")
    store = storage.for_settings(settings)
    try:
        size = record.size_bytes or await asyncio.to_thread(store.size, record.file_path)
    except FileNotFoundError as exc:
        raise conflict(f"The file of model {model_id!r} is missing on the server.") from exc
    etag = f'"{record.sha256}"'
    headers = {"ETag": etag, "Accept-Ranges": "bytes"}
    wanted = _range(request.headers.get("range"), request.headers.get("if-range"), etag, size)
    if wanted is None:
        start, length, status = 0, size, 200
        headers["Content-Disposition"] = _disposition(record.name)
    else:
        start, end = wanted
        length, status = end - start + 1, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    try:
        blocks = await asyncio.to_thread(store.read, record.file_path, start, length)
    except FileNotFoundError as exc:
        raise conflict(f"The file of model {model_id!r} is missing on the server.") from exc
    headers["Content-Length"] = str(length)
    return StreamingResponse(_stream(blocks), status_code=status,
                             headers=headers, media_type="application/octet-stream")


def _range(header: str | None, if_range: str | None, etag: str, size: int) -> tuple[int, int] | None:
    """The inclusive byte range to send, None for the whole file (RFC 9110 §14).

    A malformed or stale (``If-Range`` not our ETag) range is ignored; one that
    starts past the end is a 416 problem.
    """
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or (if_range is not None and if_range.strip() != etag):
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size - 1
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise _unsatisfiable(size)
    return start, min(int(last) if last else size - 1, size - 1)


def _unsatisfiable(size: int) -> ApiError:
    return ApiError(416, "Range Not Satisfiable", f"The file has {size} bytes.",
                    slug="range-not-satisfiable", headers={"Content-Range": f"bytes */{size}"})


def _disposition(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "model"
    return f'attachment; filename="{safe}.gguf"'


async def _stream(blocks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """The storage's blocks, each read in a worker thread (a file or a ranged S3 GET).

    A local file is read through one descriptor opened before the response
    starts, so a deletion while streaming does not cut the download short.
    """
    end = object()
    try:
        while (block := await asyncio.to_thread(next, blocks, end)) is not end:
            yield block  # type: ignore[misc]
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            await asyncio.to_thread(close)
