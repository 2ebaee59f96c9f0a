"""Batch inference jobs: ``createInferenceBatch``, ``getInferenceJob``, ``cancelInferenceJob``.

Routed through :mod:`bitnet_sdk.api.inference` (the spec's controller for the ``inference``
tag), which re-exports these three functions; they live here, with the jobs system.

Creation checks that every request names a model the caller may run (404/409 otherwise: the
batch is refused whole), then queues one ``inference_batch`` job. Requests are run one after
the other by a worker (:func:`bitnet_sdk.service.jobs.kinds.run_inference_batch`); usage is
recorded per request as work, and each request is checked against the quotas when it runs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bitnet_sdk.api._http import json_response
from bitnet_sdk.api._jobs import (
    cancel_job_response,
    get_job_response,
    idempotency_key,
    job_problems,
    jobs_service,
    webhook_spec,
    with_messages,
)
from bitnet_sdk.auth.principal import Principal
from bitnet_sdk.server.context import current
from bitnet_sdk.service.errors import ApiError
from bitnet_sdk.service.inference.plan import find_model
from bitnet_sdk.service.jobs import queue as jobs
from bitnet_sdk.store import Job, write_transaction

__all__ = ["cancel_inference_job", "create_inference_batch", "get_inference_job"]

_KIND = "inference_batch"
_OPERATION = "createInferenceBatch"


async def create_inference_batch(body: dict[str, Any], token_info: dict[str, Any]) -> Any:
    pool = jobs_service()
    key = idempotency_key()
    caller = Principal.from_token_info(token_info)
    job, created = await asyncio.to_thread(_accept, caller, body, key)
    if created:
        pool.wake()
    data = (await asyncio.to_thread(with_messages, [job], creating=True))[0]
    return json_response(data, 202, {"Location": data["links"]["self"]})


def _accept(caller: Principal, body: dict[str, Any], key: str | None) -> tuple[Job, bool]:
    fingerprint = jobs.fingerprint(body)
    with job_problems():
        if key is not None:
            replay = jobs.find_replay(caller.subject, _KIND, _OPERATION, key, fingerprint, 1)
            if replay is not None:
                return replay.jobs[0], False
        model_ids = _models(caller, body["requests"])
        url, secret, generated = webhook_spec(body)
        request = {k: v for k, v in body.items() if k != "webhook_secret"}
        spec = jobs.JobSpec(
            params={"request": request, "model_id": model_ids[0], "model_ids": model_ids,
                    "operation": _OPERATION, "mode": "async", "secret_generated": generated},
            webhook_url=url, webhook_secret=secret)
        with write_transaction():
            rows, created = jobs.create_jobs(caller.subject, _KIND, [spec],
                                             body_fingerprint=fingerprint, operation=_OPERATION,
                                             idempotency_key=key)
    return rows[0], created


def _models(caller: Principal, requests: list[dict[str, Any]]) -> list[str]:
    """The id of each request's model, in order; the first model that cannot run refuses all."""
    settings = current().settings
    resolved: dict[str, str] = {}
    ids = []
    for index, request in enumerate(requests):
        ident = str(request["model"])
        if ident not in resolved:
            try:
                resolved[ident] = find_model(ident, caller, settings).id
            except ApiError as exc:
                raise ApiError(exc.status, exc.title, exc.detail, slug=exc.slug,
                               errors=[{"field": f"requests.{index}.model",
                                       "message": exc.detail}]) from None
        ids.append(resolved[ident])
    return ids


def get_inference_job(job_id: str, token_info: dict[str, Any]) -> Any:
    return get_job_response(job_id, token_info, _KIND)


def cancel_inference_job(job_id: str, token_info: dict[str, Any]) -> Any:
    return cancel_job_response(job_id, token_info, _KIND)
