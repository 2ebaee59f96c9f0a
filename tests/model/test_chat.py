"""Chat prompts: the model's template rendered in a sandbox, ChatML by default, tokenized
as llama.cpp does (one BOS, control-token texts as their ids)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitnet_sdk.model.chat import ChatTemplateError, chat_prompt_ids, render_chat
from bitnet_sdk.model.tokenizer import Tokenizer
from bitnet_sdk.testing.synthetic import LLAMA3_CHAT_TEMPLATE, build_model

MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": " What is BitNet? "},
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    path = build_model(tmp_path_factory.mktemp("chat") / "m.gguf", n_layers=1,
                       chat_template=LLAMA3_CHAT_TEMPLATE)
    return Tokenizer.from_gguf(path)


@pytest.fixture(scope="module")
def plain_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    path: Path = build_model(tmp_path_factory.mktemp("plain") / "m.gguf", n_layers=1)
    return Tokenizer.from_gguf(path)


def test_llama3_template_renders_roles_trimmed_content_and_generation_prompt() -> None:
    text = render_chat(MESSAGES, LLAMA3_CHAT_TEMPLATE, bos_token="<s>")
    assert text == (
        "<s><|start_header_id|>system<|end_header_id|>\n\nAnswer briefly.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is BitNet?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_default_template_is_chatml() -> None:
    text = render_chat([{"role": "user", "content": "Hi"}], None)
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    no_prompt = render_chat([{"role": "user", "content": "Hi"}], None, add_generation_prompt=False)
    assert no_prompt == "<|im_start|>user\nHi<|im_end|>\n"


def test_templates_behave_like_transformers_ones() -> None:
    """trim_blocks/lstrip_blocks, loop controls, tojson keeping non-ASCII, raise_exception."""
    template = (
        "{% for m in messages %}\n"
        "    {% if m['role'] == 'system' %}{% continue %}{% endif %}\n"
        "{{ m | tojson }}\n"
        "{% endfor %}"
    )
    text = render_chat([{"role": "system", "content": "x"}, {"role": "user", "content": "café"}],
                       template)
    assert text == '{"role": "user", "content": "café"}\n'
    refusing = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}"
    with pytest.raises(ChatTemplateError, match="user first"):
        render_chat(MESSAGES, refusing)


@pytest.mark.parametrize("template", [
    "{{ messages.__class__.__mro__ }}",
    "{{ ''.__class__.__subclasses__() }}",
    "{% set _ = messages.append({'role': 'x', 'content': 'y'}) %}",
    "{{ cycler.__init__.__globals__ }}",
])
def test_sandbox_refuses_internals_and_mutation(template: str) -> None:
    with pytest.raises(ChatTemplateError):
        render_chat(MESSAGES, template)


def test_broken_templates_are_chat_template_errors() -> None:
    with pytest.raises(ChatTemplateError, match="does not compile"):
        render_chat(MESSAGES, "{% for m in messages %}")
    with pytest.raises(ChatTemplateError):
        render_chat(MESSAGES, "{{ no_such_function() }}")


def test_prompt_ids_have_one_bos_and_control_tokens_as_ids(tokenizer: Tokenizer) -> None:
    ids = chat_prompt_ids(tokenizer, MESSAGES)
    bos = tokenizer.bos_id
    eot = tokenizer.token_to_id("<|eot_id|>")
    header = tokenizer.token_to_id("<|start_header_id|>")
    assert ids[0] == bos and ids.count(bos) == 1
    assert ids.count(eot) == 2 and ids.count(header) == 3
    text = tokenizer.decode(ids, special=True)
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert "What is BitNet?<|eot_id|>" in text


def test_without_a_template_the_prompt_is_chatml_text(plain_tokenizer: Tokenizer) -> None:
    ids = chat_prompt_ids(plain_tokenizer, [{"role": "user", "content": "Hello"}])
    assert ids[0] == plain_tokenizer.bos_id
    assert plain_tokenizer.decode(ids) == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
