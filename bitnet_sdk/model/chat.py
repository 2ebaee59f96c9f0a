"""Chat messages → prompt: the model's own GGUF chat template, rendered in a sandbox.

A GGUF file may carry a Jinja chat template (``tokenizer.chat_template``), the
same text Hugging Face stores in ``tokenizer_config.json``. It is code written
by whoever made the file, so it is rendered with Jinja's
``ImmutableSandboxedEnvironment`` (no attribute access to internals, no
mutation of the inputs, bounded ``range``), configured as Hugging Face
``transformers`` and llama.cpp render templates: ``trim_blocks`` and
``lstrip_blocks`` on, the ``loopcontrols`` extension, a ``raise_exception``
global and a ``tojson`` filter that keeps non-ASCII text.

The template sees ``messages`` (``[{"role", "content"}]``),
``add_generation_prompt`` (true: the text ends where the assistant's answer
starts), ``bos_token`` and ``eos_token`` (the vocabulary's texts of those
tokens).

Files without a template get :data:`DEFAULT_TEMPLATE`, ChatML, which is
llama.cpp's fallback too::

    <|im_start|>system
    You answer in one sentence.<|im_end|>
    <|im_start|>user
    Hi<|im_end|>
    <|im_start|>assistant

Tokenization (:func:`chat_prompt_ids`) follows llama.cpp: when the tokenizer
adds BOS itself, a BOS text the template put at the start is removed first
(else the prompt would begin with two), and control-token texts in the
rendered prompt (``<|eot_id|>`` …) become their ids. As in llama.cpp, that
also applies to such texts inside message contents.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["DEFAULT_TEMPLATE", "ChatTemplateError", "chat_prompt_ids", "render_chat"]

#: ChatML, used when the model file has no template (as llama.cpp does).
DEFAULT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ChatTemplateError(ValueError):
    """The template could not be compiled or rendered for these messages."""


class _ChatTokenizer(Protocol):
    bos_id: int | None
    eos_id: int | None

    @property
    def chat_template(self) -> str | None: ...
    @property
    def spec(self) -> Any: ...
    def token_to_piece(self, token_id: int, *, special: bool = True) -> str: ...
    def encode(self, text: str, add_bos: bool = True, *, parse_special: bool = False) -> list[int]: ...


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"the chat template refused the messages: {message}")


def _tojson(value: Any, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False, ensure_ascii: bool = False) -> str:
    return json.dumps(value, indent=indent, separators=separators, sort_keys=sort_keys,
                      ensure_ascii=ensure_ascii)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=32)
def _compile(source: str) -> jinja2.Template:
    """Compile once per distinct template text (models of one family share it)."""
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols],
        undefined=jinja2.Undefined, autoescape=False,
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateError as exc:
        raise ChatTemplateError(f"the model's chat template does not compile: {exc}") from exc


def render_chat(
    messages: Sequence[Mapping[str, str]],
    template: str | None = None,
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    """The prompt text for ``messages`` under ``template`` (``None``: :data:`DEFAULT_TEMPLATE`).

    Raises :class:`ChatTemplateError` when the template fails to compile, calls
    ``raise_exception`` (for example on roles it does not support) or breaks a
    sandbox rule.
    """
    compiled = _compile(template if template is not None else DEFAULT_TEMPLATE)
    plain = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
    try:
        return compiled.render(
            messages=plain, add_generation_prompt=add_generation_prompt,
            bos_token=bos_token, eos_token=eos_token,
        )
    except ChatTemplateError:
        raise
    except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError) as exc:
        raise ChatTemplateError(f"the model's chat template failed: {exc}") from exc


def _token_text(tokenizer: _ChatTokenizer, token_id: int | None) -> str:
    if token_id is None:
        return ""
    try:
        return tokenizer.token_to_piece(token_id, special=True)
    except IndexError:
        return ""


def chat_prompt_ids(tokenizer: _ChatTokenizer, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """Token ids of the chat prompt for ``messages`` with ``tokenizer``'s template.

    See the module docstring for the BOS and control-token rules.
    """
    bos, eos = _token_text(tokenizer, tokenizer.bos_id), _token_text(tokenizer, tokenizer.eos_id)
    text = render_chat(messages, tokenizer.chat_template, bos_token=bos, eos_token=eos)
    adds_bos = bool(getattr(tokenizer.spec, "add_bos", False)) and tokenizer.bos_id is not None
    if adds_bos and bos and text.startswith(bos):
        text = text[len(bos):]
    return list(tokenizer.encode(text, add_bos=True, parse_special=True))
