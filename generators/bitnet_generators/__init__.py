"""SDK generators for the BitNet SDK API: Python, TypeScript and Go clients from the OpenAPI spec.

``generate(language, out)`` writes one SDK; ``bitnet sdk generate`` is its command
line. TypeScript and Go are rendered by our own templates from one intermediate
representation (:mod:`bitnet_generators.ir`); Python goes through
openapi-python-client with our templates. A spec the generators cannot express
raises :class:`SpecError` listing every problem, each with its JSON pointer.

Importing this package has no side effects; the language modules are imported
when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["LANGUAGES", "SpecError", "SpecProblem", "__version__", "generate"]

#: Languages :func:`generate` knows.
LANGUAGES = ("python", "typescript", "go")

if TYPE_CHECKING:
    from bitnet_generators.errors import SpecError, SpecProblem
    from bitnet_generators.generate import generate


def __getattr__(name: str) -> Any:
    if name in ("SpecError", "SpecProblem"):
        from bitnet_generators import errors

        return getattr(errors, name)
    if name == "generate":
        from bitnet_generators.generate import generate

        return generate
    raise AttributeError(name)
