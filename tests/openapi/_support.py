"""Helpers shared by the spec tests: load ``openapi/bitnet.yaml`` and walk it.

The spec is read as plain YAML (not through a resolver) so the tests see exactly what was
written, ``$ref`` included; :func:`resolve` follows a reference when a test needs the target.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi" / "bitnet.yaml"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
# Controller groups: ``bitnet_sdk.api.<group>`` modules, one tag each.
GROUPS = frozenset(
    {"auth", "api_keys", "quantize", "inference", "models", "account", "admin", "system"}
)
SCOPES = frozenset(
    {"models:read", "models:write", "quantize", "inference", "account", "admin", "metrics"}
)
PROBLEM_MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True)
class Operation:
    """One HTTP operation of the spec, with the path item it belongs to."""

    path: str
    method: str
    op: dict[str, Any]
    path_item: dict[str, Any]

    @property
    def operation_id(self) -> str:
        return self.op["operationId"]

    @property
    def name(self) -> str:
        return f"{self.method.upper()} {self.path}"

    def parameters(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        """Path-level and operation-level parameters, references resolved."""
        raw = self.path_item.get("parameters", []) + self.op.get("parameters", [])
        return [resolve(spec, p) for p in raw]


def load_spec() -> dict[str, Any]:
    """The spec as written (a fresh dict each call, safe to modify)."""
    with SPEC_PATH.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def iter_operations(spec: dict[str, Any]) -> Iterator[Operation]:
    for path, item in spec["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield Operation(path, method, item[method], item)


def resolve(spec: dict[str, Any], node: Any) -> Any:
    """Follow ``$ref`` (local references only) until a non-reference node is reached."""
    seen: set[str] = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local references are used: {ref}"
        assert ref not in seen, f"reference cycle at {ref}"
        seen.add(ref)
        node = spec
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def iter_refs(node: Any, where: str = "#") -> Iterator[tuple[str, str]]:
    """Every ``$ref`` anywhere in ``node`` (extensions included), with where it was found."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield where, ref
        for key, value in node.items():
            yield from iter_refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from iter_refs(value, f"{where}/{i}")


def subschemas(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The schemas directly nested in ``schema`` (not following references)."""
    for key in ("items", "not"):
        if isinstance(schema.get(key), dict):
            yield schema[key]
    if isinstance(schema.get("additionalProperties"), dict):
        yield schema["additionalProperties"]
    yield from schema.get("properties", {}).values()
    for key in ("allOf", "anyOf", "oneOf"):
        yield from schema.get(key, [])


def walk_schema(spec: dict[str, Any], schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every schema reachable from ``schema``, references followed, each visited once."""
    stack, seen = [schema], set()
    while stack:
        node = resolve(spec, stack.pop())
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(subschemas(node))


def problem_4xx_codes(spec: dict[str, Any], operation: Operation) -> list[str]:
    """Status codes 400..499 of ``operation`` whose body is a Problem as problem+json."""
    codes = []
    for code, response in operation.op["responses"].items():
        if not str(code).startswith("4"):
            continue
        content = resolve(spec, response).get("content", {})
        schema = content.get(PROBLEM_MEDIA_TYPE, {}).get("schema", {})
        if schema.get("$ref") == "#/components/schemas/Problem":
            codes.append(str(code))
    return codes


def snake_case(operation_id: str) -> str:
    """The handler function name for a camelCase operationId (``listModels`` → ``list_models``)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation_id).lower()


def path_regex(path: str) -> re.Pattern[str]:
    """A regex matching the concrete URLs a templated path accepts (one segment per parameter)."""
    return re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$")
