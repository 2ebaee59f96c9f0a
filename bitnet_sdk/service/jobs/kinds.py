"""What each kind of job does once a worker holds it: ``quantize`` and ``inference_batch``.

A runner is ``runner(ctx: JobContext) -> result`` (the JSON stored as ``Job.result``). It
reports progress through :meth:`JobContext.progress`, which answers False when the job must
stop (cancel requested, lease lost, worker shutting down), and ends by returning, or raising:

* :class:`JobCancelled` — it stopped because :meth:`JobContext.progress` said so (its
  ``result`` is kept: a batch keeps the answers it already has);
* :class:`JobFailed` — a problem retrying cannot fix (bad source, name taken): the job fails
  with that problem at once;
* anything else — a fault (disk full, a bug): the attempt is retried after a back-off until
  ``max_attempts``.

Runners are written to be safe to run again after a worker died mid-way: a quantization
writes to a per-job file that is replaced on the next attempt, and a model registered by an
attempt that died before it could record its success is found again (by the job id kept in its
``quantization_report``) instead of being registered twice.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bitnet_sdk.auth.principal import Principal
from bitnet_sdk.config import Settings
from bitnet_sdk.service.errors import ApiError
from bitnet_sdk.store import ModelRecord, User

__all__ = ["RUNNERS", "JobCancelled", "JobContext", "JobFailed", "problem",
           "run_inference_batch", "run_quantize"]

log = logging.getLogger(__name__)

#: Default names of quantized models get ``-2``, ``-3`` … when taken, up to this many tries.
_NAME_TRIES = 20
_NAME_MAX = 128


def problem(status: int, title: str, detail: str, slug: str, **ext: Any) -> dict[str, Any]:
    """An RFC 9457 problem dict, as stored in ``Job.error``."""
    return ApiError(status, title, detail, slug=slug, **ext).problem()


class JobFailed(Exception):
    """The job cannot succeed: fail it with ``problem`` (no retry)."""

    def __init__(self, problem_: dict[str, Any]) -> None:
        super().__init__(problem_.get("detail") or problem_["title"])
        self.problem = problem_


class JobCancelled(Exception):
    """The runner stopped because it was told to; ``result`` is what it finished before."""

    def __init__(self, result: dict[str, Any] | None = None) -> None:
        super().__init__("cancelled")
        self.result = result


@dataclass
class JobContext:
    """What a runner sees of its job and worker."""

    job_id: str
    owner_id: str
    params: dict[str, Any]
    attempt: int
    settings: Settings
    #: ``report(fraction, message) -> cancel_requested``; rate-limited by the worker.
    report: Callable[[float, str | None], bool]
    #: The worker's inference service (created on first use).
    inference: Callable[[], Any]
    #: Set when the job must stop: cancel requested, lease lost or worker shutting down.
    stop: threading.Event = field(default_factory=threading.Event)
    #: Seconds to pause at every checkpoint (``BITNET_JOB_STEP_DELAY_S``: demos and tests).
    step_delay_s: float = 0.0

    @property
    def stopping(self) -> bool:
        return self.stop.is_set()

    def progress(self, fraction: float, message: str | None = None) -> bool:
        """Report progress; False means stop now (then raise :class:`JobCancelled`)."""
        if self.step_delay_s > 0:
            self.stop.wait(self.step_delay_s)
        if self.report(fraction, message):
            self.stop.set()
        return not self.stop.is_set()


# -- quantize ----------------------------------------------------------------------------


def run_quantize(ctx: JobContext) -> dict[str, Any]:
    """Quantize ``params.request.model_id`` and register the output as the owner's model."""
    from bitnet_sdk.quantization.errors import QuantizationCancelled, QuantizationError

    request = ctx.params["request"]
    source = ModelRecord.get_or_none(ModelRecord.id == request["model_id"])
    if source is None or source.status != "ready" or not source.file_path:
        raise JobFailed(problem(409, "Conflict", f"Model {request['model_id']!r} is no longer "
                                "available to quantize.", "source-unavailable"))
    done = _registered_output(ctx.job_id, source.id)
    if done is not None:  # an earlier attempt registered it, then died before saying so
        return quantize_result(done, source)
    work = ctx.settings.data_dir / "jobs"
    work.mkdir(parents=True, exist_ok=True)
    dst = work / f"{ctx.job_id}.gguf"
    dst.unlink(missing_ok=True)  # a previous attempt's output that was never registered
    options = request.get("options") or {}
    calibration = options.get("calibration") or {}
    try:
        report = _quantize(ctx, source, dst, request, options, calibration)
    except QuantizationCancelled:
        raise JobCancelled() from None
    except (QuantizationError, ValueError, FileNotFoundError) as exc:
        raise JobFailed(problem(422, "Unprocessable Content", f"The model cannot be quantized: "
                                f"{exc}", "quantization-failed")) from exc
    try:
        if not ctx.progress(0.97, "registering the quantized model"):
            raise JobCancelled()
        record = _register(ctx, source, dst, request, {**report.to_dict(), "job_id": ctx.job_id})
    finally:
        dst.unlink(missing_ok=True)
    return quantize_result(record, source)


def _quantize(ctx: JobContext, source: ModelRecord, dst: Any, request: dict[str, Any],
              options: dict[str, Any], calibration: dict[str, Any]) -> Any:
    from bitnet_sdk.quantization.pipeline import quantize

    def on_progress(done: int, total: int, stage: str) -> bool:
        return ctx.progress(0.95 * done / total if total else 0.0, f"quantizing: {stage}")

    from bitnet_sdk.service.registry.models import model_path

    path = model_path(ctx.settings, source)
    if path is None:
        raise FileNotFoundError(f"model {source.id} has no file")
    return quantize(
        path, dst, request["qtype"], progress=on_progress,
        keep_high_precision=options.get("keep_high_precision"),
        high_precision_type=options.get("high_precision_type"),
        text=calibration.get("texts"), max_tokens=int(calibration.get("max_tokens") or 512),
        backend=ctx.settings.backend,
    )


def _registered_output(job_id: str, source_id: str) -> ModelRecord | None:
    return (ModelRecord.select()
            .where(ModelRecord.source_model == source_id,
                   ModelRecord.quantization_report.contains(f'"job_id":"{job_id}"'))
            .first())


def default_name(source_name: str, qtype: str) -> str:
    suffix = f"-{qtype}"
    return source_name[: _NAME_MAX - len(suffix)] + suffix


def _register(ctx: JobContext, source: ModelRecord, dst: Any, request: dict[str, Any],
              report: dict[str, Any]) -> ModelRecord:
    from bitnet_sdk.service.accounting import storage_quota
    from bitnet_sdk.service.registry import models as registry

    explicit = request.get("name")
    base = explicit or default_name(source.name, request["qtype"])
    for n in range(1 if explicit else _NAME_TRIES):
        name = base if n == 0 else f"{base[: _NAME_MAX - 4]}-{n + 1}"
        try:
            return registry.register_file(
                ctx.settings, dst, owner_id=ctx.owner_id, name=name,
                description=f"{source.name} quantized to {request['qtype']}",
                source_model_id=source.id, quantization_report=report)
        except registry.ModelConflict as exc:
            if explicit:
                raise JobFailed(problem(409, "Conflict", str(exc), "conflict")) from exc
        except storage_quota.StorageQuotaExceeded as exc:
            raise JobFailed(problem(413, "Payload Too Large", str(exc), "storage-quota-exceeded",
                                    **exc.as_problem_detail())) from exc
        except registry.InvalidModelFile as exc:
            raise JobFailed(problem(500, "Internal Server Error", "The quantized file failed "
                                    f"validation: {exc}", "invalid-output")) from exc
    raise JobFailed(problem(409, "Conflict", f"No free model name like {base!r}; give a name.",
                            "conflict"))


def quantize_result(record: ModelRecord, source: ModelRecord) -> dict[str, Any]:
    """The spec's ``QuantizeResult`` for the registered output ``record``."""
    report = record.quantization_report or {}
    calibration = report.get("calibration")
    if calibration is not None:  # the schema's numbers are not nullable: leave out the unknown
        calibration = {k: v for k, v in calibration.items() if v is not None}
    return {
        "model_id": record.id,
        "source_model_id": source.id,
        "qtype": report.get("qtype") or record.qtype,
        "size_bytes": int(record.size_bytes or 0),
        "source_size_bytes": int(source.size_bytes or report.get("original_bytes") or 0),
        "bits_per_weight": float(report.get("bits_per_weight") or 0.0),
        "tensors_quantized": int(report.get("tensors_quantized") or 0),
        "tensors_kept": int(report.get("tensors_kept") or 0),
        "duration_ms": round(float(report.get("seconds") or 0.0) * 1000, 3),
        "calibration": calibration,
    }


# -- inference batch ---------------------------------------------------------------------


def run_inference_batch(ctx: JobContext) -> dict[str, Any]:
    """Run every request in order; one failing request does not fail the job."""
    requests = ctx.params["request"]["requests"]
    user = User.get_or_none(User.id == ctx.owner_id)
    if user is None or user.disabled:
        raise JobFailed(problem(403, "Forbidden", "The account that created the job cannot run "
                                "it any more.", "forbidden"))
    caller = Principal(user.id, user.tier, bool(user.is_admin))
    service = ctx.inference()
    results: list[dict[str, Any]] = []
    for index, request in enumerate(requests):
        if not ctx.progress(index / len(requests), f"request {index + 1} of {len(requests)}"):
            raise JobCancelled(_batch_result(results, len(requests)))
        rid = f"req_{uuid.uuid4().hex[:24]}"
        try:
            response = service.run_sync(caller, request, request_id=rid, cancel=ctx.stop)
        except ApiError as exc:
            results.append({"index": index, "status": "failed", "error": exc.problem(rid)})
            continue
        status = "cancelled" if response.get("finish_reason") == "cancelled" else "succeeded"
        results.append({"index": index, "status": status, "response": response})
    if ctx.stopping:
        raise JobCancelled(_batch_result(results, len(requests)))
    return _batch_result(results, len(requests))


def _batch_result(results: list[dict[str, Any]], total: int) -> dict[str, Any]:
    """``InferenceBatchResult``; requests never started are listed as cancelled."""
    items = list(results)
    items += [{"index": i, "status": "cancelled"} for i in range(len(items), total)]
    return {"results": items,
            "succeeded": sum(1 for r in items if r["status"] == "succeeded"),
            "failed": sum(1 for r in items if r["status"] == "failed")}


#: Runner of each job kind.
RUNNERS: dict[str, Callable[[JobContext], dict[str, Any]]] = {
    "quantize": run_quantize,
    "inference_batch": run_inference_batch,
}
