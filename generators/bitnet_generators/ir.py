"""The intermediate representation every template generator renders from.

Built once from a spec by :mod:`bitnet_generators.build`, it holds only what an
SDK needs, already checked: named types (objects, enums, unions), operations
with their parameters, request bodies and result, and the API-wide facts
(base path, credentials, the refresh operation, the error schema). Language
modules map it to types and names; they never read the raw spec.

Everything is a frozen dataclass in a stable order (types by name, operations
by operationId), which is what makes generation deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Api",
    "Auth",
    "Body",
    "EnumValue",
    "Field",
    "JobWaiter",
    "NamedType",
    "Operation",
    "Pagination",
    "Param",
    "Result",
    "SseEvent",
    "TypeRef",
    "Variant",
]

TypeKind = Literal["string", "integer", "number", "boolean", "any", "binary", "named", "array", "map", "object"]


@dataclass(frozen=True)
class TypeRef:
    """A type expression. ``kind`` ``named`` points at a :class:`NamedType` by ``name``;
    ``array`` and ``map`` carry their element type in ``item``; ``object`` is a free-form
    JSON object; ``format`` keeps ``date-time``, ``int64`` and the like."""

    kind: TypeKind
    name: str | None = None
    item: TypeRef | None = None
    format: str | None = None
    nullable: bool = False

    def with_nullable(self, nullable: bool) -> TypeRef:
        return TypeRef(self.kind, self.name, self.item, self.format, nullable)


@dataclass(frozen=True)
class Field:
    """One property of an object type (``name`` as on the wire)."""

    name: str
    type: TypeRef
    required: bool
    description: str = ""


@dataclass(frozen=True)
class EnumValue:
    value: str | int
    description: str = ""


@dataclass(frozen=True)
class Variant:
    """One member of a union; ``tag`` is its discriminator value when the union has one."""

    type: TypeRef
    tag: str | None = None


@dataclass(frozen=True)
class NamedType:
    """A type the SDK declares by name.

    * ``object``: ``fields``; ``additional`` is the value type of extra keys (a map), if any.
    * ``enum``: ``values`` of ``enum_base`` (``string`` or ``integer``).
    * ``union``: ``variants``; ``discriminator`` names the tag property when there is one.
    """

    name: str
    kind: Literal["object", "enum", "union"]
    pointer: str
    description: str = ""
    fields: tuple[Field, ...] = ()
    additional: TypeRef | None = None
    values: tuple[EnumValue, ...] = ()
    enum_base: Literal["string", "integer"] = "string"
    variants: tuple[Variant, ...] = ()
    discriminator: str | None = None


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter (``name`` as on the wire)."""

    name: str
    location: Literal["path", "query", "header"]
    type: TypeRef
    required: bool
    description: str = ""


@dataclass(frozen=True)
class Body:
    """One accepted request body. ``encoding`` decides how the SDK sends it."""

    media_type: str
    encoding: Literal["json", "multipart", "form", "binary"]
    type: TypeRef
    required: bool


@dataclass(frozen=True)
class SseEvent:
    """A Server-Sent Event an operation may send; ``error`` events end the stream with a problem."""

    name: str
    type: TypeRef
    error: bool


@dataclass(frozen=True)
class Result:
    """What a successful call returns: JSON of ``type``, nothing, bytes, text or an event stream."""

    encoding: Literal["json", "none", "binary", "text", "sse"]
    type: TypeRef | None = None
    statuses: tuple[int, ...] = ()
    events: tuple[SseEvent, ...] = ()


@dataclass(frozen=True)
class Pagination:
    """A cursor-paginated list: pass ``cursor_param``, read ``items_field`` and ``next_field``."""

    cursor_param: str
    items_field: str
    next_field: str
    item: TypeRef


@dataclass(frozen=True)
class JobWaiter:
    """Poll this operation (one path parameter) until ``status_field`` is one of ``terminal``."""

    status_field: str
    terminal: tuple[str, ...]


@dataclass(frozen=True)
class Operation:
    """One HTTP operation, ready to render as one SDK method."""

    id: str
    method: str
    path: str
    pointer: str
    summary: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    params: tuple[Param, ...] = ()
    bodies: tuple[Body, ...] = ()
    result: Result = field(default_factory=lambda: Result("none"))
    secured: bool = True
    idempotency_header: str | None = None
    pagination: Pagination | None = None
    waiter: JobWaiter | None = None
    deprecated: bool = False

    @property
    def path_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.location == "path")

    @property
    def option_params(self) -> tuple[Param, ...]:
        """Query and header parameters (the idempotency header included)."""
        return tuple(p for p in self.params if p.location != "path")


@dataclass(frozen=True)
class Auth:
    """Credentials the API accepts and where its OAuth2 endpoints are."""

    bearer: bool = False
    api_key_header: str | None = None
    token_path: str | None = None  # the login operation's path, relative to base_path
    refresh_path: str | None = None


@dataclass(frozen=True)
class Api:
    """The whole API as the generators see it."""

    title: str
    version: str
    description: str
    base_path: str
    spec_name: str
    spec_sha256: str
    types: tuple[NamedType, ...]
    operations: tuple[Operation, ...]
    auth: Auth
    problem_type: str | None = None
    license: str | None = None  # info.license.name (an SPDX identifier, e.g. MIT)
    extras: dict[str, Any] = field(default_factory=dict, compare=False)

    def type(self, name: str) -> NamedType:
        for t in self.types:
            if t.name == name:
                return t
        raise KeyError(name)
