"""Reading an OpenAPI document: bytes, digest, parsed tree and local ``$ref`` resolution.

The digest is taken over the file's bytes as written, so the provenance header
of every generated file names exactly the document it came from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bitnet_generators.errors import SpecError, SpecProblem

__all__ = ["DEFAULT_SPEC", "Spec", "load_spec"]

#: The project's spec, relative to the repository root (used when no path is given).
DEFAULT_SPEC = Path(__file__).resolve().parents[2] / "openapi" / "bitnet.yaml"


@dataclass(frozen=True)
class Spec:
    """A parsed OpenAPI document and where it came from."""

    name: str  # file name only: provenance must not depend on where the checkout lives
    sha256: str
    tree: dict[str, Any]

    def resolve(self, ref: str) -> Any:
        """The node a local reference (``#/components/...``) points to; ``KeyError`` if none."""
        if not ref.startswith("#/"):
            raise KeyError(ref)
        node: Any = self.tree
        for raw in ref[2:].split("/"):
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, list):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                raise KeyError(ref)
        return node


def load_spec(path: str | Path | None = None) -> Spec:
    """Read and parse the spec at ``path`` (default: the project's ``openapi/bitnet.yaml``).

    Raises :class:`SpecError` when the file is not a YAML/JSON mapping.
    """
    path = Path(path) if path is not None else DEFAULT_SPEC
    raw = path.read_bytes()
    try:
        tree = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise SpecError([SpecProblem("#", f"not valid YAML or JSON: {exc}")], source=path.name) from None
    if not isinstance(tree, dict):
        raise SpecError([SpecProblem("#", "the document is not a mapping")], source=path.name)
    return Spec(name=path.name, sha256=hashlib.sha256(raw).hexdigest(), tree=tree)
