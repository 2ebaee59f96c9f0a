"""Model names never reach across accounts (issue: names squatted on the OpenAI API).

An attacker with an ordinary account publishes a public model under a name the victim uses
(their own model's name, or the demo model's); the victim's requests by that name must still
run the model the victim meant, on both APIs. Another account's public model is reachable by
id only, and a name several operator models share is refused with the candidates, never picked.
Everything goes through a live server: models are uploaded over HTTP, requests are the
victim's, answers name the model that ran.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from bitnet_sdk.config import Settings
from tests.conftest import Account, make_account
from tests.support.inference import ModelFiles, inference_settings

PROBLEM = "application/problem+json"


@dataclass
class Server:
    url: str
    settings: Settings
    demo_id: str
    gguf: bytes


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    from bitnet_sdk.server.app import create_app
    from bitnet_sdk.server.asgi.testing import ServerThread
    from bitnet_sdk.service.registry.demo import ensure_demo_model

    files = ModelFiles(tmp_path_factory.mktemp("resolution-models"))
    settings = inference_settings(tmp_path_factory.mktemp("resolution-server"))
    with ServerThread(create_app(settings)) as thread:
        demo_id = ensure_demo_model(settings)  # what `bitnet serve` does on a fresh store
        assert demo_id is not None
        yield Server(thread.url, settings, demo_id, files.get().read_bytes())


def _account(server: Server, who: str, *, admin: bool = False) -> Account:
    return make_account(server.settings, f"{who}-{uuid.uuid4().hex[:8]}@example.com",
                        admin=admin, tier="enterprise" if admin else "developer")


def _upload(server: Server, owner: Account, name: str, *, public: bool = False) -> str:
    """A model created over HTTP (multipart POST /v1/models) by ``owner``; its id."""
    r = httpx.post(server.url + "/v1/models", headers=owner.headers,
                   data={"name": name, "public": "true" if public else "false"},
                   files={"file": ("m.gguf", server.gguf, "application/octet-stream")},
                   timeout=60)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _openai(server: Server, who: Account, model: str) -> httpx.Response:
    return httpx.post(server.url + "/openai/v1/completions", headers=who.headers, timeout=60,
                      json={"model": model, "prompt": "Hello", "max_tokens": 1})


def _native(server: Server, who: Account, model: str) -> httpx.Response:
    return httpx.post(server.url + "/v1/inference", headers=who.headers, timeout=60,
                      json={"model": model, "prompt": "Hello", "max_tokens": 1})


def _ran(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["model"]


def test_a_newer_public_model_of_the_same_name_does_not_serve_the_victim(server):
    victim, attacker = _account(server, "victim"), _account(server, "attacker")
    mine = _upload(server, victim, "assistant")
    squatter = _upload(server, attacker, "assistant", public=True)  # newer, public, same name

    assert _ran(_openai(server, victim, "assistant")) == mine
    assert _ran(_native(server, victim, "assistant")) == mine
    r = httpx.get(server.url + "/openai/v1/models/assistant", headers=victim.headers)
    assert r.status_code == 200 and r.json()["id"] == mine
    # The attacker's own name still means the attacker's model, for the attacker.
    assert _ran(_openai(server, attacker, "assistant")) == squatter


def test_the_demo_models_name_means_the_operators_model(server):
    victim, attacker = _account(server, "victim"), _account(server, "attacker")
    _upload(server, attacker, "bitnet-demo-tiny", public=True)

    assert _ran(_openai(server, victim, "bitnet-demo-tiny")) == server.demo_id
    assert _ran(_native(server, victim, "bitnet-demo-tiny")) == server.demo_id


def test_another_accounts_public_model_is_used_by_id_only(server):
    victim, attacker = _account(server, "victim"), _account(server, "attacker")
    theirs = _upload(server, attacker, f"only-theirs-{uuid.uuid4().hex[:6]}", public=True)
    name = httpx.get(server.url + f"/v1/models/{theirs}", headers=victim.headers).json()["name"]

    r = _openai(server, victim, name)
    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert (error["code"], error["param"]) == ("model_not_found", "model")
    assert theirs in error["message"]  # the way to it, by id
    r = _native(server, victim, name)
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert theirs in r.json()["detail"]
    assert httpx.get(server.url + f"/openai/v1/models/{name}",
                     headers=victim.headers).status_code == 404

    assert _ran(_openai(server, victim, theirs)) == theirs
    assert _ran(_native(server, victim, theirs)) == theirs


def test_a_name_several_operator_models_share_is_refused_with_the_candidates(server):
    first, second = _account(server, "op1", admin=True), _account(server, "op2", admin=True)
    name = f"house-{uuid.uuid4().hex[:6]}"
    ids = {_upload(server, first, name, public=True), _upload(server, second, name, public=True)}
    customer = _account(server, "customer")

    r = _native(server, customer, name)
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM, r.text
    body = r.json()
    assert body["type"].endswith("model-ambiguous") and set(body["candidates"]) == ids
    r = _openai(server, customer, name)
    assert r.status_code == 409
    error = r.json()["error"]
    assert error["code"] == "model_ambiguous" and all(i in error["message"] for i in ids)
    assert httpx.get(server.url + f"/openai/v1/models/{name}",
                     headers=customer.headers).status_code == 409
    # One operator's own name is unambiguous for that operator.
    mine = next(i for i in ids if httpx.get(server.url + f"/v1/models/{i}", headers=first.headers
                                            ).json()["owner_id"] == first.user_id)
    assert _ran(_native(server, first, name)) == mine


def test_the_models_list_follows_the_resolution_order(server):
    victim, attacker = _account(server, "victim"), _account(server, "attacker")
    mine = _upload(server, victim, "listed")
    theirs = _upload(server, attacker, "listed", public=True)
    r = httpx.get(server.url + "/openai/v1/models", headers=victim.headers)
    assert r.status_code == 200
    listed = [m["id"] for m in r.json()["data"]]
    order = [i for i in listed if i.startswith("mdl_")]  # by id; names are listed before ids
    assert order.index(mine) < order.index(server.demo_id) < order.index(theirs)
    assert order[0] == mine
    assert listed[0] == "listed"  # the name is listed, and it means the victim's own model
    named = httpx.get(server.url + "/openai/v1/models/listed", headers=victim.headers)
    assert named.status_code == 200 and named.json()["id"] == mine
