"""Chat templates are code from whoever uploaded the file: rendering one is bounded in time,
memory and output, never stalls other requests, and stops when the customer hangs up.

Each bomb hides behind a message text, so the file passes validation (which renders the
template once for a plain message) and goes off at inference, as an attacker would arrange.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from bitnet_sdk.model.chat_sandbox import RenderLimits, default_renderer
from bitnet_sdk.testing.synthetic import build_model
from tests.conftest import Account
from tests.security.conftest import infer, problem, problem_codes, upload
from tests.support.inference import cache_stats, wait_until

#: A normal chat template (ChatML) with a bomb that goes off when a message says "boom".
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
          "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\\n' }}{% endif %}")
#: One big-integer power: over 3 s holding the interpreter lock in an unbounded sandbox.
POWER = "{% if messages[0].content == 'boom' %}{{ (7 ** (9 ** 7)) % 7 }}{% endif %}" + CHATML
#: Nested loops over the message text: len(text)² iterations (30 000² takes about a minute).
LOOPS = ("{% set s = messages[0].content %}{% if s[:4] == 'loop' %}{% for a in s %}{% for b in s %}"
         "{% endfor %}{% endfor %}{% endif %}") + CHATML
#: A string doubled 26 times: 64 MiB, then 128 MiB while it is copied.
DOUBLING = ("{% if messages[0].content == 'boom' %}{% set ns = namespace(s='x') %}"
            "{% for i in range(26) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
            "{{ ns.s | length }}{% endif %}") + CHATML
#: The message text a thousand times over.
ECHO = "{% if messages[0].content[:4] == 'echo' %}{% for i in range(1000) %}{{ messages[0].content }}{% endfor %}{% endif %}" + CHATML

LOOP_TEXT = "loop" + "x" * 30_000


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("templates")


def _model(live_server: Any, who: Account, folder: Path, template: str, name: str) -> str:
    path = build_model(folder / f"{name}.gguf", context_length=4096, chat_template=template)
    r = upload(live_server, who, path.read_bytes(), name)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _chat(live_server: Any, who: Account, model: str, text: str, **kw: Any) -> httpx.Response:
    return infer(live_server, who, model=model, max_tokens=2, temperature=0,
                 messages=[{"role": "user", "content": text}], **kw)


def test_power_bomb_is_refused_before_it_computes(live_server: Any, attacker: Account,
                                                  folder: Path) -> None:
    model = _model(live_server, attacker, folder, POWER, "power")
    body = problem(_chat(live_server, attacker, model, "boom"), 422)
    assert "power too large" in body["detail"]
    assert _chat(live_server, attacker, model, "hello").status_code == 200  # the model still serves


@pytest.mark.parametrize("settings", [{"request_timeout_s": 10.0}], indirect=True)
def test_runaway_loops_stop_at_the_time_limit_and_others_are_served(
        live_server: Any, attacker: Account, customer: Account, folder: Path) -> None:
    model = _model(live_server, attacker, folder, LOOPS, "loops")
    answers: list[httpx.Response] = []
    bomb = threading.Thread(target=lambda: answers.append(_chat(live_server, attacker, model, LOOP_TEXT)))
    bomb.start()
    wait_until(lambda: default_renderer().stats()["busy"] == 1, what="the bomb is rendering")
    health = httpx.get(live_server.url + "/v1/health", timeout=30)
    assert health.status_code == 200
    bomb.join(60)
    body = problem(answers[0], 422)  # not 504: the render was stopped, not the request
    assert "past its limits" in body["detail"]
    wait_until(lambda: cache_stats(live_server)["running"] == 0, what="nothing left running")
    assert default_renderer().stats()["busy"] == 0


def test_hanging_up_stops_the_render(live_server: Any, attacker: Account, folder: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(default_renderer(), "limits", RenderLimits(timeout_s=300))
    model = _model(live_server, attacker, folder, LOOPS, "hangup")
    assert _chat(live_server, attacker, model, "hello").status_code == 200  # loaded
    hung_up: list[type] = []

    def send_and_hang_up() -> None:  # no answer within 3 s: the client gives up and closes
        with pytest.raises(httpx.ReadTimeout) as caught:
            _chat(live_server, attacker, model, LOOP_TEXT, timeout=httpx.Timeout(60, read=3))
        hung_up.append(caught.type)

    sender = threading.Thread(target=send_and_hang_up)
    sender.start()
    wait_until(lambda: default_renderer().stats()["busy"] == 1, what="the bomb is rendering")
    sender.join(30)
    assert hung_up == [httpx.ReadTimeout]
    wait_until(lambda: default_renderer().stats()["busy"] == 0, what="the render was stopped")
    wait_until(lambda: cache_stats(live_server)["running"] == 0, what="the request was stopped")


def test_memory_bomb_ends_in_the_worker(live_server: Any, attacker: Account, folder: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(default_renderer(), "limits", RenderLimits(memory_bytes=32 * 1024**2))
    model = _model(live_server, attacker, folder, DOUBLING, "doubling")
    body = problem(_chat(live_server, attacker, model, "boom"), 422)
    assert "memory" in body["detail"] or "past its limits" in body["detail"]
    assert _chat(live_server, attacker, model, "hello").status_code == 200


def test_output_is_capped(live_server: Any, attacker: Account, folder: Path) -> None:
    model = _model(live_server, attacker, folder, ECHO, "echo")
    body = problem(_chat(live_server, attacker, model, "echo" + "y" * 10_000), 422)
    assert "characters" in body["detail"]  # refused for its size, before tokenizing 10 MB


def test_a_template_that_cannot_serve_any_chat_is_refused_at_upload(
        live_server: Any, attacker: Account, folder: Path) -> None:
    always = build_model(folder / "always.gguf", chat_template="{{ (7 ** (9 ** 7)) % 7 }}")
    broken = build_model(folder / "broken.gguf", chat_template="{% for m in messages %}")
    for path in (always, broken):
        assert problem_codes(upload(live_server, attacker, path.read_bytes(), path.stem)) == [
            "bad_chat_template"]
