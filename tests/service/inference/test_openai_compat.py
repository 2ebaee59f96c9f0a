"""OpenAI bodies ⇄ native inference requests and results: the pure translation rules."""

from __future__ import annotations

import json

import pytest

from bitnet_sdk.service.inference import openai_compat as oc

MODEL = "mdl_01hv3k8q2m9x7w4c5t6y8z0a1b"
CHAT = [{"role": "user", "content": "Hi"}]


def _token(text: str, logprob: float = -0.5, alts: tuple[tuple[str, float], ...] = ()) -> dict:
    return {"token_id": 7, "text": text, "logprob": logprob,
            "top_logprobs": [{"token_id": 1, "text": t, "logprob": lp} for t, lp in alts]}


# -- seeds and requests --------------------------------------------------------------------


def test_choice_zero_keeps_the_seed_and_others_derive_distinct_ones():
    assert oc.derive_seed(None, 0) is None and oc.derive_seed(None, 3) is None
    assert oc.derive_seed(42, 0) == 42
    assert oc.derive_seed(-1, 0) == 2**32 - 1 and oc.derive_seed(2**40 + 5, 0) == 5
    derived = [oc.derive_seed(42, i) for i in range(1, 9)]
    assert derived == [oc.derive_seed(42, i) for i in range(1, 9)]  # a function of (seed, i)
    assert len(set(derived)) == 8 and 42 not in derived
    assert all(0 <= d < 2**32 for d in derived)  # type: ignore[operator]
    assert oc.derive_seed(43, 1) != oc.derive_seed(42, 1)


def test_completion_defaults_are_openais():
    (gen,) = oc.completion_generations({"model": "m", "prompt": "Hello"}, MODEL)
    assert gen.index == 0 and gen.prompt == "Hello"
    assert gen.request == {"model": MODEL, "prompt": "Hello", "max_tokens": 16,
                           "temperature": 1.0, "top_p": 1.0, "top_k": 0, "stop": [],
                           "seed": None}


def test_nulls_mean_defaults():
    body = {"model": "m", "prompt": "x", "max_tokens": None, "temperature": None, "top_p": None,
            "n": None, "stop": None, "seed": None, "logprobs": None, "top_k": None}
    (gen,) = oc.completion_generations(body, MODEL)
    assert gen.request["max_tokens"] == 16 and gen.request["temperature"] == 1.0
    assert gen.request["stop"] == [] and "return_probabilities" not in gen.request


def test_completion_prompts_times_n_are_numbered_prompt_major():
    body = {"model": "m", "prompt": ["a", "b"], "n": 3, "seed": 7, "stop": "\n",
            "logprobs": 2, "temperature": 0.5, "top_k": 40, "max_tokens": 5}
    gens = oc.completion_generations(body, MODEL)
    assert [(g.index, g.prompt) for g in gens] == [(0, "a"), (1, "a"), (2, "a"),
                                                   (3, "b"), (4, "b"), (5, "b")]
    assert [g.request["seed"] for g in gens] == [oc.derive_seed(7, i) for i in (0, 1, 2)] * 2
    first = gens[0].request
    assert first["stop"] == ["\n"] and first["top_k"] == 40 and first["temperature"] == 0.5
    assert first["return_probabilities"] is True and first["top_logprobs"] == 2


def test_more_than_sixteen_choices_are_refused():
    with pytest.raises(oc.CompatError) as caught:
        oc.completion_generations({"model": "m", "prompt": ["a"] * 6, "n": 3}, MODEL)
    assert caught.value.param == "n"
    assert len(oc.completion_generations({"model": "m", "prompt": ["a"] * 8, "n": 2}, MODEL)) == 16


def test_chat_messages_as_the_template_sees_them():
    messages = [{"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "one"},
                                             {"type": "text", "text": "two"}], "name": "ann"},
                {"role": "assistant", "content": "ok"}]
    (gen,) = oc.chat_generations({"model": "m", "messages": messages}, MODEL)
    assert gen.request["messages"] == [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "one\ntwo"},
                                       {"role": "assistant", "content": "ok"}]
    assert gen.prompt is None


def test_chat_token_limits():
    def limit(**fields: object) -> int:
        (gen,) = oc.chat_generations({"model": "m", "messages": CHAT, **fields}, MODEL)
        return gen.request["max_tokens"]

    assert limit() == oc.UNBOUNDED_MAX_TOKENS
    assert limit(max_tokens=9) == 9
    assert limit(max_completion_tokens=5, max_tokens=9) == 5
    assert limit(max_completion_tokens=None, max_tokens=None) == oc.UNBOUNDED_MAX_TOKENS


def test_chat_logprobs():
    (plain,) = oc.chat_generations({"model": "m", "messages": CHAT, "logprobs": False}, MODEL)
    assert "return_probabilities" not in plain.request
    (gen,) = oc.chat_generations({"model": "m", "messages": CHAT, "logprobs": True}, MODEL)
    assert gen.request["return_probabilities"] is True and gen.request["top_logprobs"] == 0
    (gen,) = oc.chat_generations({"model": "m", "messages": CHAT, "logprobs": True,
                                  "top_logprobs": 4}, MODEL)
    assert gen.request["top_logprobs"] == 4
    with pytest.raises(oc.CompatError) as caught:
        oc.chat_generations({"model": "m", "messages": CHAT, "top_logprobs": 2}, MODEL)
    assert caught.value.param == "top_logprobs"
    # top_logprobs 0 without logprobs asks for nothing and is fine.
    oc.chat_generations({"model": "m", "messages": CHAT, "top_logprobs": 0}, MODEL)


def test_chat_n_uses_derived_seeds():
    gens = oc.chat_generations({"model": "m", "messages": CHAT, "n": 3, "seed": 5}, MODEL)
    assert [g.index for g in gens] == [0, 1, 2]
    assert [g.request["seed"] for g in gens] == [oc.derive_seed(5, i) for i in range(3)]
    with pytest.raises(oc.CompatError):
        oc.chat_generations({"model": "m", "messages": CHAT, "n": 17}, MODEL)


# -- responses -----------------------------------------------------------------------------


def _results() -> list[oc.Result]:
    tokens = [_token("Pa", -0.1, (("Pa", -0.1), ("Lo", -2.5))), _token("ris", -0.2, (("ris", -0.2),))]
    return [oc.Result(0, "Paris", "stop", tokens, 5, 2, "The capital is"),
            oc.Result(1, "Lo", "length", tokens[:1], 5, 1, "The capital is")]


def test_chat_completion_shape_and_summed_usage():
    body = oc.chat_completion("chatcmpl-1", 100, MODEL, _results(), logprobs=False)
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    assert body["created"] == 100 and body["id"] == "chatcmpl-1"
    assert [c["message"] for c in body["choices"]] == [
        {"role": "assistant", "content": "Paris", "refusal": None},
        {"role": "assistant", "content": "Lo", "refusal": None}]
    assert [c["finish_reason"] for c in body["choices"]] == ["stop", "length"]
    assert all(c["logprobs"] is None for c in body["choices"])
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}


def test_chat_logprobs_shape():
    body = oc.chat_completion("c", 1, MODEL, _results()[:1], logprobs=True)
    content = body["choices"][0]["logprobs"]["content"]
    assert content[0] == {
        "token": "Pa", "logprob": -0.1, "bytes": [80, 97],
        "top_logprobs": [{"token": "Pa", "logprob": -0.1, "bytes": [80, 97]},
                         {"token": "Lo", "logprob": -2.5, "bytes": [76, 111]}]}
    assert "".join(t["token"] for t in content) == body["choices"][0]["message"]["content"]


def test_text_completion_logprobs_count_offsets_from_the_prompt_start():
    body = oc.text_completion("cmpl-1", 1, MODEL, _results(), logprobs=True)
    assert body["object"] == "text_completion"
    first = body["choices"][0]
    assert first["text"] == "Paris" and first["finish_reason"] == "stop"
    assert first["logprobs"] == {"tokens": ["Pa", "ris"], "token_logprobs": [-0.1, -0.2],
                                 "top_logprobs": [{"Pa": -0.1, "Lo": -2.5}, {"ris": -0.2}],
                                 "text_offset": [14, 16]}


def test_finish_reasons_openai_knows():
    assert oc.finish_reason("stop") == "stop" and oc.finish_reason("length") == "length"
    assert oc.finish_reason("cancelled") == "stop"


def test_model_object():
    assert oc.model_object(MODEL, 5, None) == {"id": MODEL, "object": "model", "created": 5,
                                               "owned_by": "system"}
    assert oc.model_object(MODEL, 5, "usr_1")["owned_by"] == "usr_1"


# -- streams -------------------------------------------------------------------------------


def _done(text: str, finish: str, prompt: int, completion: int) -> dict:
    return {"text": text, "finish_reason": finish,
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}


def test_chat_chunks():
    b = oc.ChunkBuilder(chat=True, completion_id="chatcmpl-9", created=3, model=MODEL,
                        logprobs=False, include_usage=True)
    gen = oc.Generation(0, {})
    opening = b.start(gen)
    assert opening is not None
    assert opening["choices"] == [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                   "logprobs": None, "finish_reason": None}]
    assert opening["usage"] is None and opening["object"] == "chat.completion.chunk"
    assert b.token(0, _token("")) is None  # nothing visible, nothing asked: no chunk
    chunk = b.token(0, _token("Hi"))
    assert chunk is not None
    assert chunk["choices"] == [{"index": 0, "delta": {"content": "Hi"}, "logprobs": None,
                                 "finish_reason": None}]
    last = b.finish(gen, _done("Hi", "length", 4, 2))
    assert last["choices"][0]["delta"] == {} and last["choices"][0]["finish_reason"] == "length"
    b.start(oc.Generation(1, {}))
    b.finish(oc.Generation(1, {}), _done("", "stop", 4, 1))
    assert b.usage_chunk() == {"id": "chatcmpl-9", "object": "chat.completion.chunk",
                               "created": 3, "model": MODEL, "choices": [],
                               "system_fingerprint": oc.SYSTEM_FINGERPRINT,
                               "usage": {"prompt_tokens": 8, "completion_tokens": 3,
                                         "total_tokens": 11}}


def test_chunks_without_include_usage_have_no_usage_member():
    b = oc.ChunkBuilder(chat=True, completion_id="c", created=3, model=MODEL, logprobs=False,
                        include_usage=False)
    chunk = b.token(0, _token("x"))
    assert chunk is not None and "usage" not in chunk


def test_completion_chunks_with_logprobs_keep_empty_tokens_and_offsets():
    b = oc.ChunkBuilder(chat=False, completion_id="cmpl-2", created=3, model=MODEL,
                        logprobs=True, include_usage=False)
    gen = oc.Generation(2, {}, prompt="abc")
    assert b.start(gen) is None
    first, empty, last = (b.token(2, _token(t)) for t in ("de", "", "f"))
    assert first is not None and empty is not None and last is not None
    assert first["object"] == "text_completion"
    assert [c["choices"][0]["text"] for c in (first, empty, last)] == ["de", "", "f"]
    offsets = [c["choices"][0]["logprobs"]["text_offset"] for c in (first, empty, last)]
    assert offsets == [[3], [5], [5]]
    end = b.finish(gen, _done("def", "stop", 2, 3))
    assert end["choices"] == [{"index": 2, "text": "", "logprobs": None, "finish_reason": "stop"}]


def test_sse_lines():
    line = oc.sse({"a": "x\ny"})
    assert line.startswith("data: ") and line.endswith("\n\n") and line.count("\n") == 2
    assert json.loads(line[len("data: "):]) == {"a": "x\ny"}
    assert oc.SSE_DONE == "data: [DONE]\n\n"


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "rule", "param", "code"), [
    ("messages", "required", "messages", "missing_required_parameter"),
    ("foo", "additionalProperties", "foo", "unknown_parameter"),
    ("foo", "unknown", "foo", "unknown_parameter"),
    ("temperature", "type", "temperature", "invalid_type"),
    ("temperature", "maximum", "temperature", "invalid_value"),
    ("messages.0.role", "enum", "messages.0.role", "invalid_value"),
    ("body", "required", None, "missing_required_parameter"),
])
def test_validation_failures_name_the_parameter(field, rule, param, code):
    detail = f"Invalid request: {field} (body) is wrong."
    body = oc.error_from_problem(400, {
        "type": "urn:bitnet:problem:validation", "title": "Bad Request", "detail": detail,
        "status": 400, "errors": [{"field": field, "location": "body", "rule": rule,
                                   "message": "is wrong"}]})
    assert body == {"error": {"message": detail, "type": "invalid_request_error",
                              "param": param, "code": code}}


def test_a_400_without_field_errors_names_no_parameter():
    body = oc.error_from_problem(400, {"type": "about:blank", "title": "Bad Request",
                                       "detail": "Request body must not be empty", "status": 400})
    assert body["error"]["param"] is None and body["error"]["code"] == "invalid_value"


@pytest.mark.parametrize(("status", "slug", "error_type", "code"), [
    (401, None, "authentication_error", "invalid_api_key"),
    (403, None, "permission_error", "insufficient_permissions"),
    (404, None, "invalid_request_error", "not_found"),
    (404, "model-not-found", "invalid_request_error", "model_not_found"),
    (409, "model-not-ready", "invalid_request_error", "model_not_ready"),
    (429, "rate-limited", "requests", "rate_limit_exceeded"),
    (429, "quota-exceeded", "insufficient_quota", "insufficient_quota"),
    (500, "internal", "server_error", "internal_error"),
    (503, "unavailable", "server_error", "service_unavailable"),
    (504, "timeout", "server_error", "timeout"),
    (502, None, "server_error", None),
    (418, None, "invalid_request_error", None),
])
def test_problems_map_to_openai_types_and_codes(status, slug, error_type, code):
    problem = {"type": f"urn:bitnet:problem:{slug}" if slug else "about:blank",
               "title": "T", "detail": "what happened", "status": status}
    error = oc.error_from_problem(status, problem)["error"]
    assert (error["type"], error["code"], error["message"]) == (error_type, code, "what happened")


def test_a_problem_may_name_its_param_and_code():
    problem = {"type": "urn:bitnet:problem:bad-request", "title": "Bad Request", "status": 400,
               "detail": "too long", "param": "messages", "openai_code": "context_length_exceeded"}
    assert oc.error_from_problem(400, problem)["error"] == {
        "message": "too long", "type": "invalid_request_error", "param": "messages",
        "code": "context_length_exceeded"}
    assert oc.error_from_problem(500, {})["error"]["message"] == "HTTP 500"
    assert oc.error_from_problem(404, {"title": "Not Found"})["error"]["message"] == "Not Found"
