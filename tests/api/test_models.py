"""Model records over HTTP on a live server: CRUD, visibility, pagination, filters, conflicts."""

from __future__ import annotations

import httpx
import pytest

from bitnet_sdk.service.registry.demo import DEMO_MODEL_NAME, ensure_demo_model
from bitnet_sdk.store import Job
from tests.conftest import Account, make_account

PROBLEM = "application/problem+json"


@pytest.fixture
def api(live_server) -> str:
    return live_server.url + "/v1"


@pytest.fixture
def other(live_server) -> Account:
    return make_account(live_server.settings, "other@example.com")


def _create(api: str, who: Account, **fields: object) -> dict:
    r = httpx.post(api + "/models", json={"name": "m", **fields}, headers=who.headers)
    assert r.status_code == 201, r.text
    return r.json()


def _problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["title"]
    return body


def test_record_round_trip(api: str, customer: Account) -> None:
    r = httpx.post(api + "/models", headers=customer.headers,
                   json={"name": "bitnet-2b", "description": "d", "tags": ["a", "b"]})
    assert r.status_code == 201, r.text
    model = r.json()
    assert r.headers["location"] == f"/v1/models/{model['id']}" == model["links"]["self"]
    assert model["status"] == "pending_upload" and model["owner_id"] == customer.user_id
    assert (model["size_bytes"], model["sha256"], model["public"]) == (None, None, False)
    assert "kind" not in model and "qtype" not in model  # no file validated yet
    assert httpx.get(api + model["links"]["self"][3:], headers=customer.headers).json() == model

    r = httpx.put(api + f"/models/{model['id']}", headers=customer.headers,
                  json={"name": "bitnet-2b-v2", "description": None, "public": True})
    assert r.status_code == 200, r.text
    updated = r.json()
    assert (updated["name"], updated["description"], updated["public"]) == ("bitnet-2b-v2", "", True)
    assert updated["tags"] == ["a", "b"] and updated["updated_at"] >= model["updated_at"]

    listed = httpx.get(api + "/models", headers=customer.headers).json()
    assert [m["id"] for m in listed["data"]] == [model["id"]] and listed["next_cursor"] is None

    assert httpx.delete(api + f"/models/{model['id']}", headers=customer.headers).status_code == 204
    _problem(httpx.get(api + f"/models/{model['id']}", headers=customer.headers), 404)


def test_create_refusals(api: str, customer: Account) -> None:
    _create(api, customer, name="taken")
    _problem(httpx.post(api + "/models", json={"name": "taken"}, headers=customer.headers), 409)
    _problem(httpx.post(api + "/models", content=b"name=x", headers={
        **customer.headers, "Content-Type": "text/plain"}), 415)
    _problem(httpx.post(api + "/models", json={"name": "bad name!"}, headers=customer.headers), 400)
    _problem(httpx.post(api + "/models", json={"name": "x", "owner": "me"},
                        headers=customer.headers), 400)
    _problem(httpx.post(api + "/models", json={"name": "x"}), 401)


def test_update_refusals(api: str, customer: Account) -> None:
    first = _create(api, customer, name="first")
    second = _create(api, customer, name="second")
    url = api + f"/models/{second['id']}"
    _problem(httpx.put(url, json={"name": "first"}, headers=customer.headers), 409)
    _problem(httpx.put(url, json={}, headers=customer.headers), 400)
    _problem(httpx.put(url, json={"status": "ready"}, headers=customer.headers), 400)
    assert httpx.get(api + f"/models/{first['id']}", headers=customer.headers).json()["name"] == "first"


def test_bad_and_unknown_ids(api: str, customer: Account) -> None:
    for path in ("", "/metadata", "/validation", "/file"):
        _problem(httpx.get(api + "/models/not-an-id" + path, headers=customer.headers), 400)
        _problem(httpx.get(api + "/models/mdl_0123456789abcdef" + path, headers=customer.headers), 404)
    _problem(httpx.delete(api + "/models/mdl_0123456789abcdef", headers=customer.headers), 404)


def test_visibility_between_users(api: str, customer: Account, other: Account, admin: Account) -> None:
    private = _create(api, customer, name="private")
    shared = _create(api, customer, name="shared", public=True)
    theirs = _create(api, other, name="theirs")

    def ids(who: Account) -> set[str]:
        return {m["id"] for m in httpx.get(api + "/models", headers=who.headers).json()["data"]}

    assert ids(customer) == {private["id"], shared["id"]}
    assert ids(other) == {shared["id"], theirs["id"]}
    assert ids(admin) == {private["id"], shared["id"], theirs["id"]}
    # Another's private model does not exist for you; a public one is read-only.
    for method in ("GET", "DELETE"):
        _problem(httpx.request(method, api + f"/models/{private['id']}", headers=other.headers), 404)
    _problem(httpx.put(api + f"/models/{private['id']}", json={"public": True},
                       headers=other.headers), 404)
    assert httpx.get(api + f"/models/{shared['id']}", headers=other.headers).status_code == 200
    _problem(httpx.put(api + f"/models/{shared['id']}", json={"name": "mine"},
                       headers=other.headers), 403)
    _problem(httpx.delete(api + f"/models/{shared['id']}", headers=other.headers), 403)
    # The owner's own name space: the other user may reuse the name.
    _create(api, other, name="private")
    # An administrator may change anyone's model.
    r = httpx.put(api + f"/models/{private['id']}", json={"tags": ["ok"]}, headers=admin.headers)
    assert r.status_code == 200 and r.json()["tags"] == ["ok"]


def test_pagination_walks_every_page(api: str, customer: Account) -> None:
    created = [_create(api, customer, name=f"m{i}")["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(api + "/models", params=params, headers=customer.headers).json()
        assert len(page["data"]) <= 3
        seen += [m["id"] for m in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(created))  # newest first, each once
    body = _problem(httpx.get(api + "/models", params={"cursor": "bm90LWEtY3Vyc29y"},
                              headers=customer.headers), 400)
    assert body["errors"][0]["field"] == "cursor"
    _problem(httpx.get(api + "/models", params={"limit": 101}, headers=customer.headers), 400)
    _problem(httpx.get(api + "/models", params={"colour": "red"}, headers=customer.headers), 400)


def test_filters(api: str, customer: Account) -> None:
    for name in ("Alpha_1", "alpha-2", "AlphaX"):
        _create(api, customer, name=name)

    def names(**params: str) -> list[str]:
        r = httpx.get(api + "/models", params=params, headers=customer.headers)
        assert r.status_code == 200, r.text
        return sorted(m["name"] for m in r.json()["data"])

    assert names(name_prefix="Alpha") == ["AlphaX", "Alpha_1"]
    assert names(name_prefix="Alpha_") == ["Alpha_1"]
    assert names(status="pending_upload") == ["AlphaX", "Alpha_1", "alpha-2"]
    assert names(status="ready") == [] and names(kind="dense") == [] and names(qtype="tq2_0") == []


def test_records_without_a_file_have_no_metadata(api: str, customer: Account) -> None:
    model = _create(api, customer)
    for path in ("metadata", "validation", "file"):
        _problem(httpx.get(api + f"/models/{model['id']}/{path}", headers=customer.headers), 409)


def test_delete_refused_while_a_job_uses_the_model(api: str, customer: Account) -> None:
    model = _create(api, customer)
    job = Job.create(owner=customer.user_id, kind="quantize", status="running",
                     params={"source_model_id": model["id"], "qtype": "tq2_0"})
    body = _problem(httpx.delete(api + f"/models/{model['id']}", headers=customer.headers), 409)
    assert job.id in body["detail"]
    assert httpx.get(api + f"/models/{model['id']}", headers=customer.headers).status_code == 200
    Job.update(status="failed").where(Job.id == job.id).execute()
    assert httpx.delete(api + f"/models/{model['id']}", headers=customer.headers).status_code == 204


def test_demo_model_is_public_and_read_only(live_server, api: str, customer: Account,
                                            admin: Account) -> None:
    demo_id = ensure_demo_model(live_server.settings)
    r = httpx.get(api + "/models", headers=customer.headers)
    demo = next(m for m in r.json()["data"] if m["id"] == demo_id)
    assert (demo["name"], demo["owner_id"], demo["public"], demo["status"]) == (
        DEMO_MODEL_NAME, None, True, "ready")
    assert (demo["kind"], demo["format"], demo["qtype"]) == ("llm", "gguf", "tq2_0")
    meta = httpx.get(api + f"/models/{demo_id}/metadata", headers=customer.headers).json()
    assert (meta["layers"], meta["embedding_length"], meta["heads"]) == (2, 256, 4)
    _problem(httpx.put(api + f"/models/{demo_id}", json={"public": False},
                       headers=customer.headers), 403)
    r = httpx.put(api + f"/models/{demo_id}", json={"description": "try me"}, headers=admin.headers)
    assert r.status_code == 200, r.text
