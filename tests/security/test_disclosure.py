"""What the live server tells callers who should not learn it.

* The webhook URL guard must not be a DNS oracle: a host that resolves to a private
  address, one that resolves to loopback and one that does not resolve at all get the
  same refusal, which names no address.
* ``/version`` and ``/health`` are public: no interpreter version, no free disk space, no
  error text; administrators get those from ``/status``.
* Another user's public model does not reveal its owner's user id (native or OpenAI API).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import httpx
import pytest

from bitnet_sdk.config import Settings
from bitnet_sdk.testing.synthetic import build_model
from tests.conftest import Account, make_account
from tests.support.jobs import register_source


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The guard at full strength (the suite's default allows private webhook targets).
    return Settings(data_dir=tmp_path / "data", demo_model=False, webhook_allow_private=False,
                    workers=0)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("m") / "tiny.gguf", n_layers=1)


def test_webhook_refusals_do_not_say_what_a_host_resolves_to(
        live_server: Any, customer: Account, model_file: Path) -> None:
    model = register_source(live_server.settings, model_file, customer.user_id, "tiny")
    details = set()
    for url in ("http://localhost/hook", "http://127.0.0.1.nip.invalid/hook",
                "http://no-such-host.invalid/hook", "http://[::1]/hook", "http://10.0.0.7/hook"):
        r = httpx.post(live_server.url + "/v1/inference/batch", headers=customer.headers,
                       json={"requests": [{"model": model, "prompt": "hi"}],
                             "webhook_url": url}, timeout=60)
        assert r.status_code == 422, r.text
        problem = r.json()
        for leak in ("127.0.0.1", "::1", "10.0.0.7", "resolves to", "does not resolve",
                     "localhost", "no-such-host"):
            assert leak not in problem["detail"], (url, problem)
        assert problem["errors"][0]["field"] == "webhook_url"
        details.add(problem["detail"])
    assert len(details) == 1, details  # one answer whatever the DNS says


def test_public_health_and_version_disclose_no_platform_details(live_server: Any,
                                                                admin: Account) -> None:
    version = httpx.get(live_server.url + "/v1/version")
    assert version.status_code == 200
    assert "python" not in version.json()
    assert platform.python_version() not in version.text
    health = httpx.get(live_server.url + "/v1/health")
    assert health.status_code == 200
    assert all(check["detail"] is None for check in health.json()["checks"].values())
    assert "GiB" not in health.text and str(live_server.settings.data_dir) not in health.text
    # Administrators still see everything.
    status = httpx.get(live_server.url + "/v1/status", headers=admin.headers)
    assert status.status_code == 200, status.text
    assert status.json()["python"] == platform.python_version()
    assert "free" in status.json()["checks"]["data_dir"]["detail"]


def test_other_users_public_models_do_not_reveal_their_owner(
        live_server: Any, customer: Account, admin: Account, model_file: Path) -> None:
    owner = make_account(live_server.settings, "owner@example.com")
    model = register_source(live_server.settings, model_file, owner.user_id, "shared",
                            public=True)
    url = live_server.url
    seen = httpx.get(f"{url}/v1/models/{model}", headers=customer.headers).json()
    assert seen["public"] is True and seen["owner_id"] is None
    listed = httpx.get(f"{url}/v1/models", headers=customer.headers).json()["data"]
    assert [m["owner_id"] for m in listed if m["id"] == model] == [None]
    oa = httpx.get(f"{url}/openai/v1/models/{model}", headers=customer.headers).json()
    assert oa["owned_by"] == "user"
    oa_list = httpx.get(f"{url}/openai/v1/models", headers=customer.headers).json()["data"]
    assert owner.user_id not in str(oa_list)
    # The owner and administrators still see it.
    assert httpx.get(f"{url}/v1/models/{model}",
                     headers=owner.headers).json()["owner_id"] == owner.user_id
    assert httpx.get(f"{url}/v1/models/{model}",
                     headers=admin.headers).json()["owner_id"] == owner.user_id
    assert httpx.get(f"{url}/openai/v1/models/{model}",
                     headers=owner.headers).json()["owned_by"] == owner.user_id
