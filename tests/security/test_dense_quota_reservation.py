"""Dense-model requests reserve their compute units at admission, like generations.

Attack: an account with a few compute units left fires many dense (ONNX-derived) inference
requests at once. A check of the stored usage lets them all through (none has finished when
the others are checked); a reservation of each request's worst case — one unit of work per
sample of its batch, known from ``inputs`` before anything runs — lets through only what
fits, so the month's compute units never pass the quota. Run on a live server over SQLite
and over PostgreSQL (``BITNET_TEST_POSTGRES_URL``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from bitnet_sdk.config import DEFAULT_TIERS, TierLimits
from bitnet_sdk.server.app import create_app
from bitnet_sdk.server.asgi.testing import ServerThread
from bitnet_sdk.service.accounting import usage
from bitnet_sdk.store.models import QuotaReservation
from bitnet_sdk.store.testing import (
    DATABASE_KINDS,
    POSTGRES_ENV,
    postgres_test_url,
    temporary_database_url,
)
from tests.conftest import Account, make_account
from tests.support.inference import inference_settings, register_model, wait_until

#: A tier of one compute unit a month, of which all but :data:`LEFT` is spent already.
TIERS = {**DEFAULT_TIERS, "small": TierLimits(100_000, 50, 1_000_000, 1)}
LEFT = 4.5e-6
CONCURRENT = 16


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    from bitnet_sdk.quantization.pipeline import quantize
    from tests.quantization._support import build_onnx_mlp

    folder = tmp_path_factory.mktemp("dense")
    build_onnx_mlp(folder / "mlp.onnx", sizes=(8, 32, 4), seed=5)
    x = np.random.default_rng(3).standard_normal((3, 8)).astype(np.float32)
    quantize(folder / "mlp.onnx", folder / "mlp.gguf", "tq2_0", calibration=x, backend="numpy")
    return folder / "mlp.gguf", x


@pytest.fixture(params=DATABASE_KINDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    if request.param == "postgres" and postgres_test_url() is None:
        pytest.skip(f"{POSTGRES_ENV} not set (start one with scripts/start-postgres.sh)")
    with temporary_database_url(request.param, tmp_path) as url:
        settings = inference_settings(tmp_path, database_url=url, tiers=TIERS, workers=0)
        with ServerThread(create_app(settings)) as thread:
            thread.settings = settings
            yield thread


@pytest.fixture
def owner(server: ServerThread) -> Account:
    return make_account(server.settings, "dense@example.com", tier="small")


def _units(owner: Account) -> float:
    """Compute units in the owner's usage records (what was really used)."""
    return sum(r.compute_units for r in usage.UsageRecord.select()
               .where(usage.UsageRecord.user == owner.user_id))


def test_concurrent_dense_requests_never_take_the_month_past_its_compute_units(
        server: ServerThread, owner: Account, mlp: tuple[Path, np.ndarray]) -> None:
    path, x = mlp
    model = register_model(server.settings, path, owner_id=owner.user_id, name="mlp",
                           kind="dense")
    one = httpx.post(server.url + "/v1/inference", headers=owner.headers, timeout=120,
                     json={"model": model, "inputs": x.tolist()})
    assert one.status_code == 200, one.text
    cost = one.json()["usage"]["compute_units"]
    assert 0 < cost <= LEFT / 4  # so that several fit in what is left, not all of them
    spent = _units(owner)
    usage.record_usage(owner.user_id, usage.OP_INFERENCE, compute_units=1 - LEFT - spent)
    fit = int(LEFT // cost)
    start = threading.Barrier(CONCURRENT)

    def send(_: int) -> httpx.Response:
        start.wait()
        return httpx.post(server.url + "/v1/inference", headers=owner.headers, timeout=120,
                          json={"model": model, "inputs": x.tolist()})

    with ThreadPoolExecutor(CONCURRENT) as pool:
        answers = list(pool.map(send, range(CONCURRENT)))

    admitted = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code != 200]
    for r in refused:
        assert r.status_code == 429 and r.json()["type"].endswith("quota-exceeded"), r.text
    assert 0 < len(admitted) <= fit, [r.status_code for r in answers]
    wait_until(lambda: QuotaReservation.select().count() == 0, what="reservations settled")
    assert _units(owner) <= 1
    assert _units(owner) == pytest.approx(1 - LEFT + cost * len(admitted), abs=1e-12)
    assert sum(r.json()["usage"]["compute_units"] for r in admitted) == pytest.approx(
        cost * len(admitted))
