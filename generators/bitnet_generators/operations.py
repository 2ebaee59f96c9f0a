"""OpenAPI operations → :class:`~bitnet_generators.ir.Operation`.

What an SDK method needs from each operation: its parameters (path, query,
header; cookies are refused), the bodies it accepts (JSON, multipart, form,
raw bytes), what success returns (JSON, nothing, bytes, text or Server-Sent
Events described by ``x-sse-events``), whether it needs credentials, and three
conventions this project's spec follows (see ``docs/sdks.md``):

* an ``Idempotency-Key`` header parameter marks a job-creating POST: the SDK
  sends a fresh key, reused across retries, unless the caller gives one;
* a ``cursor`` query parameter and a ``{data: [...], next_cursor}`` answer make
  a paginated list;
* a GET of one ``{..._id}`` whose answer has an enum ``status`` with final
  states (succeeded, failed, cancelled, ...) can be polled by a job waiter.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from bitnet_generators.errors import ProblemCollector, pointer
from bitnet_generators.ir import (
    Body,
    JobWaiter,
    Operation,
    Pagination,
    Param,
    Result,
    SseEvent,
    TypeRef,
)
from bitnet_generators.naming import pascal, words
from bitnet_generators.schemas import SchemaConverter

__all__ = ["HTTP_METHODS", "OperationBuilder"]

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
IDEMPOTENCY_HEADER = "idempotency-key"
CURSOR_PARAM, ITEMS_FIELD, NEXT_FIELD = "cursor", "data", "next_cursor"
FINAL_STATES = ("succeeded", "failed", "cancelled", "canceled", "completed", "expired")
PROBLEM_MEDIA = "application/problem+json"
# Headers OpenAPI says to ignore when declared as parameters (they are set by the client).
_IGNORED_HEADERS = {"accept", "content-type", "authorization"}
_PATH_ITEM_KEYS = {"summary", "description", "parameters", *HTTP_METHODS}


def _is_json(media: str) -> bool:
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class OperationBuilder:
    """Builds every operation of a spec; schemas go through the shared converter."""

    def __init__(self, converter: SchemaConverter, problems: ProblemCollector,
                 schemes: dict[str, str]) -> None:
        self.conv = converter
        self.spec = converter.spec
        self.problems = problems
        self.schemes = schemes  # scheme name -> "bearer" | "apikey"
        self.problem_refs: dict[str, str] = {}  # problem+json schema ref -> first pointer using it
        self._problem_refs_all: set[str] | None = None

    def build_all(self) -> list[Operation]:
        paths = self.spec.tree.get("paths") or {}
        ops: dict[str, Operation] = {}
        for path in paths:
            item = paths[path]
            where = pointer("paths", path)
            if not isinstance(item, dict):
                self.problems.add(where, "a path item must be a mapping")
                continue
            for key in sorted(item):
                if key not in _PATH_ITEM_KEYS and not key.startswith("x-"):
                    self.problems.add(f"{where}/{pointer(key)[2:]}", f"path item field {key!r} is not supported")
            for method in HTTP_METHODS:
                if method in item:
                    op = self._operation(path, method, item, f"{where}/{method}")
                    if op is None:
                        continue
                    if op.id in ops:
                        self.problems.add(f"{where}/{method}/operationId",
                                          f"operationId {op.id!r} is also used by {ops[op.id].pointer}")
                    ops[op.id] = op
        return [ops[k] for k in sorted(ops)]

    # ------------------------------------------------------------------ one operation
    def _operation(self, path: str, method: str, item: dict[str, Any], where: str) -> Operation | None:
        raw = item[method]
        op_id = raw.get("operationId")
        if not isinstance(op_id, str) or not words(op_id):
            self.problems.add(where, "every operation needs an operationId made of letters and digits")
            return None
        params = self._params(path, item.get("parameters", []), raw.get("parameters", []), where, op_id)
        bodies = self._bodies(raw.get("requestBody"), f"{where}/requestBody", pascal(op_id) + "Body")
        result = self._result(raw.get("responses") or {}, f"{where}/responses", pascal(op_id) + "Response")
        secured = self._secured(raw.get("security", self.spec.tree.get("security", [])), where)
        idem = next((p.name for p in params if p.location == "header" and p.name.lower() == IDEMPOTENCY_HEADER), None)
        op = Operation(
            id=op_id, method=method.upper(), path=path, pointer=where,
            summary=str(raw.get("summary") or "").strip(), description=str(raw.get("description") or "").strip(),
            tags=tuple(raw.get("tags") or ()), params=tuple(params), bodies=tuple(bodies), result=result,
            secured=secured, idempotency_header=idem, deprecated=bool(raw.get("deprecated", False)),
        )
        op = replace(op, pagination=self._pagination(op))
        return replace(op, waiter=self._waiter(op))

    def _params(self, path: str, shared: list[Any], own: list[Any], where: str, op_id: str) -> list[Param]:
        merged: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        for raw_list, base in ((shared, pointer("paths", path) + "/parameters"), (own, f"{where}/parameters")):
            for i, raw in enumerate(raw_list or []):
                at = f"{base}/{i}"
                param = self._deref(raw, at, "#/components/parameters/")
                if param is None:
                    continue
                if not isinstance(param.get("name"), str) or param.get("in") not in ("path", "query", "header", "cookie"):
                    self.problems.add(at, "a parameter needs a name and 'in' (path, query or header)")
                    continue
                merged[(param["in"], param["name"])] = (param, at)
        params = []
        for (location, name), (param, at) in merged.items():
            built = self._param(location, name, param, at, op_id)
            if built is not None:
                params.append(built)
        declared = {p.name for p in params if p.location == "path"}
        template = set(re.findall(r"{([^}/]+)}", path))
        for name in sorted(template - declared):
            self.problems.add(where, f"path parameter {name!r} of {path} is not declared")
        for name in sorted(declared - template):
            self.problems.add(where, f"path parameter {name!r} does not appear in {path}")
        return params

    def _param(self, location: str, name: str, param: dict[str, Any], at: str, op_id: str) -> Param | None:
        if location == "cookie":
            self.problems.add(at, f"cookie parameter {name!r} is not supported")
            return None
        if location == "header" and name.lower() in _IGNORED_HEADERS:
            return None
        if "schema" not in param:
            self.problems.add(at, f"parameter {name!r} must have a 'schema' ('content' is not supported)")
            return None
        default_style = "form" if location == "query" else "simple"
        if param.get("style", default_style) != default_style:
            self.problems.add(f"{at}/style", f"style {param['style']!r} is not supported for {location} parameters")
        ref = self.conv.convert(param["schema"], f"{at}/schema", pascal(op_id) + pascal(name))
        scalar = ref.kind in ("string", "integer", "number", "boolean") or (
            ref.kind == "named" and self.conv.types.get(ref.name or "") is not None
            and self.conv.types[ref.name or ""].kind == "enum")
        if not scalar and not (ref.kind == "array" and location == "query" and param.get("explode", True)):
            self.problems.add(f"{at}/schema", f"{location} parameter {name!r} must be a string, number, boolean "
                                              "or enum (or, in the query, an exploded array)")
        if location == "path" and not param.get("required"):
            self.problems.add(at, f"path parameter {name!r} must be required")
        return Param(name, location, ref, bool(param.get("required")), str(param.get("description") or "").strip())  # type: ignore[arg-type]

    def _bodies(self, raw: Any, where: str, hint: str) -> list[Body]:
        if raw is None:
            return []
        body = self._deref(raw, where, "#/components/requestBodies/")
        if body is None:
            return []
        content = body.get("content") or {}
        required = bool(body.get("required", False))
        order = {"json": 0, "binary": 1, "multipart": 2, "form": 3}
        bodies = []
        for media in content:
            at = f"{where}/content/{pointer(media)[2:]}"
            schema = (content[media] or {}).get("schema")
            encoding = ("json" if _is_json(media) else "multipart" if media == "multipart/form-data"
                        else "form" if media == "application/x-www-form-urlencoded"
                        else "binary" if media == "application/octet-stream" else None)
            if encoding is None:
                self.problems.add(at, f"request bodies of type {media} are not supported")
                continue
            if encoding == "binary":
                bodies.append(Body(media, "binary", TypeRef("binary"), required))
                continue
            if schema is None:
                self.problems.add(at, "a request body needs a schema")
                continue
            ref = self.conv.convert(schema, f"{at}/schema", hint)
            if encoding in ("multipart", "form") and self.conv.object_fields(ref, f"{at}/schema") is None:
                continue
            bodies.append(Body(media, encoding, ref, required))  # type: ignore[arg-type]
        return sorted(bodies, key=lambda b: order[b.encoding])

    def _result(self, responses: dict[str, Any], where: str, hint: str) -> Result:
        results: list[tuple[int, Result, str]] = []
        for code in sorted(responses, key=str):
            at = f"{where}/{code}"
            response = self._deref(responses[code], at, "#/components/responses/")
            if response is None:
                continue
            status = str(code)
            if status.startswith("2"):
                number = int(status) if status.isdigit() else 200
                results.append((number, self._success(response, at, hint), at))
            else:
                self._error_response(response, at)
        if not results:
            self.problems.add(where, "no success (2xx) response is documented")
            return Result("none")
        first = results[0][1]
        for _, other, at in results[1:]:
            if (other.encoding, other.type, other.events) != (first.encoding, first.type, first.events):
                self.problems.add(at, "success responses of one operation must return the same type")
        return Result(first.encoding, first.type, tuple(n for n, _, _ in results), first.events)

    def _success(self, response: dict[str, Any], at: str, hint: str) -> Result:
        content = response.get("content") or {}
        if not content:
            return Result("none")
        if len(content) > 1:
            self.problems.add(f"{at}/content", "a success response with several media types is not supported")
        media = next(iter(content))
        mt = content[media] or {}
        mat = f"{at}/content/{pointer(media)[2:]}"
        if _is_json(media):
            if "schema" not in mt:
                self.problems.add(mat, "a JSON response needs a schema")
                return Result("json", TypeRef("any"))
            return Result("json", self.conv.convert(mt["schema"], f"{mat}/schema", hint))
        if media == "text/event-stream":
            return Result("sse", events=self._events(mt, mat))
        if media.startswith("text/"):
            return Result("text", TypeRef("string"))
        if media == "application/octet-stream" or media.split("/")[0] in ("image", "audio", "video"):
            return Result("binary", TypeRef("binary"))
        self.problems.add(mat, f"responses of type {media} are not supported")
        return Result("none")

    def _events(self, mt: dict[str, Any], at: str) -> tuple[SseEvent, ...]:
        events = mt.get("x-sse-events")
        if not isinstance(events, dict) or not events:
            self.problems.add(at, "text/event-stream needs 'x-sse-events' mapping each event name to its schema")
            return ()
        out = []
        for name in sorted(events):
            schema = events[name]
            ref = self.conv.convert(schema, f"{at}/x-sse-events/{name}", pascal(str(name)) + "Event")
            is_error = isinstance(schema, dict) and schema.get("$ref") in self.problem_schema_refs()
            out.append(SseEvent(str(name), ref, is_error))
        return tuple(out)

    def problem_schema_refs(self) -> set[str]:
        """References used as the schema of problem+json error responses anywhere in the spec."""
        if self._problem_refs_all is None:
            found: set[str] = set()
            for node in _walk(self.spec.tree.get("paths") or {}, self.spec):
                media = node.get(PROBLEM_MEDIA) if isinstance(node, dict) else None
                if isinstance(media, dict) and isinstance(media.get("schema"), dict) and "$ref" in media["schema"]:
                    found.add(media["schema"]["$ref"])
            self._problem_refs_all = found
        return self._problem_refs_all

    def _error_response(self, response: dict[str, Any], at: str) -> None:
        media = (response.get("content") or {}).get(PROBLEM_MEDIA)
        if isinstance(media, dict):
            ref = (media.get("schema") or {}).get("$ref")
            if isinstance(ref, str):
                self.problem_refs.setdefault(ref, at)

    def _secured(self, security: Any, where: str) -> bool:
        if not isinstance(security, list):
            self.problems.add(f"{where}/security", "security must be a list of requirements")
            return False
        if not security or any(req == {} for req in security):
            return False
        for i, req in enumerate(security):
            for name in req or {}:
                if name not in self.schemes:
                    self.problems.add(f"{where}/security/{i}", f"unknown or unsupported security scheme {name!r}")
        return True

    def _pagination(self, op: Operation) -> Pagination | None:
        cursor = next((p for p in op.params if p.location == "query" and p.name == CURSOR_PARAM), None)
        if cursor is None:
            return None
        fields = {}
        if op.result.encoding == "json" and op.result.type and op.result.type.kind == "named":
            named = self.conv.types.get(op.result.type.name or "")
            fields = {f.name: f for f in named.fields} if named and named.kind == "object" else {}
        items, nxt = fields.get(ITEMS_FIELD), fields.get(NEXT_FIELD)
        if items is None or nxt is None or items.type.kind != "array" or items.type.item is None:
            self.problems.add(op.pointer, f"a '{CURSOR_PARAM}' parameter needs a JSON answer with "
                                          f"'{ITEMS_FIELD}' (array) and '{NEXT_FIELD}' (SDK pagination convention)")
            return None
        return Pagination(CURSOR_PARAM, ITEMS_FIELD, NEXT_FIELD, items.type.item)

    def _waiter(self, op: Operation) -> JobWaiter | None:
        if op.method != "GET" or len(op.path_params) != 1 or op.result.encoding != "json" or op.pagination:
            return None
        if not op.path.endswith("/{" + op.path_params[0].name + "}") or op.result.type is None:
            return None
        named = self.conv.types.get(op.result.type.name or "")
        status = next((f for f in named.fields if f.name == "status"), None) if named and named.kind == "object" else None
        enum = self.conv.types.get(status.type.name or "") if status and status.type.kind == "named" else None
        if enum is None or enum.kind != "enum":
            return None
        final = tuple(str(v.value) for v in enum.values if v.value in FINAL_STATES)
        return JobWaiter("status", final) if final else None

    # ------------------------------------------------------------------ helpers
    def _deref(self, node: Any, at: str, prefix: str) -> dict[str, Any] | None:
        if isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not isinstance(ref, str) or not ref.startswith(prefix):
                self.problems.add(at, f"only references to {prefix}... are supported here: {ref!r}")
                return None
            try:
                node = self.spec.resolve(ref)
            except (KeyError, ValueError, IndexError):
                self.problems.add(at, f"unresolved reference {ref}")
                return None
        if not isinstance(node, dict):
            self.problems.add(at, "expected a mapping")
            return None
        return node


def _walk(node: Any, spec: Any) -> Any:
    """Every mapping under ``node``, following references to components/responses."""
    stack = [node]
    seen: set[int] = set()
    while stack:
        cur = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, dict):
            yield cur
            ref = cur.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/responses/"):
                try:
                    stack.append(spec.resolve(ref))
                except (KeyError, ValueError, IndexError):
                    pass
            stack.extend(v for v in cur.values() if isinstance(v, dict | list))
        elif isinstance(cur, list):
            stack.extend(v for v in cur if isinstance(v, dict | list))
