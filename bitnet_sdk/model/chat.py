"""Chat messages → prompt: the model's own GGUF chat template, rendered in a sandbox.

A GGUF file may carry a Jinja chat template (``tokenizer.chat_template``), the
same text Hugging Face stores in ``tokenizer_config.json``. It is code written
by whoever made the file, so it is rendered by
:mod:`bitnet_sdk.model.chat_sandbox`: a bounded Jinja sandbox configured as
Hugging Face ``transformers`` and llama.cpp render templates (``trim_blocks``
and ``lstrip_blocks`` on, the ``loopcontrols`` extension, a
``raise_exception`` global and a ``tojson`` filter that keeps non-ASCII text),
in a worker process with a time and memory limit that a caller's ``cancel``
can stop at once.

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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from bitnet_sdk.model.chat_sandbox import (
    ChatTemplateBusy,
    ChatTemplateError,
    ChatTemplateLimitError,
    ChatTemplateRefused,
    RenderLimits,
    default_renderer,
    render_in_process,
)

__all__ = [
    "DEFAULT_TEMPLATE",
    "ChatTemplateBusy",
    "ChatTemplateError",
    "ChatTemplateLimitError",
    "ChatTemplateRefused",
    "chat_prompt_ids",
    "render_chat",
    "render_limits",
    "template_problem",
]

#: ChatML, used when the model file has no template (as llama.cpp does).
DEFAULT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
#: Rendered text allowed beyond four times the messages' own text (role markers, system
#: prompts and tool descriptions a template adds).
OUTPUT_ALLOWANCE = 256 * 1024


class _ChatTokenizer(Protocol):
    bos_id: int | None
    eos_id: int | None

    @property
    def chat_template(self) -> str | None: ...
    @property
    def spec(self) -> Any: ...
    def token_to_piece(self, token_id: int, *, special: bool = True) -> str: ...
    def encode(self, text: str, add_bos: bool = True, *, parse_special: bool = False) -> list[int]: ...


def render_limits(messages: Sequence[Mapping[str, str]]) -> RenderLimits:
    """The limits of one render: the process-wide renderer's, with the output capped at
    :data:`OUTPUT_ALLOWANCE` plus four times the messages' text (a prompt longer
    than that is the template's work, not the customer's)."""
    base = default_renderer().limits
    text = sum(len(m["role"]) + len(m["content"]) for m in messages)
    return replace(base, output_chars=min(base.output_chars, OUTPUT_ALLOWANCE + 4 * text))


def render_chat(
    messages: Sequence[Mapping[str, str]],
    template: str | None = None,
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    cancel: Callable[[], bool] | None = None,
) -> str:
    """The prompt text for ``messages`` under ``template`` (``None``: :data:`DEFAULT_TEMPLATE`).

    Blocks the calling thread (never the interpreter: other threads run) until
    the text is ready. Raises :class:`ChatTemplateLimitError` when rendering
    goes past :func:`render_limits` or ``cancel()`` becomes true, and
    :class:`ChatTemplateError` when the template fails to compile, calls
    ``raise_exception`` (for example on roles it does not support) or breaks a
    sandbox rule.
    """
    plain = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
    context = {"messages": plain, "add_generation_prompt": add_generation_prompt,
               "bos_token": bos_token, "eos_token": eos_token}
    limits = render_limits(plain)
    if template is None:  # our own template: the bounded sandbox in this process is enough
        return render_in_process(DEFAULT_TEMPLATE, context, limits)
    return default_renderer().render(template, context, cancel=cancel, limits=limits)


def _token_text(tokenizer: _ChatTokenizer, token_id: int | None) -> str:
    if token_id is None:
        return ""
    try:
        return tokenizer.token_to_piece(token_id, special=True)
    except IndexError:
        return ""


def chat_prompt_ids(tokenizer: _ChatTokenizer, messages: Sequence[Mapping[str, str]], *,
                    cancel: Callable[[], bool] | None = None) -> list[int]:
    """Token ids of the chat prompt for ``messages`` with ``tokenizer``'s template.

    See the module docstring for the BOS and control-token rules, and
    :func:`render_chat` for ``cancel`` and the errors.
    """
    bos, eos = _token_text(tokenizer, tokenizer.bos_id), _token_text(tokenizer, tokenizer.eos_id)
    text = render_chat(messages, tokenizer.chat_template, bos_token=bos, eos_token=eos, cancel=cancel)
    adds_bos = bool(getattr(tokenizer.spec, "add_bos", False)) and tokenizer.bos_id is not None
    if adds_bos and bos and text.startswith(bos):
        text = text[len(bos):]
    return list(tokenizer.encode(text, add_bos=True, parse_special=True))


#: The conversation a template must render at validation (any chat has a user turn).
PROBE_MESSAGES = ({"role": "user", "content": "Hello!"},)


def template_problem(template: str, *, bos_token: str = "", eos_token: str = "") -> str | None:
    """Why ``template`` cannot serve a chat, or None: it does not compile, fails on a plain
    user message, or goes past its limits. A template refusing the message itself
    (``raise_exception``) is its right and not reported, nor is a server too busy to try."""
    try:
        render_chat(PROBE_MESSAGES, template, bos_token=bos_token, eos_token=eos_token)
    except (ChatTemplateRefused, ChatTemplateBusy):
        return None
    except ChatTemplateError as exc:
        return str(exc)
    return None
