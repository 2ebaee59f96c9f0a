"""``webhook_secret``: the spec's schema admits exactly the values the server accepts.

Both directions through the live server: every value the schema admits (24 to 64 key
bytes, any padding) is accepted and signs the job's webhook; every value it refuses,
including ones the old pattern admitted (unpadded base64, too few or too many bytes, a
trailing newline that Python's ``$`` let through), is a 400 naming the field, never a
422 from the handler after validation passed.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from bitnet_sdk.config import Settings
from bitnet_sdk.server.spec import load_spec
from bitnet_sdk.service.jobs.webhooks import parse_secret
from bitnet_sdk.testing.synthetic import build_model
from tests.conftest import Account
from tests.support.jobs import register_source


def b64(n: int, fill: int = 7) -> str:
    return base64.b64encode(bytes((fill * i) % 256 for i in range(n))).decode()


ADMITTED = [f"whsec_{b64(n)}" for n in (24, 25, 26, 32, 47, 62, 63, 64)]
REFUSED = [
    "whsec_" + b64(23),  # too short a key
    "whsec_" + b64(65),  # too long a key
    "whsec_" + b64(25).rstrip("="),  # unpadded
    "whsec_" + b64(26).rstrip("="),
    "whsec_" + b64(32) + "\n",  # Python's $ matched before a final newline
    "whsec_" + b64(32) + "=",  # stray padding
    "whsec_" + b64(32)[:-1],  # length not a multiple of 4
    "whsec_" + b64(24)[:8] + "=" + b64(24)[9:],  # padding inside
    "whsec_" + b64(70)[:88] + "AAAA",  # 69 bytes, within the old maxLength
    "whsek_" + b64(32),
    "whsec_" + b64(32).replace("A", "-"),  # URL-safe alphabet
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", demo_model=False, webhook_allow_private=True,
                    workers=0)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("m") / "tiny.gguf", n_layers=1)


def _ecma_admits(value: str) -> bool:
    schema = load_spec()["components"]["schemas"]["WebhookSecret"]
    pattern = schema["pattern"].removesuffix("$") + r"\Z"  # ECMA 262: $ is the very end
    return (schema["minLength"] <= len(value) <= schema["maxLength"]
            and re.search(pattern, value) is not None)


def test_the_cases_are_what_they_claim() -> None:
    for value in ADMITTED:
        assert _ecma_admits(value) and 24 <= len(parse_secret(value)) <= 64
    for value in REFUSED:
        assert not _ecma_admits(value), value


def test_schema_and_server_agree_in_both_directions(live_server: Any, customer: Account,
                                                    model_file: Path) -> None:
    model = register_source(live_server.settings, model_file, customer.user_id, "tiny")

    def create(secret: str) -> httpx.Response:
        return httpx.post(live_server.url + "/v1/inference/batch", headers=customer.headers,
                          timeout=60, json={"requests": [{"model": model, "prompt": "hi"}],
                                            "webhook_url": "http://127.0.0.1:9/hook",
                                            "webhook_secret": secret})

    for secret in ADMITTED:
        r = create(secret)
        assert r.status_code == 202, (secret, r.text)
        assert "webhook_secret" not in r.json()  # the client's own: never echoed
    for secret in REFUSED:
        r = create(secret)
        assert r.status_code == 400, (secret, r.status_code, r.text)
        assert "webhook_secret" in r.text, r.text
