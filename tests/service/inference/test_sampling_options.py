"""Sampler options are named once (``SamplingParams``): the spec and both APIs follow the names."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import pytest
import yaml

from bitnet_sdk.model.sampler import SamplingParams
from bitnet_sdk.service.inference import openai_compat
from bitnet_sdk.service.inference.plan import DEFAULTS, _params

SPEC = Path(__file__).resolve().parents[3] / "openapi" / "bitnet.yaml"
NAMES = SamplingParams.names()


def test_every_option_is_an_inference_request_field_with_the_planned_default() -> None:
    schemas = yaml.safe_load(SPEC.read_text())["components"]["schemas"]
    props = schemas["InferenceRequest"]["properties"]
    runtime = asdict(SamplingParams())
    for name in NAMES:
        assert name in props, name
        # A default sits in the referenced component (openapi-typescript would make an inline
        # one required), so read through the reference.
        prop = props[name]
        target = schemas[prop["$ref"].rsplit("/", 1)[1]] if "$ref" in prop else prop
        assert target.get("default") == DEFAULTS.get(name, runtime[name]), name


def test_native_requests_reach_the_sampler_by_name() -> None:
    request = {"temperature": 0.5, "top_k": 7, "top_p": 0.25, "seed": 11}
    assert _params(request).sampling == SamplingParams(**request)
    planned = _params({}).sampling
    assert [getattr(planned, f.name) for f in fields(SamplingParams)] == [
        DEFAULTS.get(f.name, f.default) for f in fields(SamplingParams)]


@pytest.mark.parametrize("name", [n for n in NAMES if n != "seed"])
def test_openai_bodies_pass_every_option_on(name: str) -> None:
    value = {"temperature": 0.5, "top_k": 7, "top_p": 0.25}.get(name, 1)
    assert openai_compat._sampling({name: value}, 16)[name] == value


def test_bad_options_are_refused_at_planning() -> None:
    from bitnet_sdk.service.errors import ApiError

    with pytest.raises(ApiError) as caught:
        _params({"top_p": 0.0})
    assert caught.value.status == 422
    with pytest.raises(ValueError, match="top_k"):
        SamplingParams(top_k=-1)
