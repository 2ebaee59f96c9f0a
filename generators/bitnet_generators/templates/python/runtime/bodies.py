"""Plain dicts as request bodies: read into the body's model, with errors that name the field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from .errors import BodyError

__all__ = ["read_body"]


class _Model(Protocol):
    @classmethod
    def from_dict(cls, src_dict: Mapping[str, Any]) -> Any: ...


M = TypeVar("M", bound=_Model)


def read_body(model: type[M], body: Mapping[str, Any]) -> M:
    """``model.from_dict(body)``; a missing required field (here or in a nested object) or a
    value of the wrong shape raises :class:`BodyError` before anything is sent."""
    name = model.__name__
    try:
        return model.from_dict(body)
    except KeyError as exc:
        field = str(exc.args[0]) if exc.args else ""
        raise BodyError(f"the {name} body misses the required field {field!r}", model=name,
                        field=field) from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise BodyError(f"the {name} body is not valid: {exc}", model=name) from exc
