"""Quantization operations: quantize (within the request or as a job), batch, list, get, cancel.

Thin: checks and queueing are :mod:`bitnet_sdk.service.jobs.quantize`', the queue is
:mod:`bitnet_sdk.service.jobs.queue`', execution the server's
:class:`~bitnet_sdk.service.jobs.workers.WorkerPool` (``ctx.jobs``). Database and
compute work runs in worker threads, never on the event loop.

* ``quantizeModel`` answers ``200`` with the finished job when it ran within the request (a
  failure there is answered as the job's problem), ``202`` + ``Location`` when queued.
* ``Idempotency-Key``: a retry with the same key and body gets the first request's answer
  (computed from the stored job), another body 422, a retry while a synchronous first request
  is still computing 409 (see :mod:`bitnet_sdk.service.jobs.queue`).
* Each accepted job takes one place in the monthly ``quantize_jobs`` quota, reserved
  atomically with the job (429 when it does not fit; a job that fails or is cancelled before
  it starts gives its place back); a replay counts nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bitnet_sdk.api._http import json_response
from bitnet_sdk.api._jobs import (
    cancel_job_response,
    get_job_response,
    idempotency_key,
    job_problems,
    jobs_service,
    owner_scope,
    webhook_spec,
    with_messages,
)
from bitnet_sdk.auth.principal import Principal
from bitnet_sdk.server import metering
from bitnet_sdk.server.context import current, request_id
from bitnet_sdk.service.accounting import usage
from bitnet_sdk.service.errors import ApiError, unprocessable
from bitnet_sdk.service.jobs import quantize as qj
from bitnet_sdk.service.jobs import queue as jobs
from bitnet_sdk.store import Job

__all__ = ["cancel_quantize_job", "create_quantize_batch", "get_quantize_job",
           "list_quantize_jobs", "quantize_model"]

_KIND = "quantize"


async def quantize_model(body: dict[str, Any], token_info: dict[str, Any]) -> Any:
    pool = jobs_service()
    key = idempotency_key()
    actor = Principal.from_token_info(token_info)
    run_by = f"{jobs.REQUEST_OWNER_PREFIX}{pool.name}:{request_id()}"
    job, created = await asyncio.to_thread(_accept_one, actor, _tier(token_info), body, key,
                                           run_by, pool.options.lease_s)
    if created and job.status == "running":  # ours to compute, here and now
        done = await asyncio.wrap_future(pool.submit(job, run_by))
        job = done if done is not None else await asyncio.to_thread(Job.get_by_id, job.id)
    elif created:
        pool.wake()
    return await asyncio.to_thread(_answer, job)


def _tier(token_info: dict[str, Any]) -> str:
    return str(token_info.get("tier") or "developer")


@contextmanager
def _quota_problems() -> Iterator[None]:
    try:
        yield
    except usage.QuotaExceeded as exc:
        raise metering.quota_problem(exc) from None


def _accept_one(actor: Principal, tier: str, body: dict[str, Any], key: str | None,
                run_by: str, lease_s: float) -> tuple[Job, bool]:
    fingerprint = jobs.fingerprint(body)
    with job_problems():
        if key is not None:
            replay = jobs.find_replay(actor.user_id or "", _KIND, "quantizeModel", key,
                                      fingerprint, 1)
            if replay is not None:
                return replay.jobs[0], False
        item = _item(actor, body)
        with _quota_problems():
            created_jobs, created = qj.queue(
                actor.user_id or "", [item], operation="quantizeModel",
                body_fingerprint=fingerprint, idempotency_key=key, tier=tier,
                settings=current().settings, run_by=run_by if item.run_sync else None,
                lease_s=lease_s)
    return created_jobs[0], created


def _item(actor: Principal, body: dict[str, Any], index: int | None = None) -> qj.QuantizeItem:
    prefix = "" if index is None else f"items.{index}."
    try:
        source, run_sync = qj.plan_item(actor, body, in_batch=index is not None,
                                        field_prefix=prefix)
    except qj.QuantizeRequestError as exc:
        raise unprocessable(str(exc), errors=[{"field": exc.field, "message": str(exc)}]) from None
    url, secret, generated = webhook_spec(body, prefix)
    return qj.QuantizeItem(request=body, source_id=source.id, run_sync=run_sync,
                           webhook_url=url, webhook_secret=secret, secret_generated=generated)


def _answer(job: Job) -> Any:
    """The response the creating request gives (also for its idempotent replays)."""
    body = with_messages([job], creating=True)[0]
    synchronous = (job.params or {}).get("mode") == "sync"
    if synchronous and job.status == "succeeded":
        return json_response(body, 200)
    if synchronous and job.status in ("failed", "cancelled"):
        raise _job_problem(job)
    return json_response(body, 202, {"Location": body["links"]["self"]})


def _job_problem(job: Job) -> ApiError:
    error = dict(job.error or {})
    if job.status == "cancelled" or not error:
        return ApiError(409, "Conflict", f"Job {job.id} was cancelled before it finished.",
                        slug="job-cancelled", job_id=job.id)
    return ApiError.from_problem(error, title="Job Failed", job_id=job.id)


async def create_quantize_batch(body: dict[str, Any], token_info: dict[str, Any]) -> Any:
    pool = jobs_service()
    key = idempotency_key()
    actor = Principal.from_token_info(token_info)
    rows, created = await asyncio.to_thread(_accept_batch, actor, _tier(token_info), body, key)
    if created:
        pool.wake()
    data = await asyncio.to_thread(with_messages, rows, creating=True)
    return json_response({"jobs": data}, 202)


def _accept_batch(actor: Principal, tier: str, body: dict[str, Any],
                  key: str | None) -> tuple[list[Job], bool]:
    fingerprint = jobs.fingerprint(body)
    count = len(body["items"])
    with job_problems():
        if key is not None:
            replay = jobs.find_replay(actor.user_id or "", _KIND, "createQuantizeBatch", key,
                                      fingerprint, count)
            if replay is not None:
                return replay.jobs, False
        items = [_item(actor, item, i) for i, item in enumerate(body["items"])]
        with _quota_problems():
            rows, created = qj.queue(actor.user_id or "", items, operation="createQuantizeBatch",
                                     body_fingerprint=fingerprint, idempotency_key=key,
                                     tier=tier, settings=current().settings)
    return rows, created


def list_quantize_jobs(token_info: dict[str, Any], cursor: str | None = None, limit: int = 20,
                       status: str | None = None, model_id: str | None = None) -> Any:
    with job_problems():
        page = jobs.list_jobs(owner_id=owner_scope(token_info), kind=_KIND, cursor=cursor,
                              limit=limit, status=status, model_id=model_id)
    return json_response({"data": with_messages(page.items), "next_cursor": page.next_cursor})


def get_quantize_job(job_id: str, token_info: dict[str, Any]) -> Any:
    return get_job_response(job_id, token_info, _KIND)


def cancel_quantize_job(job_id: str, token_info: dict[str, Any]) -> Any:
    return cancel_job_response(job_id, token_info, _KIND)

