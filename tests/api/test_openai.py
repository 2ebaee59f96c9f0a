"""The official ``openai`` client, given only ``base_url`` and ``api_key``, against a live server.

A synthetic BitNet model (LLaMA-3 chat template in its GGUF metadata) is
registered in the server's store; answers are compared with the native API's
for the same request, so every test can fail on its own.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from bitnet_sdk.config import DEFAULT_TIERS, Settings, TierLimits
from tests.conftest import Account, make_account
from tests.generators._toolchain import node_modules, run
from tests.support.inference import LLAMA3_CHAT_TEMPLATE, ModelFiles, register_model

PROMPT = "The quick brown fox"
MESSAGES = [{"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": "What is the capital of France?"}]
#: Tiers for the limit tests: 3 requests an hour; a 10-token monthly quota.
TIERS = {**DEFAULT_TIERS, "tiny": TierLimits(3, 1, 1_000_000, 100_000),
         "thrifty": TierLimits(1_000, 1, 10, 100_000)}


@dataclass
class Server:
    """One live server for this module (starting one costs seconds); tests that count
    requests, tokens or models use accounts and names of their own."""

    url: str
    settings: Settings
    owner: Account
    model_id: str


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> ModelFiles:
    return ModelFiles(tmp_path_factory.mktemp("openai-models"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_files) -> Iterator[Server]:
    from bitnet_sdk.server.app import create_app
    from bitnet_sdk.server.asgi.testing import ServerThread
    from bitnet_sdk.server.run import websocket_routes

    settings = Settings(data_dir=tmp_path_factory.mktemp("openai-server") / "data",
                        demo_model=False, tiers=TIERS)
    app = create_app(settings)
    with ServerThread(app, websocket_routes=websocket_routes(app)) as thread:
        owner = make_account(settings, "owner@example.com")
        model_id = register_model(settings, model_files.get(chat_template=LLAMA3_CHAT_TEMPLATE),
                                  owner_id=owner.user_id, name="tiny")
        yield Server(thread.url, settings, owner, model_id)


@dataclass
class Setup:
    """A customer with an ``inference`` API key, their model, and a client for them."""

    url: str
    user_id: str
    key: str
    model_id: str
    client: openai.OpenAI
    native_headers: dict[str, str]

    def native(self, **body: Any) -> dict[str, Any]:
        """The native API's answer to ``body`` (``POST /v1/inference``)."""
        r = httpx.post(self.url + "/v1/inference", json={"model": self.model_id, **body},
                       headers=self.native_headers, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()


def api_key(settings: Settings, user_id: str, scopes: list[str] | None = None) -> str:
    from bitnet_sdk import auth

    _, key = auth.create_api_key(auth.get_user(user_id), "openai", scopes or ["inference"],
                                 settings)
    return key


def client_for(url: str, key: str) -> openai.OpenAI:
    # No retries: a 429 or 5xx must reach the test as the error the client raises.
    return openai.OpenAI(base_url=url + "/openai/v1", api_key=key, max_retries=0, timeout=60)


@pytest.fixture
def oai(server) -> Iterator[Setup]:
    """The model's owner, with a fresh key and client."""
    key = api_key(server.settings, server.owner.user_id)
    with client_for(server.url, key) as client:
        yield Setup(server.url, server.owner.user_id, key, server.model_id, client,
                    server.owner.headers)


@pytest.fixture
def stranger(server) -> Iterator[Setup]:
    """A new account of tier ``thrifty`` (10 tokens a month) that sees a public copy of the model."""
    account = make_account(server.settings, f"{uuid.uuid4().hex[:8]}@example.com",
                           tier="thrifty")
    public = register_model(server.settings, server.settings.models_dir / "tiny.gguf",
                            owner_id=server.owner.user_id, name=f"open-{uuid.uuid4().hex[:6]}",
                            public=True)
    key = api_key(server.settings, account.user_id)
    with client_for(server.url, key) as client:
        yield Setup(server.url, account.user_id, key, public, client, account.headers)


# -- models --------------------------------------------------------------------------------


def test_models_are_the_ready_language_models_the_caller_sees(server, model_files):
    settings, source = server.settings, model_files.get(chat_template=LLAMA3_CHAT_TEMPLATE)
    me, other = (make_account(settings, f"{who}@example.com") for who in ("me", "other"))
    mine = register_model(settings, source, owner_id=me.user_id, name="mine")
    public = register_model(settings, source, owner_id=other.user_id, name="shared", public=True)
    register_model(settings, source, owner_id=other.user_id, name="secret")
    register_model(settings, source, owner_id=me.user_id, name="uploading",
                   status="pending_upload")
    register_model(settings, source, owner_id=me.user_id, name="classifier", kind="dense")

    with client_for(server.url, api_key(settings, me.user_id)) as client:
        listed = client.models.list()
        visible = {m.id for m in listed.data if m.id.startswith("mdl_")}
        names = [m.id for m in listed.data if not m.id.startswith("mdl_")]
        assert mine in visible and public in visible
        assert visible <= _public_ids(settings) | {mine}
        first = next(m for m in listed.data if m.id == mine)
        assert (first.object, first.owned_by) == ("model", me.user_id)
        assert client.models.retrieve(public).id == public
        # Names are listed too (what chat UIs show), each once, and only names that resolve
        # for this caller, to a listed model (another customer's "shared" does not).
        assert "mine" in names and len(names) == len(set(names))
        assert not {"shared", "secret", "uploading", "classifier"} & set(names)
        for name in names:
            assert client.models.retrieve(name).id in visible
        by_name = next(m for m in listed.data if m.id == "mine")
        assert (by_name.object, by_name.owned_by) == ("model", me.user_id)
        for hidden in ("shared", "secret", "uploading", "classifier", server.model_id):
            with pytest.raises(openai.NotFoundError):
                client.models.retrieve(hidden)


def _public_ids(settings: Settings) -> set[str]:
    from bitnet_sdk.store import ModelRecord

    ready = ModelRecord.select().where((ModelRecord.public == True)  # noqa: E712
                                       & (ModelRecord.status == "ready")
                                       & (ModelRecord.kind == "llm"))
    return {r.id for r in ready}


def test_a_name_means_the_callers_own_model_never_another_accounts(server, oai, model_files):
    settings, source = server.settings, model_files.get(chat_template=LLAMA3_CHAT_TEMPLATE)
    other = make_account(settings, "twins@example.com")
    mine = register_model(settings, source, owner_id=oai.user_id, name="twin")
    newer = register_model(settings, source, owner_id=other.user_id, name="twin", public=True)
    register_model(settings, source, owner_id=other.user_id, name="twin-2", public=True)

    assert oai.client.completions.create(model="twin", prompt=PROMPT, max_tokens=2).model == mine
    assert oai.client.completions.create(model=newer, prompt=PROMPT, max_tokens=2).model == newer
    with pytest.raises(openai.NotFoundError):  # another account's public model: by id only
        oai.client.completions.create(model="twin-2", prompt=PROMPT, max_tokens=2)


# -- completions and chat ------------------------------------------------------------------


def test_completion_is_the_native_greedy_run(oai):
    answer = oai.client.completions.create(model="tiny", prompt=PROMPT, max_tokens=12,
                                           temperature=0)
    native = oai.native(prompt=PROMPT, max_tokens=12, temperature=0)
    (choice,) = answer.choices
    assert answer.object == "text_completion" and answer.model == oai.model_id
    assert answer.id.startswith("cmpl-")
    assert choice.text == native["text"] and choice.index == 0
    assert choice.finish_reason == native["finish_reason"]
    assert choice.logprobs is None
    assert answer.usage.prompt_tokens == native["usage"]["prompt_tokens"]
    assert answer.usage.completion_tokens == native["usage"]["completion_tokens"]
    assert answer.usage.total_tokens == native["usage"]["total_tokens"]


def test_completion_defaults_to_16_tokens_and_honours_stop(oai):
    answer = oai.client.completions.create(model="tiny", prompt=PROMPT, temperature=0)
    assert answer.usage.completion_tokens == 16
    full = answer.choices[0].text
    stop = full[3:6]
    assert stop and full.index(stop) >= 1
    stopped = oai.client.completions.create(model="tiny", prompt=PROMPT, temperature=0, stop=stop)
    assert stopped.choices[0].text == full[:full.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"


def test_chat_renders_the_models_template(oai, model_files):
    from bitnet_sdk.model.chat import chat_prompt_ids
    from bitnet_sdk.model.loader import load

    answer = oai.client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=10,
                                                temperature=0)
    native = oai.native(messages=MESSAGES, max_tokens=10, temperature=0)
    (choice,) = answer.choices
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant"
    assert choice.message.content == native["text"]
    model = load(model_files.get(chat_template=LLAMA3_CHAT_TEMPLATE))
    expected_prompt = chat_prompt_ids(model.tokenizer, MESSAGES)
    assert answer.usage.prompt_tokens == len(expected_prompt)


def test_developer_role_and_text_parts_are_system_and_joined_text(oai):
    parts = [{"type": "text", "text": "You answer"}, {"type": "text", "text": "briefly."}]
    asked = [{"role": "developer", "content": parts}, MESSAGES[1]]
    answer = oai.client.chat.completions.create(model="tiny", messages=asked, max_tokens=6,
                                                temperature=0)
    same = [{"role": "system", "content": "You answer\nbriefly."}, MESSAGES[1]]
    native = oai.native(messages=same, max_tokens=6, temperature=0)
    assert answer.choices[0].message.content == native["text"]
    assert answer.usage.prompt_tokens == native["usage"]["prompt_tokens"]


def test_streamed_chat_is_the_greedy_run_token_by_token(oai):
    whole = oai.client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12,
                                               temperature=0, logprobs=True)
    stream = oai.client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12,
                                                temperature=0, stream=True,
                                                stream_options={"include_usage": True})
    chunks = list(stream)
    first, *middle, last_choice, usage_chunk = chunks
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    pieces = [c.choices[0].delta.content for c in middle]
    # One chunk per token that made text visible, in order, as the tokens were sampled.
    visible = [t.token for t in whole.choices[0].logprobs.content if t.token]
    assert pieces == visible and len(pieces) > 1
    assert "".join(pieces) == whole.choices[0].message.content
    assert all(c.choices[0].finish_reason is None and c.usage is None for c in middle)
    assert last_choice.choices[0].finish_reason == whole.choices[0].finish_reason
    assert usage_chunk.choices == [] and usage_chunk.usage == whole.usage
    assert len({c.id for c in chunks}) == 1 and chunks[0].object == "chat.completion.chunk"


def test_a_seed_gives_the_same_sampled_text_streamed_or_not(oai):
    kwargs = {"model": "tiny", "messages": MESSAGES, "max_tokens": 12, "temperature": 1.2,
              "seed": 1234}
    whole = oai.client.chat.completions.create(**kwargs)
    streamed = "".join(c.choices[0].delta.content or ""
                       for c in oai.client.chat.completions.create(**kwargs, stream=True)
                       if c.choices)
    assert streamed == whole.choices[0].message.content
    native = oai.native(messages=MESSAGES, max_tokens=12, temperature=1.2, top_k=0, top_p=1,
                        seed=1234)
    assert native["text"] == whole.choices[0].message.content


def test_streamed_completion_chunks_concatenate_to_the_completion(oai):
    whole = oai.client.completions.create(model="tiny", prompt=PROMPT, max_tokens=10,
                                          temperature=0)
    chunks = list(oai.client.completions.create(model="tiny", prompt=PROMPT, max_tokens=10,
                                                temperature=0, stream=True))
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks][-1] == whole.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_n_choices_use_derived_seeds(oai):
    kwargs = {"model": "tiny", "messages": MESSAGES, "max_tokens": 8, "temperature": 1.5,
              "seed": 99}
    three = oai.client.chat.completions.create(**kwargs, n=3)
    again = oai.client.chat.completions.create(**kwargs, n=3)
    one = oai.client.chat.completions.create(**kwargs)
    texts = [c.message.content for c in three.choices]
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert texts == [c.message.content for c in again.choices]
    assert texts[0] == one.choices[0].message.content
    assert len(set(texts)) > 1  # different seeds per choice, not one text three times
    assert three.usage.prompt_tokens == 3 * one.usage.prompt_tokens
    assert three.usage.completion_tokens == sum(
        oai.native(messages=MESSAGES, max_tokens=8, temperature=1.5, top_k=0, top_p=1,
                   seed=s)["usage"]["completion_tokens"]
        for s in [99, *(_derived(99, i) for i in (1, 2))])


def _derived(seed: int, index: int) -> int:
    from bitnet_sdk.service.inference.openai_compat import derive_seed

    derived = derive_seed(seed, index)
    assert derived is not None
    return derived


def test_prompt_lists_number_choices_prompt_major(oai):
    prompts = [PROMPT, "Hello! How are you"]
    answer = oai.client.completions.create(model="tiny", prompt=prompts, n=2, max_tokens=5,
                                           temperature=0)
    assert [c.index for c in answer.choices] == [0, 1, 2, 3]
    for prompt, index in ((PROMPT, 0), ("Hello! How are you", 2)):
        assert answer.choices[index].text == oai.native(prompt=prompt, max_tokens=5,
                                                        temperature=0)["text"]


# -- logprobs ------------------------------------------------------------------------------


def test_chat_logprobs_and_alternatives(oai):
    answer = oai.client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8,
                                                temperature=0, logprobs=True, top_logprobs=3)
    native = oai.native(messages=MESSAGES, max_tokens=8, temperature=0,
                        return_probabilities=True, top_logprobs=3)
    content = answer.choices[0].logprobs.content
    assert len(content) == answer.usage.completion_tokens == len(native["tokens"])
    assert "".join(t.token for t in content) == answer.choices[0].message.content
    for item, token in zip(content, native["tokens"], strict=True):
        assert item.logprob == pytest.approx(token["logprob"])
        assert item.bytes == list(item.token.encode())
        alternatives = [a.logprob for a in item.top_logprobs]
        assert len(alternatives) == 3 and alternatives == sorted(alternatives, reverse=True)
        assert item.logprob == pytest.approx(alternatives[0])  # greedy takes the likeliest
        assert [a.token for a in item.top_logprobs] == [a["text"] for a in token["top_logprobs"]]


def test_completion_logprobs_with_offsets(oai):
    answer = oai.client.completions.create(model="tiny", prompt=PROMPT, max_tokens=8,
                                           temperature=0, logprobs=2)
    logprobs = answer.choices[0].logprobs
    assert "".join(logprobs.tokens) == answer.choices[0].text
    assert len(logprobs.token_logprobs) == len(logprobs.tokens) == 8
    assert all(lp <= 0 for lp in logprobs.token_logprobs)
    assert all(1 <= len(top) <= 2 for top in logprobs.top_logprobs)
    expected, offset = [], len(PROMPT)
    for token in logprobs.tokens:
        expected.append(offset)
        offset += len(token)
    assert logprobs.text_offset == expected
    plain = oai.client.completions.create(model="tiny", prompt=PROMPT, max_tokens=8,
                                          temperature=0)
    assert plain.choices[0].logprobs is None and plain.choices[0].text == answer.choices[0].text


# -- errors as the client raises them ------------------------------------------------------


def test_an_unknown_model_is_not_found(oai):
    with pytest.raises(openai.NotFoundError) as caught:
        oai.client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert caught.value.code == "model_not_found" and caught.value.param == "model"
    assert caught.value.type == "invalid_request_error"
    assert "no-such-model" in caught.value.message


def test_a_missing_or_invalid_key_is_an_authentication_error(oai):
    for key in ("bn_aaaaaaaaaaaaaaaa_forged-secret", "not-a-key"):
        with client_for(oai.url, key) as client, pytest.raises(openai.AuthenticationError) as caught:
            client.models.list()
        assert caught.value.code == "invalid_api_key"
        assert caught.value.type == "authentication_error"
    r = httpx.get(oai.url + "/openai/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_every_operation_needs_a_valid_credential(server):
    from bitnet_sdk.server.spec import iter_operations, load_spec

    operations = list(iter_operations(load_spec("openai.yaml")))
    assert {op["operationId"] for _, _, op in operations} == {
        "openaiListModels", "openaiRetrieveModel", "openaiCreateCompletion",
        "openaiCreateChatCompletion"}
    with httpx.Client(base_url=server.url + "/openai/v1") as client:
        for path, method, _ in operations:
            for headers in ({}, {"Authorization": "Bearer bn_aaaaaaaaaaaaaaaa_forged-secret"},
                            {"Authorization": "Basic dXNlcjpwYXNz"}):
                r = client.request(method, path.replace("{model}", "tiny"), headers=headers,
                                   json={"model": "tiny", "prompt": "x",
                                         "messages": MESSAGES})
                assert _error(r, 401)["type"] == "authentication_error", (path, headers)


def test_a_key_without_the_inference_scope_is_refused(server, oai):
    reader = api_key(server.settings, oai.user_id, ["models:read"])
    with client_for(oai.url, reader) as client, \
            pytest.raises(openai.PermissionDeniedError) as caught:
        client.completions.create(model="tiny", prompt=PROMPT)
    assert caught.value.type == "permission_error"


def test_the_hourly_budget_gives_rate_limit_errors(server):
    account = make_account(server.settings, "small@example.com", tier="tiny")
    with client_for(server.url, api_key(server.settings, account.user_id)) as client:
        for _ in range(3):
            client.models.list()
        with pytest.raises(openai.RateLimitError) as caught:
            client.models.list()
    assert caught.value.code == "rate_limit_exceeded" and caught.value.type == "requests"
    assert int(caught.value.response.headers["Retry-After"]) >= 1


def test_a_quota_too_small_gives_insufficient_quota(stranger):
    # The choices reserve their worst case (prompt + max_tokens each) before any runs:
    # more than the 10-token month, so nothing runs ...
    with pytest.raises(openai.RateLimitError) as caught:
        stranger.client.chat.completions.create(model=stranger.model_id, messages=MESSAGES,
                                                max_tokens=4, n=2)
    assert caught.value.code == "insufficient_quota" and caught.value.type == "insufficient_quota"
    # ... and a smaller request whose prompt alone does not fit is refused the same way.
    with pytest.raises(openai.RateLimitError):
        stranger.client.completions.create(model=stranger.model_id, prompt=PROMPT, max_tokens=1)
    assert _month_tokens(stranger) == 0


def test_a_stream_whose_choices_do_not_fit_is_refused_before_it_starts(stranger):
    stream = stranger.client.chat.completions.create
    with pytest.raises(openai.RateLimitError) as caught:
        stream(model=stranger.model_id, messages=MESSAGES, max_tokens=4, n=2, stream=True)
    assert caught.value.body["code"] == "insufficient_quota"
    assert _month_tokens(stranger) == 0


def _month_tokens(setup: Setup) -> float:
    limits = httpx.get(setup.url + "/v1/account/limits", headers=setup.native_headers).json()
    return next(q["used"] for q in limits["quotas"] if q["name"] == "inference_tokens")


# -- errors from every source, as OpenAI error objects -------------------------------------


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_schema_failures_are_bad_requests_naming_the_parameter(oai):
    cases = [({"temperature": 5}, "temperature", "invalid_value"),
             ({"frobnicate": True}, "frobnicate", "unknown_parameter"),
             ({"messages": "Hi"}, "messages", "invalid_type"),
             ({"presence_penalty": 0.5}, "presence_penalty", "invalid_value")]
    for extra, param, code in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            oai.client.chat.completions.create(model="tiny", messages=MESSAGES, extra_body=extra)
        assert (caught.value.param, caught.value.code) == (param, code), caught.value.body
        assert caught.value.type == "invalid_request_error"
    r = httpx.post(oai.url + "/openai/v1/chat/completions", json={"model": "tiny"},
                   headers={"Authorization": f"Bearer {oai.key}"})
    assert _error(r, 400)["param"] == "messages"


def test_rules_beyond_the_schema_are_bad_requests(oai):
    with pytest.raises(openai.BadRequestError) as caught:
        oai.client.chat.completions.create(model="tiny", messages=MESSAGES, top_logprobs=2)
    assert caught.value.param == "top_logprobs"
    with pytest.raises(openai.BadRequestError) as caught:
        oai.client.completions.create(model="tiny", prompt=PROMPT * 200, max_tokens=1)
    assert (caught.value.code, caught.value.param) == ("context_length_exceeded", "prompt")
    long = [{"role": "user", "content": PROMPT * 200}]
    with pytest.raises(openai.BadRequestError) as caught:
        oai.client.chat.completions.create(model="tiny", messages=long, max_tokens=1)
    assert (caught.value.code, caught.value.param) == ("context_length_exceeded", "messages")


#: OpenAI request fields clients send (LangChain, Open WebUI ...) that the server accepts
#: and does not act on.
OPTIONAL_FIELDS = {"store": False, "metadata": {"app": "test"}, "service_tier": "auto",
                   "parallel_tool_calls": False, "reasoning_effort": "low", "user": "u-1",
                   "prompt_cache_key": "k", "safety_identifier": "s"}


def test_optional_openai_fields_are_accepted_and_change_nothing(oai):
    plain = oai.client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6,
                                               temperature=0)
    extra = oai.client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6,
                                               temperature=0, **OPTIONAL_FIELDS)
    assert extra.choices[0].message.content == plain.choices[0].message.content
    assert extra.system_fingerprint == plain.system_fingerprint
    assert extra.system_fingerprint.startswith("fp_")
    chunks = list(oai.client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=6, temperature=0, stream=True, **OPTIONAL_FIELDS))
    assert {c.system_fingerprint for c in chunks} == {plain.system_fingerprint}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        plain.choices[0].message.content
    completion = oai.client.completions.create(model="tiny", prompt=PROMPT, max_tokens=2)
    assert completion.system_fingerprint == plain.system_fingerprint


def test_models_that_cannot_run_say_why(server, oai, model_files):
    source = model_files.get(chat_template=LLAMA3_CHAT_TEMPLATE)
    pending = register_model(server.settings, source, owner_id=oai.user_id, name="half",
                             status="pending_upload")
    dense = register_model(server.settings, source, owner_id=oai.user_id, name="dense",
                           kind="dense")
    with pytest.raises(openai.ConflictError) as caught:
        oai.client.completions.create(model=pending, prompt=PROMPT)
    assert (caught.value.code, caught.value.param) == ("model_not_ready", "model")
    with pytest.raises(openai.BadRequestError) as caught:
        oai.client.completions.create(model=dense, prompt=PROMPT)
    assert "dense" in caught.value.message
    with pytest.raises(openai.BadRequestError):  # by name too: the caller's dense model
        oai.client.completions.create(model="dense", prompt=PROMPT)


def test_routing_and_body_errors_on_openai_paths_are_openai_errors(oai):
    auth = {"Authorization": f"Bearer {oai.key}"}
    assert _error(httpx.get(oai.url + "/openai/v1/nowhere", headers=auth), 404)["code"] \
        == "not_found"
    wrong_method = httpx.delete(oai.url + "/openai/v1/chat/completions", headers=auth)
    assert _error(wrong_method, 405)["code"] == "method_not_allowed"
    assert "POST" in wrong_method.headers["Allow"]
    broken = httpx.post(oai.url + "/openai/v1/completions", content=b"{not json",
                        headers={**auth, "Content-Type": "application/json"})
    assert _error(broken, 400)["type"] == "invalid_request_error"
    as_text = httpx.post(oai.url + "/openai/v1/completions", content=b"hello",
                         headers={**auth, "Content-Type": "text/plain"})
    assert _error(as_text, 415)["type"] == "invalid_request_error"
    limited = httpx.get(oai.url + "/openai/v1/models", headers=auth)
    assert limited.status_code == 200 and "ratelimit" in limited.headers


def test_native_paths_keep_problem_details(oai):
    auth = {"Authorization": f"Bearer {oai.key}"}
    for response in (httpx.get(oai.url + "/v1/nowhere", headers=auth),
                     httpx.post(oai.url + "/v1/inference", json={"model": 3}, headers=auth),
                     httpx.get(oai.url + "/v1/models")):
        assert response.headers["content-type"] == "application/problem+json", response.text
        assert response.json()["status"] == response.status_code


# -- usage ---------------------------------------------------------------------------------


def test_usage_is_recorded_for_the_keys_owner(server):
    from datetime import datetime, timedelta, timezone

    from bitnet_sdk.service.accounting import usage

    account = make_account(server.settings, "metered@example.com")
    public = register_model(server.settings, server.settings.models_dir / "tiny.gguf",
                            owner_id=server.owner.user_id, name="metered", public=True)
    with client_for(server.url, api_key(server.settings, account.user_id)) as client:
        answer = client.completions.create(model=public, prompt=PROMPT, max_tokens=6,
                                           temperature=0)
        chat = client.chat.completions.create(model=public, messages=MESSAGES, max_tokens=5,
                                              temperature=0, n=2)
    now = datetime.now(timezone.utc)
    report = dict(usage.usage_report(account.user_id, now - timedelta(hours=1),
                                     now + timedelta(minutes=1), "operation"))
    assert set(report) == {"openaiCreateCompletion", "openaiCreateChatCompletion"}
    completions = report["openaiCreateCompletion"]
    assert completions.requests == 1 and completions.errors == 0
    assert completions.prompt_tokens == answer.usage.prompt_tokens
    assert completions.completion_tokens == answer.usage.completion_tokens
    assert completions.compute_units > 0
    chats = report["openaiCreateChatCompletion"]
    assert chats.requests == 1
    assert chats.prompt_tokens == chat.usage.prompt_tokens
    assert chats.completion_tokens == chat.usage.completion_tokens


def test_n_choices_run_together_on_one_prefill(server, oai):
    admin = make_account(server.settings, f"{uuid.uuid4().hex[:8]}@example.com", admin=True,
                         tier="enterprise")

    def step_tokens() -> float:
        r = httpx.get(server.url + "/v1/metrics", headers=admin.headers, timeout=30)
        assert r.status_code == 200, r.text
        line = next(x for x in r.text.splitlines() if x.startswith("bitnet_batch_tokens_sum "))
        return float(line.split()[1])

    kwargs = {"model": "tiny", "messages": MESSAGES, "max_tokens": 6, "temperature": 1.0,
              "seed": 5}
    before = step_tokens()
    four = oai.client.chat.completions.create(**kwargs, n=4)
    computed = step_tokens() - before
    prompt = four.usage.prompt_tokens // 4  # billed once per choice ...
    decode = four.usage.completion_tokens - 4  # (each first token comes from the prompt's logits)
    # ... and computed once: the choices join the batch as one group, however late each
    # one arrives (each plans, waits for its slot and renders its prompt on its own).
    assert computed == prompt + decode
    streamed: dict[int, str] = {}
    for chunk in oai.client.chat.completions.create(**kwargs, n=4, stream=True):
        for choice in chunk.choices:
            streamed[choice.index] = streamed.get(choice.index, "") + (choice.delta.content or "")
    assert streamed == {c.index: c.message.content for c in four.choices}


# -- other clients -------------------------------------------------------------------------


def test_langchain_chat_openai(oai):
    """LangChain's ``ChatOpenAI`` (it sends fields of its own, such as ``stream_options``)."""
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(base_url=oai.url + "/openai/v1", api_key=oai.key, model="tiny", temperature=0,
                      max_tokens=6, max_retries=0)
    native = oai.native(messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0)
    answer = chat.invoke("Hi")
    assert answer.content == native["text"]
    assert answer.response_metadata["system_fingerprint"].startswith("fp_")
    assert "".join(str(c.content) for c in chat.stream("Hi")) == native["text"]


def test_node_openai_package(oai, tmp_path):
    if shutil.which("node") is None:
        pytest.skip("Node is not installed: cannot run the Node openai package")
    (tmp_path / "node_modules").symlink_to(node_modules())
    script = tmp_path / "openai_node.mjs"
    shutil.copy(Path(__file__).parent / "clients" / "openai_node.mjs", script)
    result = json.loads(run(["node", str(script), oai.url, oai.key, "tiny"], tmp_path))
    native = oai.native(messages=[{"role": "user", "content": "What is the capital of France?"}],
                        max_tokens=6, temperature=0)
    assert oai.model_id in result["ids"] and "tiny" in result["ids"]
    assert result["text"] == result["streamed"] == native["text"]
    assert result["fingerprint"].startswith("fp_")
    assert result["overflow"] == {"status": 400, "code": "context_length_exceeded", "param": "prompt"}
