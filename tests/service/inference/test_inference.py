"""The inference service without HTTP: spec defaults, compute units, dense outputs, and the
blocking path job workers use (run_sync) on a real store and a synthetic model."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bitnet_sdk
from bitnet_sdk.auth.principal import Principal
from bitnet_sdk.dense import Prediction
from bitnet_sdk.server.spec import load_spec
from bitnet_sdk.service.errors import ApiError
from bitnet_sdk.service.inference import dense_io
from bitnet_sdk.service.inference.model_cache import ModelCache
from bitnet_sdk.service.inference.plan import DEFAULTS, compute_units
from bitnet_sdk.service.inference.service import InferenceService
from bitnet_sdk.store.testing import temporary_database
from tests.support.inference import ModelFiles, inference_settings, register_model


def test_defaults_are_the_specs() -> None:
    schemas = load_spec()["components"]["schemas"]
    properties = {k: schemas[v["$ref"].rsplit("/", 1)[1]] if "$ref" in v else v
                  for k, v in schemas["InferenceRequest"]["properties"].items()}
    spec_defaults = {k: v["default"] for k, v in properties.items() if "default" in v}
    assert {k: DEFAULTS[k] for k in spec_defaults} == spec_defaults
    assert set(DEFAULTS) - set(spec_defaults) == {"seed", "stop"}  # no default in the spec


@pytest.mark.parametrize(("items", "parameters", "units"), [
    (7, 1_200_000, 9e-6),          # 8.4e-6 rounded up to a millionth
    (8, 1_000_000_000, 0.008),     # the spec's example: exact
    (1, 1, 1e-6),                  # no request that ran is free
    (0, 1_000_000_000, 0.0),
])
def test_compute_units(items: int, parameters: int, units: float) -> None:
    assert compute_units(items, parameters) == pytest.approx(units, abs=1e-12)
    assert compute_units(items, parameters) >= items * parameters / 1e12


def test_dense_fields_from_a_bare_array_and_from_a_prediction() -> None:
    logits = np.array([[1.0, 3.0, 2.0], [0.5, 0.0, -1.0]], dtype=np.float32)
    bare = dense_io.response_fields(logits, return_probabilities=True)
    assert bare["predictions"] == [1, 0]
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.allclose(bare["probabilities"], expected)
    probs = np.array([[0.1, 0.9], [0.8, 0.2]])
    classifier = Prediction({"probs": probs}, probs, np.array([1, 0]))
    fields = dense_io.response_fields(classifier, return_probabilities=True)
    assert fields["probabilities"] == probs.tolist()  # the model's own, not softmax again
    assert fields["predictions"] == [1, 0]
    assert "probabilities" not in dense_io.response_fields(logits, return_probabilities=False)
    scalar_per_sample = dense_io.response_fields(np.array([0.2, 0.7]), False)
    assert scalar_per_sample["outputs"] == [[pytest.approx(0.2)], [pytest.approx(0.7)]]


def test_dense_inputs_and_outputs_that_cannot_be_answered() -> None:
    with pytest.raises(ApiError) as ragged:
        dense_io.predict(lambda x: x, [[1.0, 2.0], [3.0]])
    assert ragged.value.status == 422
    with pytest.raises(ApiError) as wrong:
        dense_io.predict(lambda x: (_ for _ in ()).throw(ValueError("needs 8 features")),
                         [[1.0]])
    assert wrong.value.status == 422 and "8 features" in wrong.value.detail
    with pytest.raises(ApiError) as nan:
        dense_io.response_fields(np.array([[np.nan, 1.0]]), False)
    assert nan.value.status == 500


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[InferenceService, Any]]:
    from bitnet_sdk import auth

    settings = inference_settings(tmp_path, jwt_secret="x" * 32)
    with temporary_database("sqlite", tmp_path):
        user = auth.create_user("jobs@example.com", "correct horse battery 42",
                                settings=settings)
        cache = ModelCache.from_settings(settings)
        try:
            yield InferenceService(settings, cache), user
        finally:
            cache.stop()


def test_run_sync_answers_like_the_runtime_and_records_usage(
        service: tuple[InferenceService, Any], tmp_path: Path) -> None:
    from bitnet_sdk.store.models import UsageRecord

    svc, user = service
    source = ModelFiles(tmp_path / "models").get()
    model_id = register_model(svc.settings, source, owner_id=user.id, name="m")
    caller = Principal(user.id, user.tier)
    answer = svc.run_sync(caller, {"model": "m", "prompt": "Hello", "max_tokens": 5,
                                   "temperature": 0}, request_id="req_0123456789ab")
    local = bitnet_sdk.load(source, backend="numpy").complete("Hello", max_tokens=5)
    assert [t["token_id"] for t in answer["tokens"]] == list(local.token_ids)
    assert answer["model"] == model_id and answer["id"] == "req_0123456789ab"
    (record,) = UsageRecord.select()
    assert (record.operation, record.tokens_in, record.tokens_out) == (
        "inference", len(local.prompt_ids), len(local.token_ids))
    assert math.isclose(record.compute_units, answer["usage"]["compute_units"])
    assert svc.cache.stats()["running"] == 0
    with pytest.raises(ApiError) as missing:
        svc.run_sync(caller, {"model": "nope", "prompt": "x"}, request_id="req_0123456789ac")
    assert missing.value.status == 404
