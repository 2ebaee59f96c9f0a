"""A failure after an OpenAI stream started is the stream's last event.

Once a streamed completion has answered 200 and sent chunks, a failure can no longer be an
HTTP error: OpenAI's API then sends an error object as the stream's last event (no
``[DONE]``), and its clients raise it after the chunks they had. Here the fault is real: the
server's own request timeout stops a generation of a live server mid-stream (no mock).
Its own server: the module-wide one of ``test_openai.py`` keeps the default timeout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from bitnet_sdk.config import Settings
from tests.api.test_openai import MESSAGES, PROMPT, Server, api_key, client_for
from tests.conftest import make_account
from tests.support.inference import ModelFiles, register_model

#: The request timeout of the server below: long enough for a stream's first tokens, far too
#: short for the whole generation.
SHORT_TIMEOUT_S = 4.0


@pytest.fixture
def slow_server(tmp_path) -> Iterator[Server]:
    """A server with a short request timeout and a model slow enough to outlast it."""
    from bitnet_sdk.server.app import create_app
    from bitnet_sdk.server.asgi.testing import ServerThread

    settings = Settings(data_dir=tmp_path / "data", demo_model=False, backend="numpy",
                        request_timeout_s=SHORT_TIMEOUT_S)
    with ServerThread(create_app(settings)) as thread:
        owner = make_account(settings, "slow@example.com")
        slow = ModelFiles(tmp_path / "models").endless(d_model=512, n_layers=8, d_ff=1024)
        model_id = register_model(settings, slow, owner_id=owner.user_id, name="slow")
        # Loaded once beforehand: the stream's first tokens come well within the timeout.
        warm = httpx.post(thread.url + "/v1/inference", headers=owner.headers, timeout=120,
                          json={"model": model_id, "prompt": PROMPT, "max_tokens": 1})
        assert warm.status_code == 200, warm.text
        yield Server(thread.url, settings, owner, model_id)


def test_a_failure_after_the_stream_started_is_its_last_event(slow_server):
    """The server stops a generation mid-stream (its request timeout): the stream, already
    answered 200, ends with the OpenAI error object as its last event, no ``[DONE]`` — the
    official client raises it after the chunks it had."""
    key = api_key(slow_server.settings, slow_server.owner.user_id)
    ask = {"model": "slow", "messages": MESSAGES, "max_tokens": 4000, "stream": True}
    with client_for(slow_server.url, key) as client:
        received = []
        with pytest.raises(openai.APIError) as caught:
            for chunk in client.chat.completions.create(**ask):
                received.append(chunk)
    assert received and received[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].finish_reason is None for c in received)
    assert f"within {SHORT_TIMEOUT_S:g} s" in caught.value.message
    with httpx.stream("POST", slow_server.url + "/openai/v1/chat/completions", json=ask,
                      headers={"Authorization": f"Bearer {key}"}, timeout=120) as r:
        assert r.status_code == 200
        events = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    *chunks, last = events
    assert len(chunks) > 1 and "[DONE]" not in events
    assert all("error" not in json.loads(c) for c in chunks)
    error = json.loads(last)
    assert set(error) == {"error"} and set(error["error"]) == {"message", "type", "param", "code"}
    assert error["error"]["type"] == "server_error", error
