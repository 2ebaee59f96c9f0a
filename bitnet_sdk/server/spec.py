"""Where the OpenAPI documents live, and reading them.

The spec in the repository's ``openapi/`` folder is the source of truth; the
server, the SDK generators and the tests all read it from here. ``BITNET_SPEC_DIR``
points elsewhere (an installed, non-editable deployment ships the folder beside
its data).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "iter_operations",
    "load_spec",
    "operation_scopes",
    "request_media_types",
    "spec_dir",
    "spec_path",
]

MAIN_SPEC = "bitnet.yaml"


def spec_dir() -> Path:
    env = os.environ.get("BITNET_SPEC_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "openapi"


def spec_path(name: str = MAIN_SPEC) -> Path:
    path = spec_dir() / name
    if not path.is_file():
        raise FileNotFoundError(
            f"OpenAPI document {path} not found; set BITNET_SPEC_DIR to the folder holding {name}"
        )
    return path


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def load_spec(name: str = MAIN_SPEC) -> dict[str, Any]:
    """The parsed document (cached per file version; treat it as read-only)."""
    path = spec_path(name)
    return _load(str(path), path.stat().st_mtime)


HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def iter_operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(path, method, operation)`` for every operation of a parsed document."""
    for path, item in spec.get("paths", {}).items():
        for method in HTTP_METHODS:
            if method in item:
                yield path, method, item[method]


def operation_scopes(spec: dict[str, Any]) -> dict[str, list[str]]:
    """operationId → the scopes its ``x-scopes`` names (else the document's; [] when neither)."""
    default = spec.get("x-scopes", [])
    return {op["operationId"]: list(op.get("x-scopes", default)) for _, _, op in iter_operations(spec)}


def request_media_types(spec: dict[str, Any]) -> dict[str, frozenset[str]]:
    """operationId → the media types its request body accepts (empty: no body)."""
    result: dict[str, frozenset[str]] = {}
    for _, _, op in iter_operations(spec):
        body = op.get("requestBody") or {}
        if "$ref" in body:
            name = body["$ref"].rsplit("/", 1)[-1]
            body = spec.get("components", {}).get("requestBodies", {}).get(name, {})
        result[op["operationId"]] = frozenset(m.lower() for m in body.get("content", {}))
    return result
