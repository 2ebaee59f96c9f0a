"""OpenAI API shapes ⇄ BitNet inference: pure translation, no I/O.

The OpenAI-compatible operations (``openapi/openai.yaml``, handlers in
:mod:`bitnet_sdk.api.openai`) run on the native inference service. This module
turns their (schema-valid) request bodies into native ``InferenceRequest``
dicts, and the service's results and stream events back into OpenAI bodies,
chunks and error objects. Rules, in one place (``docs/openai.md`` says the same
for users):

* **Sampling.** OpenAI's defaults apply: ``temperature`` 1, ``top_p`` 1, no
  top-k (``top_k`` is accepted as an extension, as llama.cpp and vLLM do).
  ``max_tokens`` defaults to 16 for completions; chat generates until the end
  token or the full context window unless ``max_completion_tokens`` (or the
  older ``max_tokens``, the former wins) bounds it.
* **n > 1** runs ``n`` generations: together, in one batch on one prompt
  prefill, when the month's quota surely covers them all, else one after
  the other so the quota can stop the next one. With a ``seed``,
  choice 0 uses ``seed mod 2**32`` (so ``n=1`` reproduces the native API's
  result for that seed) and choice ``i`` a seed derived from ``(seed, i)``
  (:func:`derive_seed`); without one, every choice samples independently.
  A completion ``prompt`` list runs each prompt ``n`` times; choice indices are
  ``prompt_index * n + i``, as OpenAI numbers them. At most
  :data:`MAX_CHOICES` choices per request.
* **Usage** sums the generations: ``prompt_tokens`` counts the prompt once per
  generation that read it (that is the work done and billed).
* **Logprobs.** A token's ``token`` text is the text it made visible (the
  native runtime holds back half characters and possible stop strings), so the
  tokens of a choice concatenate to its text; alternatives carry their own
  piece. Completion ``text_offset`` counts characters from the start of the
  prompt, so the first completion token's offset is the prompt's length.
* **Errors** are ``{"error": {"message", "type", "param", "code"}}``
  (:func:`error_from_problem` maps every problem the server raises).
* **Optional OpenAI fields** the server does not act on (``store``, ``metadata``,
  ``service_tier``, ``parallel_tool_calls``, ``reasoning_effort``, ``user`` ...)
  are accepted by the schema and ignored here; clients such as LangChain send them.
* **system_fingerprint** names the server version (:data:`SYSTEM_FINGERPRINT`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bitnet_sdk import __version__
from bitnet_sdk.model.sampler import SamplingParams

__all__ = [
    "MAX_CHOICES",
    "SSE_DONE",
    "ChunkBuilder",
    "CompatError",
    "Generation",
    "Result",
    "chat_completion",
    "chat_generations",
    "completion_generations",
    "derive_seed",
    "error_from_problem",
    "model_object",
    "sse",
    "text_completion",
]

#: Most choices one request may ask for (``n`` times the number of prompts).
MAX_CHOICES = 16
#: OpenAI's default ``max_tokens`` for ``/completions``.
COMPLETION_MAX_TOKENS = 16
#: The native API's largest ``max_tokens``: "until the end token or a full context".
UNBOUNDED_MAX_TOKENS = 32768
#: The last line of every successful stream.
SSE_DONE = "data: [DONE]\n\n"
_SEED_SPACE = 1 << 32
_FINISH = {"stop": "stop", "length": "length"}


class CompatError(ValueError):
    """A request the schema accepts but OpenAI's rules refuse (answered 400)."""

    def __init__(self, message: str, *, param: str | None = None,
                 code: str = "invalid_value") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True)
class Generation:
    """One native request to run for one OpenAI choice."""

    index: int
    request: dict[str, Any]
    #: The completion prompt (base of ``text_offset``); None for chat.
    prompt: str | None = None


@dataclass
class Result:
    """One finished generation, as the service reported it."""

    index: int
    text: str
    finish_reason: str
    tokens: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt: str | None = None

    @classmethod
    def from_response(cls, generation: Generation, response: Mapping[str, Any]) -> Result:
        """From a native ``InferenceResponse``."""
        usage = response["usage"]
        return cls(generation.index, response["text"], response["finish_reason"],
                   list(response["tokens"]), usage["prompt_tokens"], usage["completion_tokens"],
                   generation.prompt)


# -- requests ------------------------------------------------------------------------------


SYSTEM_FINGERPRINT = "fp_" + hashlib.sha256(f"bitnet-sdk {__version__}".encode()).hexdigest()[:10]
"""OpenAI's ``system_fingerprint``: changes when the server version does (so may seeded outputs)."""


def derive_seed(seed: int | None, index: int) -> int | None:
    """The native seed of choice ``index`` for an OpenAI ``seed`` (see the module docstring)."""
    if seed is None:
        return None
    if index == 0:
        return seed % _SEED_SPACE
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


def _given(body: Mapping[str, Any], name: str, default: Any = None) -> Any:
    value = body.get(name)
    return default if value is None else value


def _stop(body: Mapping[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


#: OpenAI's sampling defaults where they differ from the runtime's (``SamplingParams()``).
_OPENAI_SAMPLING = {**asdict(SamplingParams()), "temperature": 1.0}


def _sampling(body: Mapping[str, Any], max_tokens: int) -> dict[str, Any]:
    """The native request's sampler options: every ``SamplingParams`` field by name (the
    seed apart: each choice derives its own, see :func:`derive_seed`)."""
    options = {name: _given(body, name, _OPENAI_SAMPLING[name])
               for name in SamplingParams.names() if name != "seed"}
    return {"max_tokens": max_tokens, **options, "stop": _stop(body)}


def _check_choices(count: int) -> None:
    if count > MAX_CHOICES:
        raise CompatError(f"This request asks for {count} choices; at most {MAX_CHOICES} are "
                          "served per request.", param="n")


def completion_generations(body: Mapping[str, Any], model_id: str) -> list[Generation]:
    """The generations a ``/completions`` body asks for, in choice order."""
    prompts = body["prompt"]
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    n = int(_given(body, "n", 1))
    _check_choices(n * len(prompts))
    k = body.get("logprobs")
    base = {"model": model_id, **_sampling(body, int(_given(body, "max_tokens",
                                                           COMPLETION_MAX_TOKENS)))}
    if k is not None:
        base.update(return_probabilities=True, top_logprobs=int(k))
    seed = body.get("seed")
    return [
        Generation(p * n + i, {**base, "prompt": prompt, "seed": derive_seed(seed, i)}, prompt)
        for p, prompt in enumerate(prompts) for i in range(n)
    ]


def _content(content: str | Sequence[Mapping[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(str(part["text"]) for part in content)


def chat_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """OpenAI messages as the chat template sees them: ``developer`` is ``system``,
    text parts are joined by newlines."""
    return [{"role": "system" if m["role"] == "developer" else str(m["role"]),
             "content": _content(m["content"])} for m in messages]


def chat_generations(body: Mapping[str, Any], model_id: str) -> list[Generation]:
    """The generations a ``/chat/completions`` body asks for, in choice order."""
    n = int(_given(body, "n", 1))
    _check_choices(n)
    top = body.get("top_logprobs")
    wants_logprobs = bool(body.get("logprobs"))
    if top and not wants_logprobs:
        raise CompatError("top_logprobs needs logprobs set to true.", param="top_logprobs")
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = _given(body, "max_tokens", UNBOUNDED_MAX_TOKENS)
    base = {"model": model_id, "messages": chat_messages(body["messages"]),
            **_sampling(body, int(limit))}
    if wants_logprobs:
        base.update(return_probabilities=True, top_logprobs=int(top or 0))
    seed = body.get("seed")
    return [Generation(i, {**base, "seed": derive_seed(seed, i)}) for i in range(n)]


# -- responses -----------------------------------------------------------------------------


def finish_reason(native: str) -> str:
    """OpenAI's ``finish_reason`` for a native one (``cancelled`` never reaches a listener)."""
    return _FINISH.get(native, "stop")


def _utf8(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def chat_token_logprob(token: Mapping[str, Any]) -> dict[str, Any]:
    """One native token (with probabilities) as a chat ``logprobs.content`` item."""
    text = str(token["text"])
    return {
        "token": text, "logprob": token["logprob"], "bytes": _utf8(text),
        "top_logprobs": [{"token": alt["text"], "logprob": alt["logprob"],
                          "bytes": _utf8(alt["text"])} for alt in token.get("top_logprobs") or []],
    }


def completion_logprobs(tokens: Sequence[Mapping[str, Any]], offset: int) -> dict[str, Any]:
    """Native tokens as a completion choice's ``logprobs``; offsets start at ``offset``."""
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token["text"])
    return {
        "tokens": [t["text"] for t in tokens],
        "token_logprobs": [t["logprob"] for t in tokens],
        "top_logprobs": [{alt["text"]: alt["logprob"] for alt in t.get("top_logprobs") or []}
                         for t in tokens],
        "text_offset": offsets,
    }


def usage(results: Sequence[Result]) -> dict[str, int]:
    prompt = sum(r.prompt_tokens for r in results)
    completion = sum(r.completion_tokens for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def chat_completion(completion_id: str, created: int, model: str, results: Sequence[Result],
                    *, logprobs: bool) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    choices = [{
        "index": r.index,
        "message": {"role": "assistant", "content": r.text, "refusal": None},
        "logprobs": ({"content": [chat_token_logprob(t) for t in r.tokens], "refusal": None}
                     if logprobs else None),
        "finish_reason": finish_reason(r.finish_reason),
    } for r in results]
    return {"id": completion_id, "object": "chat.completion", "created": created,
            "model": model, "system_fingerprint": SYSTEM_FINGERPRINT, "choices": choices,
            "usage": usage(results)}


def text_completion(completion_id: str, created: int, model: str, results: Sequence[Result],
                    *, logprobs: bool) -> dict[str, Any]:
    """A ``text_completion`` object."""
    choices = [{
        "index": r.index, "text": r.text,
        "logprobs": completion_logprobs(r.tokens, len(r.prompt or "")) if logprobs else None,
        "finish_reason": finish_reason(r.finish_reason),
    } for r in results]
    return {"id": completion_id, "object": "text_completion", "created": created,
            "model": model, "system_fingerprint": SYSTEM_FINGERPRINT, "choices": choices,
            "usage": usage(results)}


def model_object(model_id: str, created: int, owner_id: str | None) -> dict[str, Any]:
    """An OpenAI ``model`` object; server-owned models are ``owned_by`` ``system``."""
    return {"id": model_id, "object": "model", "created": created,
            "owned_by": owner_id or "system"}


# -- streams -------------------------------------------------------------------------------


def sse(data: Mapping[str, Any]) -> str:
    """One ``data:`` event (``json.dumps`` keeps it on one line)."""
    return f"data: {json.dumps(data)}\n\n"


class ChunkBuilder:
    """Stream chunks of one request: ``chat.completion.chunk`` or ``text_completion``.

    Call :meth:`start`, :meth:`token` for each native token event, and
    :meth:`finish` with the ``done`` event, per choice; then :meth:`usage_chunk`
    when ``stream_options.include_usage`` asked for it (every other chunk then
    carries ``"usage": null``, as OpenAI's do).
    """

    def __init__(self, *, chat: bool, completion_id: str, created: int, model: str,
                 logprobs: bool, include_usage: bool) -> None:
        self.chat = chat
        self.logprobs = logprobs
        self.include_usage = include_usage
        self._head = {"id": completion_id,
                      "object": "chat.completion.chunk" if chat else "text_completion",
                      "created": created, "model": model,
                      "system_fingerprint": SYSTEM_FINGERPRINT}
        self._offset = 0
        self._results: list[Result] = []

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk: dict[str, Any] = {**self._head, "choices": choices}
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def _choice(self, index: int, piece: str | None, logprobs: Any,
                finish: str | None) -> dict[str, Any]:
        if self.chat:
            delta = {} if piece is None else {"content": piece}
            return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return {"index": index, "text": piece or "", "logprobs": logprobs,
                "finish_reason": finish}

    def start(self, generation: Generation) -> dict[str, Any] | None:
        """The chunk opening a choice (chat: the assistant role), or None."""
        self._offset = len(generation.prompt or "")
        if not self.chat:
            return None
        return self._chunk([{"index": generation.index,
                             "delta": {"role": "assistant", "content": ""},
                             "logprobs": None, "finish_reason": None}])

    def token(self, index: int, event: Mapping[str, Any]) -> dict[str, Any] | None:
        """The chunk of one token event; None for a token without visible text or logprobs."""
        text = str(event["text"])
        if not text and not self.logprobs:
            return None
        logprobs = None
        if self.logprobs:
            if self.chat:
                logprobs = {"content": [chat_token_logprob(event)], "refusal": None}
            else:
                logprobs = completion_logprobs([event], self._offset)
        self._offset += len(text)
        return self._chunk([self._choice(index, text, logprobs, None)])

    def finish(self, generation: Generation, done: Mapping[str, Any]) -> dict[str, Any]:
        """The last chunk of a choice, with its ``finish_reason``."""
        result = Result(generation.index, done["text"], done["finish_reason"],
                        prompt_tokens=done["usage"]["prompt_tokens"],
                        completion_tokens=done["usage"]["completion_tokens"])
        self._results.append(result)
        piece = None if self.chat else ""
        return self._chunk([self._choice(generation.index, piece, None,
                                         finish_reason(result.finish_reason))])

    def usage_chunk(self) -> dict[str, Any]:
        """The final chunk: no choices, the request's usage."""
        return {**self._head, "choices": [], "usage": usage(self._results)}


# -- errors --------------------------------------------------------------------------------


#: Status → (type, code) when the problem says nothing more specific.
_BY_STATUS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", "invalid_value"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "insufficient_permissions"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    409: ("invalid_request_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    422: ("invalid_request_error", "invalid_value"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    501: ("server_error", "not_implemented"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "timeout"),
}
#: Problem type slug → (type, code), more specific than the status.
_BY_SLUG: dict[str, tuple[str, str]] = {
    "quota-exceeded": ("insufficient_quota", "insufficient_quota"),
    "model-not-found": ("invalid_request_error", "model_not_found"),
    "model-not-ready": ("invalid_request_error", "model_not_ready"),
    "model-ambiguous": ("invalid_request_error", "model_ambiguous"),
    "client-closed": ("invalid_request_error", "client_closed"),
}
#: A validation failure's rule (``errors[].rule`` of a 400 problem) → OpenAI's code for it.
_RULE_CODES = {"required": "missing_required_parameter", "unknown": "unknown_parameter",
               "additionalProperties": "unknown_parameter", "type": "invalid_type"}


def _field_error(problem: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(param, code)`` of a validation problem's first field error (``(None, None)``: none).

    The parameter is the field's name or dotted path; the body as a whole names none.
    """
    errors = problem.get("errors")
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], Mapping):
        return None, None
    field, rule = errors[0].get("field"), str(errors[0].get("rule"))
    return (field if isinstance(field, str) and field != "body" else None,
            _RULE_CODES.get(rule, "invalid_value"))


def error_from_problem(status: int, problem: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI error object (``{"error": {"message", "type", "param", "code"}}``) for an
    RFC 9457 problem the server raised with ``status``: the OpenAI API's one error renderer
    (an :class:`~bitnet_sdk.service.errors.ApiError` is ``problem=error.problem()``).

    A problem may name ``param`` and ``openai_code`` itself (the OpenAI handlers
    do); otherwise the type and code come from its type slug and status, and for
    validation failures the parameter and code from its first field error (``errors[]``).
    """
    detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    slug = str(problem.get("type") or "").rpartition(":")[2]
    error_type, code = _BY_SLUG.get(slug) or _BY_STATUS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None))
    param = problem.get("param")
    if status == 400 and param is None:
        param, field_code = _field_error(problem)
        code = field_code or code
    code = problem.get("openai_code") or code
    return {"error": {"message": detail, "type": error_type,
                      "param": param if isinstance(param, str) else None, "code": code}}
