"""``openapi/openai.yaml`` against the live server: schemathesis over every OpenAI operation.

Two runs. Without models, schema-valid bodies name models that do not exist
(404) and everything else must be refused with 400, never a 500, always as an
OpenAI error object matching the document. With a model registered under the
name the document's examples use (a tiny context window bounds the work of
the largest ``max_tokens`` and ``n``), examples and boundary values really
generate and their answers are checked against the document; the positive-data
check is off there, as schema-valid bodies may still break rules a schema
cannot express (a prompt longer than the context window, ``top_logprobs``
without ``logprobs``, more than 16 choices in all), which answer 400.
"""

from __future__ import annotations

from typing import Any

import pytest

from bitnet_sdk.server.app import OPENAI_BASE_PATH
from bitnet_sdk.server.spec import iter_operations, load_spec, spec_path
from tests.support.fuzz import run_schemathesis
from tests.support.inference import LLAMA3_CHAT_TEMPLATE, ModelFiles, register_model

OPENAI_SPEC = "openai.yaml"
EXAMPLE_MODEL = "bitnet-b1.58-2b"


def _operations() -> set[str]:
    return {op["operationId"] for _, _, op in iter_operations(load_spec(OPENAI_SPEC))}


def _key_headers(live_server: Any, user_id: str) -> dict[str, str]:
    from bitnet_sdk import auth

    _, key = auth.create_api_key(auth.get_user(user_id), "fuzz", ["inference"],
                                 live_server.settings)
    return {"Authorization": f"Bearer {key}"}


def _fuzz(live_server: Any, headers: dict[str, str], **kwargs: Any) -> None:
    result = run_schemathesis(live_server.url + OPENAI_BASE_PATH, _operations(), headers,
                              spec=spec_path(OPENAI_SPEC), **kwargs)
    assert result.returncode == 0, result.stdout[-15000:] + result.stderr[-3000:]


def test_example_model_name_is_the_documents():
    spec = load_spec(OPENAI_SPEC)
    for path in ("/completions", "/chat/completions"):
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["example"]["model"] == EXAMPLE_MODEL


def test_schemathesis_without_models_finds_no_failure(live_server, customer):
    _fuzz(live_server, _key_headers(live_server, customer.user_id))


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> ModelFiles:
    return ModelFiles(tmp_path_factory.mktemp("openai-fuzz-models"))


def test_schemathesis_with_a_model_finds_no_failure(live_server, customer, model_files):
    source = model_files.get(chat_template=LLAMA3_CHAT_TEMPLATE, context_length=64)
    register_model(live_server.settings, source, owner_id=customer.user_id, name=EXAMPLE_MODEL)
    _fuzz(live_server, _key_headers(live_server, customer.user_id),
          exclude_checks=["positive_data_acceptance"])
    from bitnet_sdk.store.models import UsageRecord as R

    generated = (R.select(R.operation).where((R.user == customer.user_id) & (R.tokens_out > 0)
                                             & (R.status_code == 200)).distinct())
    # Both text operations really ran the model (and their answers were checked).
    assert {r.operation for r in generated} == {"openaiCreateCompletion",
                                                 "openaiCreateChatCompletion"}
