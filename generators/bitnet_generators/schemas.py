"""JSON Schema (the OpenAPI 3.0 dialect) → :class:`~bitnet_generators.ir.TypeRef` and named types.

Rules, chosen so that every target language can express the result:

* component schemas that are objects, enums or unions become named types;
  primitive and array components are inlined where used (``ModelId`` → ``string``);
* inline objects and enums get a name built from where they sit
  (``AccountLimits.rate_limit`` → ``AccountLimitsRateLimit``);
* ``allOf`` merges object parts into one object; ``oneOf``/``anyOf`` become unions
  (tagged when a ``discriminator`` is given);
* ``nullable`` marks the reference, not the type.

Anything else (``not``, OpenAPI 3.1 keywords, mixed enums, ambiguous merges, name
clashes) is reported to the :class:`~bitnet_generators.errors.ProblemCollector`;
conversion continues so that one run lists every problem.
"""

from __future__ import annotations

from typing import Any

from bitnet_generators.errors import ProblemCollector
from bitnet_generators.ir import EnumValue, Field, NamedType, TypeKind, TypeRef, Variant
from bitnet_generators.naming import go_exported, pascal, words
from bitnet_generators.spec import Spec

__all__ = ["SchemaConverter"]

COMPONENT_PREFIX = "#/components/schemas/"
_SCALARS: dict[str, TypeKind] = {"string": "string", "integer": "integer", "number": "number",
                                "boolean": "boolean"}
# Keywords of JSON Schema drafts newer than OpenAPI 3.0's dialect, or not expressible as types.
_UNSUPPORTED = ("not", "if", "then", "else", "const", "prefixItems", "patternProperties",
                "dependentSchemas", "unevaluatedProperties", "$defs", "contains")
_ANY = TypeRef("any")


class SchemaConverter:
    """Converts schemas of one spec, registering named types as it goes."""

    def __init__(self, spec: Spec, problems: ProblemCollector) -> None:
        self.spec = spec
        self.problems = problems
        self.types: dict[str, NamedType] = {}
        self._components: dict[str, TypeRef] = {}
        self._converting: set[str] = set()
        schemas = spec.tree.get("components", {}).get("schemas") or {}
        #: Type names component schemas take, and where they are (they win over inline names).
        self._component_names = {pascal(n): COMPONENT_PREFIX + n.replace("~", "~0").replace("/", "~1")
                                 for n in schemas} if isinstance(schemas, dict) else {}

    # ------------------------------------------------------------------ public
    def convert_components(self) -> None:
        """Convert every component schema, used or not (in name order)."""
        schemas = self.spec.tree.get("components", {}).get("schemas", {}) or {}
        for name in sorted(schemas):
            self.component(name)

    def component(self, name: str) -> TypeRef:
        """The type of ``#/components/schemas/<name>`` (converted once)."""
        if name in self._components:
            return self._components[name]
        where = COMPONENT_PREFIX + name.replace("~", "~0").replace("/", "~1")
        if name in self._converting:
            self.problems.add(where, "a schema that contains itself without an object in between")
            return _ANY
        schema = self.spec.tree["components"]["schemas"][name]
        self._converting.add(name)
        try:
            ref = self.convert(schema, where, pascal(name), component=True)
        finally:
            self._converting.discard(name)
        self._components[name] = ref
        return ref

    def convert(self, schema: Any, where: str, hint: str, *, component: bool = False) -> TypeRef:
        """The type of ``schema`` found at ``where``; ``hint`` names it if it needs a name."""
        if not isinstance(schema, dict):
            self.problems.add(where, "a schema must be a mapping")
            return _ANY
        if "$ref" in schema:
            return self._reference(schema["$ref"], where)
        for key in _UNSUPPORTED:
            if key in schema:
                self.problems.add(f"{where}/{key}", f"'{key}' is not supported (OpenAPI 3.0 schemas only)")
        nullable = bool(schema.get("nullable", False))
        kind = schema.get("type")
        if kind is not None and not isinstance(kind, str):
            self.problems.add(f"{where}/type", "type lists are OpenAPI 3.1; use one type and 'nullable'")
            return _ANY
        if "oneOf" in schema or "anyOf" in schema:
            return self._union(schema, where, hint).with_nullable(nullable)
        if "allOf" in schema:
            return self._all_of(schema, where, hint).with_nullable(nullable)
        if "enum" in schema:
            return self._enum(schema, where, hint).with_nullable(nullable)
        if kind == "object" or (kind is None and ("properties" in schema or "additionalProperties" in schema)):
            return self._object(schema, where, hint).with_nullable(nullable)
        if kind == "array":
            if "items" not in schema:
                self.problems.add(where, "an array schema needs 'items'")
                return TypeRef("array", item=_ANY, nullable=nullable)
            item = self.convert(schema["items"], f"{where}/items", hint + "Item")
            return TypeRef("array", item=item, nullable=nullable)
        if kind == "string" and schema.get("format") == "binary":
            return TypeRef("binary", nullable=nullable)
        if kind in _SCALARS:
            return TypeRef(_SCALARS[kind], format=schema.get("format"), nullable=nullable)
        if kind is None:
            return TypeRef("any", nullable=nullable)
        self.problems.add(f"{where}/type", f"unknown type {kind!r}")
        return _ANY

    def object_fields(self, ref: TypeRef, where: str) -> tuple[Field, ...] | None:
        """The fields of a named object type (None, with a problem, for anything else)."""
        if ref.kind == "named" and ref.name in self.types and self.types[ref.name].kind == "object":
            return self.types[ref.name].fields
        self.problems.add(where, "expected an object schema here")
        return None

    # ------------------------------------------------------------------ kinds
    def _reference(self, ref: Any, where: str) -> TypeRef:
        if not isinstance(ref, str) or not ref.startswith(COMPONENT_PREFIX):
            self.problems.add(where, f"only references to {COMPONENT_PREFIX}... are supported here: {ref!r}")
            return _ANY
        name = ref[len(COMPONENT_PREFIX):].replace("~1", "/").replace("~0", "~")
        if name not in (self.spec.tree.get("components", {}).get("schemas") or {}):
            self.problems.add(where, f"unresolved reference {ref}")
            return _ANY
        return self.component(name)

    def _register(self, named: NamedType) -> TypeRef:
        owner = self._component_names.get(named.name)
        if owner is not None and owner != named.pointer:
            # A component's own name wins over a name made up for an inline schema.
            self.problems.add(named.pointer, f"type name {named.name!r} is also used by {owner}")
            return TypeRef("named", name=named.name)
        existing = self.types.get(named.name)
        if existing is not None and existing.pointer != named.pointer:
            self.problems.add(named.pointer, f"type name {named.name!r} is also used by {existing.pointer}")
        elif not words(named.name):
            self.problems.add(named.pointer, f"cannot make a type name from {named.name!r}")
        else:
            self.types[named.name] = named
        return TypeRef("named", name=named.name)

    def _enum(self, schema: dict[str, Any], where: str, hint: str) -> TypeRef:
        values = schema["enum"]
        if not isinstance(values, list) or not values:
            self.problems.add(f"{where}/enum", "'enum' must be a non-empty list")
            return _ANY
        if any(v is None for v in values):
            self.problems.add(f"{where}/enum", "null in an enum is not supported; leave the field out instead")
        present = [v for v in values if v is not None]
        if all(isinstance(v, str) for v in present):
            base = "string"
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            base = "integer"
        else:
            self.problems.add(f"{where}/enum", "enum values must be all strings or all integers")
            return _ANY
        seen: dict[str, Any] = {}
        for v in present:
            key = go_exported(str(v)) or "_"
            if key in seen:
                self.problems.add(f"{where}/enum", f"enum values {seen[key]!r} and {v!r} give the same constant name")
            seen[key] = v
        named = NamedType(hint, "enum", where, _doc(schema), values=tuple(EnumValue(v) for v in present),
                          enum_base=base)  # type: ignore[arg-type]
        return self._register(named)

    def _object(self, schema: dict[str, Any], where: str, hint: str) -> TypeRef:
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        additional: TypeRef | None = None
        if isinstance(extra, dict) and extra:
            additional = self.convert(extra, f"{where}/additionalProperties", hint + "Value")
        if not props:
            if additional is not None:
                return TypeRef("map", item=additional)
            return TypeRef("object")
        required = set(schema.get("required") or [])
        for name in sorted(required - set(props)):
            self.problems.add(f"{where}/required", f"required property {name!r} is not defined")
        fields = []
        for name in props:
            ref = self.convert(props[name], f"{where}/properties/{name}", hint + pascal(name))
            fields.append(Field(name, ref, name in required, self._field_doc(props[name])))
        self._check_field_names(fields, where)
        if additional is not None:
            odd = [f.name for f in fields if f.type.with_nullable(False) != additional.with_nullable(False)]
            if odd:
                self.problems.add(f"{where}/additionalProperties",
                                  f"properties {odd} differ from the additionalProperties type; "
                                  "an object with both must use one value type")
        return self._register(NamedType(hint, "object", where, _doc(schema), tuple(fields), additional))

    def _check_field_names(self, fields: list[Field], where: str) -> None:
        seen: dict[str, str] = {}
        for f in fields:
            key = go_exported(f.name)
            if not key:
                self.problems.add(f"{where}/properties/{f.name}", "cannot make a field name from this property")
            elif key in seen:
                self.problems.add(f"{where}/properties/{f.name}",
                                  f"property names {seen[key]!r} and {f.name!r} give the same field name")
            seen[key] = f.name

    def _all_of(self, schema: dict[str, Any], where: str, hint: str) -> TypeRef:
        parts = schema["allOf"]
        if not isinstance(parts, list) or not parts:
            self.problems.add(f"{where}/allOf", "'allOf' must be a non-empty list")
            return _ANY
        if len(parts) == 1 and not schema.get("properties"):
            return self.convert(parts[0], f"{where}/allOf/0", hint)
        merged: dict[str, Field] = {}
        own = {k: v for k, v in schema.items() if k in ("properties", "required", "type")}
        sources = [(p, f"{where}/allOf/{i}", f"{hint}Part{i}") for i, p in enumerate(parts)]
        if own.get("properties"):
            sources.append((dict(own, type="object"), where, hint + "Part"))
        for part, at, part_hint in sources:
            fields = self._part_fields(part, at, part_hint)
            for f in fields or ():
                prior = merged.get(f.name)
                if prior is not None and prior.type != f.type:
                    self.problems.add(at, f"allOf parts disagree on the type of {f.name!r}")
                    continue
                required = f.required or (prior.required if prior else False)
                merged[f.name] = Field(f.name, f.type, required, f.description or (prior.description if prior else ""))
        fields_list = list(merged.values())
        self._check_field_names(fields_list, where)
        return self._register(NamedType(hint, "object", where, _doc(schema), tuple(fields_list)))

    def _part_fields(self, part: Any, where: str, hint: str) -> tuple[Field, ...] | None:
        """Fields of one allOf part; inline parts are not registered as types of their own."""
        if isinstance(part, dict) and "$ref" not in part and "allOf" not in part:
            if part.get("type", "object") != "object" or "oneOf" in part or "anyOf" in part:
                self.problems.add(where, "every allOf part must be an object")
                return None
            required = set(part.get("required") or [])
            props = part.get("properties") or {}
            return tuple(Field(n, self.convert(s, f"{where}/properties/{n}", _owner(hint) + pascal(n)),
                               n in required, self._field_doc(s)) for n, s in props.items())
        ref = self.convert(part, where, hint)
        return self.object_fields(ref, where)

    def _field_doc(self, schema: Any) -> str:
        """A property's description; for a bare reference to a scalar component (a request
        field whose default lives there), that component's."""
        ref = schema.get("$ref") if isinstance(schema, dict) else None
        if isinstance(ref, str) and len(schema) == 1 and ref.startswith(COMPONENT_PREFIX):
            target = (self.spec.tree.get("components", {}).get("schemas") or {}).get(ref[len(COMPONENT_PREFIX):])
            if isinstance(target, dict) and target.get("type") not in (None, "object", "array"):
                return _doc(target)
        return _doc(schema)

    def _union(self, schema: dict[str, Any], where: str, hint: str) -> TypeRef:
        key = "oneOf" if "oneOf" in schema else "anyOf"
        if schema.get("properties") or "allOf" in schema:
            self.problems.add(where, f"'{key}' next to properties or allOf is not supported")
        members = schema[key]
        if not isinstance(members, list) or not members:
            self.problems.add(f"{where}/{key}", f"'{key}' must be a non-empty list")
            return _ANY
        refs = [self.convert(m, f"{where}/{key}/{i}", f"{hint}Option{i}") for i, m in enumerate(members)]
        disc = schema.get("discriminator")
        if disc is None:
            variants = tuple(Variant(r) for r in refs)
            return self._register(NamedType(hint, "union", where, _doc(schema), variants=variants))
        return self._tagged_union(schema, where, hint, key, refs)

    def _tagged_union(self, schema: dict[str, Any], where: str, hint: str, key: str,
                      refs: list[TypeRef]) -> TypeRef:
        disc = schema["discriminator"]
        prop = disc.get("propertyName") if isinstance(disc, dict) else None
        if not isinstance(prop, str):
            self.problems.add(f"{where}/discriminator", "discriminator needs a propertyName")
            return _ANY
        mapping = disc.get("mapping") or {}
        by_ref = {ref: tag for tag, ref in mapping.items()}
        variants = []
        for i, (member, ref) in enumerate(zip(schema[key], refs, strict=True)):
            at = f"{where}/{key}/{i}"
            target = member.get("$ref") if isinstance(member, dict) else None
            if target is None or ref.kind != "named":
                self.problems.add(at, "members of a union with a discriminator must be references to objects")
                continue
            tag = by_ref.get(target, target[len(COMPONENT_PREFIX):])
            fields = self.object_fields(ref, at) or ()
            if not any(f.name == prop and f.required for f in fields):
                self.problems.add(at, f"member lacks the required discriminator property {prop!r}")
            variants.append(Variant(ref, str(tag)))
        known = {m.get("$ref") for m in schema[key] if isinstance(m, dict)}
        for tag, target in sorted(mapping.items()):
            if target not in known:
                self.problems.add(f"{where}/discriminator/mapping/{tag}", f"{target} is not one of the {key} members")
        named = NamedType(hint, "union", where, _doc(schema), variants=tuple(variants), discriminator=prop)
        return self._register(named)


def _doc(schema: Any) -> str:
    if not isinstance(schema, dict):
        return ""
    return str(schema.get("description") or schema.get("title") or "").strip()


def _owner(hint: str) -> str:
    """``"CurrentUserPart1"`` → ``"CurrentUser"``: inline allOf parts name their nested types after the whole."""
    head, sep, _ = hint.rpartition("Part")
    return head if sep else hint
