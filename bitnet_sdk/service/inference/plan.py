"""Before any compute: find the model, check the request against it, fix the parameters.

Everything here is blocking (database, file headers) and transport-neutral: it
raises :class:`ApiError`, which HTTP turns into a problem response, SSE
and the WebSocket into an ``error`` message.

Model access: ``model`` is resolved by the registry's one rule
(:func:`bitnet_sdk.service.registry.models.resolve_model`: an id the caller may see, a
name of the caller's own model, else of the operator's; never another
account's model by name). Anything else is 404, so ids of other people's
private models are not revealed; a name several operator models share is 409
``model-ambiguous``; a model that is not ``ready`` is 409.

Billing (``compute_units``, documented on the API's ``Usage`` schema): one unit
is 10^12 ternary multiply-adds, and a forward pass over one token costs about
one multiply-add per ternary weight, so a request costs
``(prompt_tokens + completion_tokens) * ternary_parameters / 10^12`` units
(dense models: ``samples * parameters / 10^12``), rounded *up* to a millionth
of a unit so that no request that ran is free.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bitnet_sdk.auth.principal import Principal
from bitnet_sdk.config import Settings
from bitnet_sdk.model.sampler import SamplingParams
from bitnet_sdk.service.errors import ApiError, unprocessable
from bitnet_sdk.service.inference.model_cache import ModelRef

if TYPE_CHECKING:
    from bitnet_sdk.service.accounting.usage import QuotaExceeded

__all__ = [
    "DEFAULTS",
    "GenerationParams",
    "ModelRef",
    "Plan",
    "compute_units",
    "find_model",
    "plan_request",
    "quota_error",
]

#: The spec's defaults for ``InferenceRequest`` (Connexion does not fill them in); a sampler
#: option whose spec default is the runtime's (``SamplingParams``) needs no entry.
DEFAULTS: dict[str, Any] = {
    "max_tokens": 256,
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.95,
    "seed": None,
    "stop": [],
    "return_probabilities": False,
    "top_logprobs": 0,
    "backend": "auto",
}

_INPUTS = ("prompt", "messages", "inputs")


@dataclass(frozen=True)
class GenerationParams:
    """Sampling and output settings of a language-model request, defaults applied."""

    max_tokens: int
    sampling: SamplingParams
    stop: tuple[str, ...]
    return_probabilities: bool
    top_logprobs: int

    @property
    def logprobs(self) -> int:
        """Alternatives per token the runtime must compute."""
        return self.top_logprobs if self.return_probabilities else 0


@dataclass(frozen=True)
class Plan:
    """A checked request: model, backend name and either chat/prompt or tensor inputs."""

    model: ModelRef
    backend: str
    params: GenerationParams
    prompt: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    inputs: Any = None
    #: The caller's customer tier: its monthly quotas (``bitnet_sdk.config.Settings.tiers``).
    tier: str = ""
    created_at: str = field(default_factory=lambda: _now_iso())


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def compute_units(work_items: int, parameters: int) -> float:
    """``work_items * parameters / 10^12``, rounded up to 10^-6 (see the module docstring)."""
    return math.ceil(max(0, work_items) * max(0, parameters) / 1e6) / 1e6


# -- the model ----------------------------------------------------------------------------


def find_model(ident: str, caller: Principal, settings: Settings) -> ModelRef:
    """The model ``ident`` names for ``caller``; :class:`ApiError` 404/409 otherwise.

    Resolution is the registry's (:func:`bitnet_sdk.service.registry.models.resolve_model`).
    """
    from bitnet_sdk.service.registry import models

    try:
        record = models.resolve_model(caller, ident)
    except models.AmbiguousModelName as exc:
        raise ApiError(409, "Conflict", str(exc), slug="model-ambiguous",
                       candidates=exc.candidates) from None
    except models.ModelNotFound as exc:
        raise ApiError(404, "Not Found", str(exc), slug="not-found") from None
    try:  # with object storage: this process's cached copy, fetched on first use
        path = models.model_path(settings, record) if record.status == "ready" else None
    except FileNotFoundError:
        raise ApiError(409, "Conflict", "The model's file is not available.",
                       slug="model-not-ready") from None
    if record.status != "ready" or path is None:
        raise ApiError(409, "Conflict",
                       f"Model {record.id} is {record.status}, not ready to run.",
                       slug="model-not-ready")
    size = record.size_bytes or _file_size(path)
    version = record.sha256 or record.updated_at.isoformat()
    return ModelRef(id=record.id, name=record.name, kind=record.kind, path=path,
                    size_bytes=int(size), parameters=_parameters(record.metadata or {}, path),
                    version=version)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        raise ApiError(409, "Conflict", "The model's file is not available.",
                       slug="model-not-ready") from None


def _parameters(metadata: dict[str, Any], path: Path) -> int:
    for key in ("ternary_parameters", "parameters"):
        value = metadata.get(key)
        if isinstance(value, int) and value > 0:
            return value
    try:
        stat = path.stat()
    except OSError:
        return 0
    return _file_parameters(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_parameters(path: str, _size: int, _mtime_ns: int) -> int:
    """Ternary (else all) parameters read from the file's header, once per file version."""
    from bitnet_sdk.loading import metadata as model_metadata

    try:
        meta = model_metadata(path)
    except (OSError, ValueError):
        return 0
    return int(meta.get("ternary_parameters") or meta.get("parameters") or 0)


# -- the request --------------------------------------------------------------------------


def plan_request(caller: Principal, request: dict[str, Any], settings: Settings, *,
                 streaming: bool = False) -> Plan:
    """Check ``request`` (already schema-valid) for ``caller``; blocking. See the module docstring."""
    model = find_model(str(request["model"]), caller, settings)
    given = [name for name in _INPUTS if request.get(name) is not None]
    if len(given) != 1:
        raise unprocessable("Give exactly one of prompt, messages or inputs.",
                            errors=[{"field": n, "message": "give exactly one input"}
                                    for n in (given or list(_INPUTS))])
    params = _params(request)
    _check_kind(model, given[0], streaming)
    backend = _backend_name(str(request.get("backend") or "auto"), settings)
    tier = _check_quota(caller, settings, model)
    messages = request.get("messages")
    return Plan(model=model, backend=backend, params=params, prompt=request.get("prompt"),
                messages=tuple(dict(m) for m in messages) if messages else None,
                inputs=request.get("inputs"), tier=tier)


def _params(request: dict[str, Any]) -> GenerationParams:
    values = {**DEFAULTS, **{k: v for k, v in request.items() if v is not None}}
    if values["top_logprobs"] and not values["return_probabilities"]:
        raise unprocessable("top_logprobs needs return_probabilities.",
                            errors=[{"field": "top_logprobs",
                                     "message": "set return_probabilities to true"}])
    try:
        sampling = SamplingParams.from_mapping(values)
    except (TypeError, ValueError) as exc:
        raise unprocessable(str(exc)) from None
    return GenerationParams(
        max_tokens=int(values["max_tokens"]), sampling=sampling, stop=tuple(values["stop"]),
        return_probabilities=bool(values["return_probabilities"]),
        top_logprobs=int(values["top_logprobs"]),
    )


def _check_kind(model: ModelRef, given: str, streaming: bool) -> None:
    if model.kind == "dense":
        if given != "inputs":
            raise unprocessable(f"Model {model.id} is a dense model: give inputs, not {given}.",
                                errors=[{"field": given, "message": "dense models take inputs"}])
        if streaming:
            raise unprocessable("Only language models can stream; use POST /inference.")
    elif given == "inputs":
        raise unprocessable(f"Model {model.id} is a language model: give prompt or messages.",
                            errors=[{"field": "inputs",
                                     "message": "language models take prompt or messages"}])


def _backend_name(requested: str, settings: Settings) -> str:
    from bitnet_sdk import backends

    name = settings.backend if requested == "auto" else requested
    try:
        return backends.get(name).name
    except backends.BackendError as exc:
        raise unprocessable(f"Backend {requested!r} cannot run here: {exc}",
                            errors=[{"field": "backend", "message": str(exc)}]) from None


def _check_quota(caller: Principal, settings: Settings, model: ModelRef) -> str:
    """Refuse at once when the month's token or compute-unit quota is already spent or held
    by requests in flight; the caller's tier. (The reservation of the request's worst case
    is made once its prompt is tokenized: ``bitnet_sdk.service.accounting.reservations``.)"""
    from bitnet_sdk.service.accounting import usage
    from bitnet_sdk.store.models import User

    user = User.get_or_none(User.id == caller.user_id)
    if user is None:
        raise ApiError(401, "Unauthorized", "The account no longer exists.",
                       slug="unauthorized")
    try:
        usage.check_quota(user, "inference_tokens", 1, settings)
        usage.check_quota(user, "compute_units", compute_units(1, model.parameters), settings)
    except usage.QuotaExceeded as exc:
        raise quota_error(exc) from None
    return str(user.tier)


def quota_error(exc: QuotaExceeded) -> ApiError:
    """The 429 ``quota-exceeded`` problem for a ``usage.QuotaExceeded``; ``Retry-After`` is
    the month's end."""
    status = exc.detail
    wait = max(1, math.ceil((status.resets_at - datetime.now(timezone.utc)).total_seconds()))
    return ApiError(429, "Too Many Requests", str(exc), slug="quota-exceeded",
                    headers={"Retry-After": str(wait)}, **status.as_problem_detail())
