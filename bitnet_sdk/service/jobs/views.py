"""A job as the API shows it (the spec's ``Job`` schema), shared by every transport.

HTTP handlers, webhook payloads and the WebSocket's ``progress`` messages all render jobs with
:func:`job_view`, so a job looks the same wherever a client meets it. Internal ``params`` (the
stored request, the webhook secret, the request fingerprint) never appear.

``message`` (what the job is doing now) is not a column: it is the ``message`` of the job's
latest event, read in one query for a whole page by :func:`latest_messages`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import peewee

from bitnet_sdk.store.models import Job, JobEvent

__all__ = ["API_BASE_PATH", "job_links", "job_view", "latest_messages", "utc_iso"]

#: Where the API is mounted (``bitnet_sdk.server.app.API_BASE_PATH``; repeated here so that
#: job workers need not import the server).
API_BASE_PATH = "/v1"
_PATHS = {"quantize": "quantize", "inference_batch": "inference"}


def utc_iso(value: datetime | None) -> str | None:
    """RFC 3339 UTC time with ``Z`` (None stays None)."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def job_links(job: Job) -> dict[str, Any]:
    base = f"{API_BASE_PATH}/{_PATHS.get(job.kind, 'jobs')}/{job.id}"
    result = None
    if job.kind == "quantize" and job.status == "succeeded" and job.result:
        result = f"{API_BASE_PATH}/models/{job.result['model_id']}"
    return {"self": base, "cancel": f"{base}/cancel", "result": result}


def job_view(job: Job, message: str | None = None) -> dict[str, Any]:
    """The ``Job`` representation of ``job`` (``message`` from :func:`latest_messages`)."""
    params = job.params or {}
    out: dict[str, Any] = {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "progress": min(1.0, max(0.0, float(job.progress or 0.0))),
        "message": message,
        "model_id": params.get("model_id"),
        "created_at": utc_iso(job.created_at),
        "started_at": utc_iso(job.started_at),
        "finished_at": utc_iso(job.finished_at),
        "attempts": int(job.attempts),
        "cancel_requested": bool(job.cancel_requested),
        "webhook_url": job.webhook_url,
        "links": job_links(job),
    }
    # Absent, never null, while there is nothing to show: the spec types ``result`` as a union
    # of the two result shapes, which OpenAPI 3.0 cannot make nullable.
    if job.result is not None:
        out["result"] = job.result
    if job.error:
        out["error"] = job.error
    return out


def latest_messages(job_ids: Iterable[str]) -> dict[str, str | None]:
    """The ``message`` of each job's latest event that has one (one query). Blocking."""
    ids = list(job_ids)
    if not ids:
        return {}
    latest = (JobEvent.select(peewee.fn.MAX(JobEvent.id))
              .where(JobEvent.job.in_(ids))
              .group_by(JobEvent.job))
    rows = JobEvent.select(JobEvent.job, JobEvent.data).where(JobEvent.id.in_(latest))
    found = {row.job_id: (row.data or {}).get("message") for row in rows}
    return {job_id: found.get(job_id) for job_id in ids}
