"""What the job-creating and job-reading handlers (quantize, batch inference) share.

* :func:`job_problems` turns the queue's, the registry's and the webhook guard's refusals into
  problem responses;
* :func:`webhook_spec` checks a request's ``webhook_url`` (the SSRF guard, 422) and settles its
  secret (the client's, or a generated one returned once);
* :func:`job_body` renders a job for a response, with the generated secret when it is the
  response that created the job (or an idempotent replay of it);
* :func:`idempotency_key`, :func:`owner_scope`, :func:`jobs_service`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from connexion import request

from bitnet_sdk.api._http import json_response
from bitnet_sdk.auth.principal import token_scopes
from bitnet_sdk.server.context import current
from bitnet_sdk.service.errors import ApiError, bad_request, conflict, not_found, unprocessable
from bitnet_sdk.service.jobs import queue as jobs
from bitnet_sdk.service.jobs import webhooks
from bitnet_sdk.service.jobs.views import job_view, latest_messages
from bitnet_sdk.service.jobs.workers import WorkerPool
from bitnet_sdk.service.pagination import InvalidCursor
from bitnet_sdk.service.registry import models as registry
from bitnet_sdk.store import Job

__all__ = ["IDEMPOTENCY_HEADER", "cancel_job_response", "get_job_response", "idempotency_key", "job_body", "job_problems", "jobs_service",
           "owner_scope", "webhook_spec", "with_messages"]

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"


@contextmanager
def job_problems() -> Iterator[None]:
    """Map service refusals to problems (404, 403, 409, 422, 400)."""
    try:
        yield
    except jobs.JobNotFound as exc:
        raise not_found("Job", exc.job_id) from exc
    except registry.ModelNotFound as exc:
        raise not_found("Model", exc.model_id) from exc
    except registry.PermissionDenied as exc:
        raise ApiError(403, "Forbidden", str(exc), slug="forbidden") from exc
    except (jobs.JobConflict, jobs.IdempotencyInProgress, registry.ModelConflict) as exc:
        raise conflict(str(exc)) from exc
    except jobs.IdempotencyMismatch as exc:
        raise ApiError(422, "Unprocessable Content", str(exc), slug="idempotency-key-reused",
                       errors=[{"field": IDEMPOTENCY_HEADER, "message": str(exc)}]) from exc
    except InvalidCursor as exc:
        raise bad_request(str(exc), errors=[{"field": "cursor", "message": str(exc)}]) from exc


def idempotency_key() -> str | None:
    """The request's ``Idempotency-Key`` (the spec has validated its form)."""
    return request.headers.get(IDEMPOTENCY_HEADER) or None


def owner_scope(token_info: dict[str, Any]) -> str | None:
    """Whose jobs the caller sees: their own, or everyone's (None) for an admin."""
    scopes = token_scopes(token_info)
    return None if "admin" in scopes else str(token_info["sub"])


def jobs_service() -> WorkerPool:
    """The server's :class:`~bitnet_sdk.service.jobs.workers.WorkerPool` (503 when absent)."""
    pool = current().jobs
    if pool is None:
        raise ApiError(503, "Service Unavailable", "Jobs are not running on this server.",
                       slug="unavailable", headers={"Retry-After": "5"})
    return pool


def webhook_spec(item: dict[str, Any], field_prefix: str = "") -> tuple[str | None, str | None, bool]:
    """``(url, secret, generated)`` for a request's webhook fields. Blocking (DNS).

    422 for a URL the guard refuses or a secret that is not ``whsec_<base64>``. A URL without
    a secret gets a generated one (``generated`` True: returned once to the client).
    """
    url, secret = item.get("webhook_url"), item.get("webhook_secret")
    if secret is not None:
        try:
            webhooks.parse_secret(secret)
        except ValueError as exc:
            raise unprocessable(str(exc), errors=[{"field": f"{field_prefix}webhook_secret",
                                                   "message": str(exc)}]) from None
    if url is None:
        return None, None, False
    try:
        webhooks.check_url(url, allow_private=current().settings.webhook_allow_private)
    except webhooks.UnsafeWebhookUrl as exc:
        # The client learns only that the URL is refused; the operator's log says why.
        log.info("webhook URL refused: %s", exc.operator_detail)
        raise unprocessable(str(exc), errors=[{"field": f"{field_prefix}webhook_url",
                                               "message": str(exc)}]) from None
    if secret is None:
        return url, webhooks.generate_secret(), True
    return url, secret, False


def job_body(job: Job, message: str | None = None, *, creating: bool = False) -> dict[str, Any]:
    """``Job`` for a response; ``creating`` adds a server-generated webhook secret."""
    body = job_view(job, message)
    params = job.params or {}
    if creating and params.get("secret_generated") and params.get("webhook_secret"):
        body["webhook_secret"] = params["webhook_secret"]
    return body


def with_messages(rows: list[Job], *, creating: bool = False) -> list[dict[str, Any]]:
    """Several jobs rendered with their latest messages (one query). Blocking."""
    messages = latest_messages(j.id for j in rows)
    return [job_body(j, messages.get(j.id), creating=creating) for j in rows]


def get_job_response(job_id: str, token_info: dict[str, Any], kind: str) -> Any:
    """``GET …/{job_id}``: the caller's job of ``kind`` (404 for anyone else's)."""
    with job_problems():
        job = jobs.get_job(job_id, owner_id=owner_scope(token_info), kind=kind)
    return json_response(with_messages([job])[0])


def cancel_job_response(job_id: str, token_info: dict[str, Any], kind: str) -> Any:
    """``POST …/{job_id}/cancel``: request cancellation, answer the job as it is now."""
    with job_problems():
        job = jobs.request_cancel(job_id, owner_id=owner_scope(token_info), kind=kind)
    return json_response(with_messages([job])[0])
