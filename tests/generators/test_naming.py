"""Spec names → identifiers of each language."""

from __future__ import annotations

import pytest
from bitnet_generators.naming import camel, go_exported, go_local, pascal, snake, ts_property


@pytest.mark.parametrize(("name", "expected"), [
    ("listApiKeys", ("ListApiKeys", "listApiKeys", "list_api_keys", "ListAPIKeys", "listAPIKeys")),
    ("api_key_id", ("ApiKeyId", "apiKeyId", "api_key_id", "APIKeyID", "apiKeyID")),
    ("X-Content-SHA256", ("XContentSha256", "xContentSha256", "x_content_sha_256", "XContentSHA256",
                          "xContentSHA256")),
    ("ModelQType", ("ModelQType", "modelQType", "model_q_type", "ModelQType", "modelQType")),
    ("models:read", ("ModelsRead", "modelsRead", "models_read", "ModelsRead", "modelsRead")),
    ("range", ("Range", "range", "range", "Range", "range_")),
])
def test_names(name: str, expected: tuple[str, ...]) -> None:
    assert (pascal(name), camel(name), snake(name), go_exported(name), go_local(name)) == expected


def test_typescript_property_keys_are_quoted_when_needed() -> None:
    assert ts_property("model_id") == "model_id"
    assert ts_property("models:read") == '"models:read"'
    assert ts_property('a"b') == '"a\\"b"'
