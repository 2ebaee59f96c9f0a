"""Accepting quantization requests: checks, the synchronous/asynchronous choice, queueing.

A request (the API's ``QuantizeRequest``) is checked by :func:`plan_item` — the source model
is visible to the caller (else :class:`~bitnet_sdk.service.registry.models.ModelNotFound`) and
``ready`` (else :class:`~bitnet_sdk.service.registry.models.ModelConflict`), an explicit output
``name`` is free, and the mode fits: ``auto`` runs within the request when the source file
is at most :data:`SYNC_MAX_BYTES`, ``sync`` insists on it (:class:`QuantizeRequestError`
beyond), ``async`` always queues; batch items never run synchronously.

:func:`queue` then creates the jobs under each source model's lock
(:func:`~bitnet_sdk.service.registry.models.lock_model`), so a model cannot be deleted between the
check and the job that names it, and reserves their places in the owner's monthly
``quantize_jobs`` quota in the same transaction
(:func:`~bitnet_sdk.service.accounting.usage.reserve_quantize_jobs`), so concurrent requests cannot
overshoot it. Blocking: call from threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bitnet_sdk.auth.principal import Principal
from bitnet_sdk.config import Settings
from bitnet_sdk.service.accounting import usage
from bitnet_sdk.service.jobs import queue as jobs
from bitnet_sdk.service.registry import models as registry
from bitnet_sdk.store import Job, ModelRecord, write_transaction

__all__ = ["SYNC_MAX_BYTES", "QuantizeItem", "QuantizeRequestError", "plan_item", "queue"]

#: Largest source (bytes) that ``mode: auto`` quantizes within the request.
SYNC_MAX_BYTES = 64 * 1024**2


class QuantizeRequestError(ValueError):
    """A request the API answers with 422; ``field`` names the offending input."""

    def __init__(self, detail: str, field: str) -> None:
        super().__init__(detail)
        self.field = field


@dataclass(frozen=True)
class QuantizeItem:
    """A checked request: what to store as the job's params and how to run it."""

    request: dict[str, Any]
    source_id: str
    run_sync: bool
    webhook_url: str | None = None
    webhook_secret: str | None = None
    secret_generated: bool = False

    def spec(self, operation: str) -> jobs.JobSpec:
        request = {k: v for k, v in self.request.items() if k != "webhook_secret"}
        params = {"request": request, "model_id": self.source_id, "operation": operation,
                  "mode": "sync" if self.run_sync else "async",
                  "secret_generated": self.secret_generated}
        return jobs.JobSpec(params=params, webhook_url=self.webhook_url,
                            webhook_secret=self.webhook_secret)


def plan_item(actor: Principal, request: dict[str, Any], *, in_batch: bool = False,
              field_prefix: str = "") -> tuple[ModelRecord, bool]:
    """Check one request for ``actor``; returns ``(source, run_sync)``. See the module doc."""
    source = registry.get_model(actor, request["model_id"])
    if source.status != "ready" or not source.file_path:
        raise registry.ModelConflict(
            f"Model {source.id!r} is {source.status}; only ready models can be quantized.")
    mode = request.get("mode") or "auto"
    size = int(source.size_bytes or 0)
    if in_batch and mode == "sync":
        raise QuantizeRequestError("Batch items always run as jobs; use mode auto or async.",
                                   f"{field_prefix}mode")
    if mode == "sync" and size > SYNC_MAX_BYTES:
        raise QuantizeRequestError(
            f"Model {source.id!r} ({size} bytes) is too large to quantize within the request "
            f"(at most {SYNC_MAX_BYTES} bytes); use mode async.", f"{field_prefix}mode")
    name = request.get("name")
    if name and ModelRecord.select().where(ModelRecord.owner == actor.user_id,
                                           ModelRecord.name == name).exists():
        raise registry.ModelConflict(f"You already have a model named {name!r}.")
    run_sync = not in_batch and (mode == "sync" or (mode == "auto" and size <= SYNC_MAX_BYTES))
    return source, run_sync


def queue(owner_id: str, items: Sequence[QuantizeItem], *, operation: str,
          body_fingerprint: str, idempotency_key: str | None, tier: str, settings: Settings,
          run_by: str | None = None,
          lease_s: float = jobs.DEFAULT_LEASE_S) -> tuple[list[Job], bool]:
    """Create one job per item, atomically with a last check of every source model and the
    reservation of their quota (:class:`~bitnet_sdk.service.accounting.usage.QuotaExceeded`)."""
    with write_transaction():
        usage.reserve_quantize_jobs(owner_id, tier, len(items), settings)
        for source_id in sorted({item.source_id for item in items}):  # one lock order for all
            registry.lock_model(source_id)
            status = (ModelRecord.select(ModelRecord.status)
                      .where(ModelRecord.id == source_id).scalar())
            if status != "ready":
                raise registry.ModelConflict(
                    f"Model {source_id!r} is {status or 'gone'}; only ready models can be quantized.")
        created_jobs, created = jobs.create_jobs(
            owner_id, "quantize", [i.spec(operation) for i in items],
            body_fingerprint=body_fingerprint, operation=operation,
            idempotency_key=idempotency_key, run_by=run_by, lease_s=lease_s)
        if created:
            usage.record_quantize_jobs(owner_id, [job.id for job in created_jobs])
        return created_jobs, created
