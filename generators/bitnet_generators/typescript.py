"""The TypeScript SDK: typed interfaces over ``fetch``, ESM, no runtime dependencies.

Mirrors ``templates/typescript/`` one-to-one: ``package.json``, ``tsconfig.json``,
``README.md``, ``src/index.ts``, ``src/models.ts`` (one interface or type per
named type, wire names kept), ``src/client.ts`` (one method per operation, plus
``...All`` pagination iterators and ``waitFor...`` job waiters), and the
hand-written ``src/runtime/*.ts`` copied under the provenance header.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bitnet_generators.errors import ProblemCollector
from bitnet_generators.ir import Api, NamedType, Operation, Param, TypeRef
from bitnet_generators.naming import TS_RESERVED, camel, pascal, ts_property
from bitnet_generators.render import environment, provenance, static_files

__all__ = ["TsOptions", "render", "ts_type"]

#: Names the runtime exports from the package root; a spec type of the same name would clash.
RUNTIME_NAMES = frozenset({"ApiError", "TimeoutError", "WaitTimeoutError", "ProblemField", "ClientOptions",
                           "RequestOptions", "Tokens", "BinaryBody", "RetryOptions", "WaitOptions",
                           "BadRequestError", "AuthenticationError", "PermissionDeniedError", "NotFoundError",
                           "ConflictError", "UnprocessableEntityError", "RateLimitError", "InternalServerError",
                           "ConnectionError", "InferenceSocket", "SocketMessage", "SocketOptions",
                           "WebSocketConstructor", "ResumableOptions", "PieceState"})
#: Operations the resumable-upload helper (``uploadModelResumable``) is built on.
RESUMABLE_OPS = frozenset({"uploadModelPiece", "getModelUpload"})
_SCALARS = {"string": "string", "integer": "number", "number": "number", "boolean": "boolean",
            "any": "unknown", "binary": "Blob", "object": "Record<string, unknown>"}
_BODY_SUFFIX = {"json": "Json", "multipart": "Multipart", "form": "Form", "binary": "Raw"}
_CORE_CALL = {"json": "json", "none": "empty", "text": "text", "binary": "raw"}


@dataclass(frozen=True)
class TsOptions:
    """``package_name``: the npm name; ``client_name``: the exported client class;
    ``repository``: the source repository URL for ``package.json`` (omitted when None)."""

    package_name: str = "bitnet-client"
    client_name: str = "BitNetClient"
    repository: str | None = None


def ts_type(ref: TypeRef) -> str:
    """The TypeScript type of ``ref`` (``T | null`` when nullable)."""
    if ref.kind == "named":
        base = str(ref.name)
    elif ref.kind == "array":
        assert ref.item is not None
        inner = ts_type(ref.item)
        base = f"({inner})[]" if " " in inner else f"{inner}[]"
    elif ref.kind == "map":
        assert ref.item is not None
        base = f"Record<string, {ts_type(ref.item)}>"
    else:
        base = _SCALARS[ref.kind]
    return f"{base} | null" if ref.nullable else base


def doc_lines(*texts: str) -> list[str]:
    """Paragraphs for a ``/** */`` comment, ``*/`` defused."""
    lines: list[str] = []
    for text in texts:
        if not text:
            continue
        if lines:
            lines.append("")
        lines.extend(line.rstrip().replace("*/", "*\\/") for line in text.strip().splitlines())
    return lines


def render(api: Api, options: TsOptions | None = None) -> dict[str, str]:
    """Every file of the SDK, by relative path."""
    options = options or TsOptions()
    problems = ProblemCollector(source=api.spec_name)
    ops = [_method(api, op, problems) for op in api.operations]
    declared = {t.name for t in api.types}
    for op, view in zip(api.operations, ops, strict=True):
        for name in filter(None, (view["params_name"], view["event_name"])):
            if name in declared or name in RUNTIME_NAMES:
                problems.add(op.pointer, f"TypeScript name {name!r} is also a type of the spec or runtime")
            declared.add(name)
    for t in api.types:
        if t.name in RUNTIME_NAMES or t.name == options.client_name:
            problems.add(t.pointer, f"type name {t.name!r} clashes with the TypeScript runtime")
    problems.raise_if_any()
    header = provenance(api)
    env = environment("typescript")
    env.filters.update(ts_type=ts_type, ts_property=ts_property, json=json.dumps)
    context = {"api": api, "ops": ops, "types": [_type_view(t) for t in api.types], "options": options,
               "header": header, "doc_lines": doc_lines, "model_imports": _model_imports(api),
               "resumable": RESUMABLE_OPS <= {view["name"] for view in ops},
               "websocket_path": next(iter((api.extras.get("tree") or {}).get("x-websockets") or {}), None)}
    files = {rel: env.get_template(rel + ".j2").render(context)
             for rel in ("package.json", "tsconfig.json", "README.md", "src/index.ts", "src/models.ts",
                         "src/client.ts")}
    for name, text in static_files("typescript").items():
        files[f"src/runtime/{name}"] = f"// {header}\n\n{text}"
    return files


def _type_view(t: NamedType) -> dict[str, Any]:
    index = None
    if t.kind == "object" and t.additional is not None:
        extra = {ts_type(t.additional)}
        extra |= {"null" for f in t.fields if f.type.nullable}
        extra |= {"undefined" for f in t.fields if not f.required}
        index = " | ".join(sorted(extra, key=lambda s: (s in ("null", "undefined"), s)))
    return {"t": t, "index": index}


def _model_imports(api: Api) -> list[str]:
    """Model names ``client.ts`` refers to."""
    used: set[str] = set()

    def visit(ref: TypeRef | None) -> None:
        while ref is not None:
            if ref.kind == "named" and ref.name:
                used.add(ref.name)
            ref = ref.item

    for op in api.operations:
        for p in op.params:
            visit(p.type)
        for b in op.bodies:
            visit(b.type)
        visit(op.result.type)
        for e in op.result.events:
            if not e.error:
                visit(e.type)
        if op.pagination:
            visit(op.pagination.item)
    return sorted(used)


def _local(name: str) -> str:
    ident = camel(name)
    return ident + "Param" if ident in TS_RESERVED else ident


def _method(api: Api, op: Operation, problems: ProblemCollector) -> dict[str, Any]:
    name = camel(op.id)
    options_params = op.option_params
    keys = [camel(p.name) for p in options_params]
    if len(set(keys)) != len(keys) or len({_local(p.name) for p in op.path_params}) != len(op.path_params):
        problems.add(op.pointer, "two parameters give the same TypeScript name")
    path = op.path
    for p in op.path_params:
        path = path.replace("{" + p.name + "}", "${pathSegment(" + _local(p.name) + ")}")
    path_expr = f"`{path}`" if op.path_params else json.dumps(op.path)
    params_name = pascal(op.id) + "Params" if options_params else None
    params_required = any(p.required and p.name != op.idempotency_header for p in options_params)
    result = op.result
    if result.encoding == "sse":
        returns = pascal(op.id) + "Event"
    elif result.encoding == "json" and result.type is not None:
        returns = ts_type(result.type)
    else:
        returns = {"none": "void", "text": "string", "binary": "Response"}[result.encoding]
    variants = []
    for i, body in enumerate(op.bodies or (None,)):
        suffix = "" if i == 0 else _BODY_SUFFIX[body.encoding] if body else ""
        body_type = None
        if body is not None:
            body_type = "BinaryBody" if body.encoding == "binary" else ts_type(body.type)
        variants.append({"name": name + suffix, "body": body, "body_type": body_type})
    waiter = None
    if op.waiter:
        stem = op.id[3:] if op.id.startswith("get") and len(op.id) > 3 else op.id
        waiter = {"name": "waitFor" + pascal(stem), "terminal": list(op.waiter.terminal),
                  "field": op.waiter.status_field}
    return {
        "op": op, "name": name, "variants": variants, "path_expr": path_expr,
        "path_args": [(_local(p.name), _param_type(p)) for p in op.path_params],
        "params_name": params_name, "params_required": params_required,
        "params": [_param_view(p, op) for p in options_params],
        "returns": returns, "core": "events" if result.encoding == "sse" else _CORE_CALL[result.encoding],
        "event_name": pascal(op.id) + "Event" if result.encoding == "sse" else None,
        "events": [e for e in result.events if not e.error],
        "error_events": [e.name for e in result.events if e.error],
        "doc": doc_lines(op.summary, op.description, f"`{op.method} {op.path}`"),
        "waiter": waiter,
        "all_name": name + "All" if op.pagination else None,
        "item_type": ts_type(op.pagination.item) if op.pagination else None,
    }


def _param_type(p: Param) -> str:
    return ts_type(p.type)


def _param_view(p: Param, op: Operation) -> dict[str, Any]:
    idem = p.name == op.idempotency_header
    doc = p.description
    if idem:
        doc = (doc + "\n\n" if doc else "") + "Generated by the client when left out (one key for all retries)."
    return {"key": camel(p.name), "wire": p.name, "location": p.location, "type": _param_type(p),
            "optional": idem or not p.required, "doc": doc_lines(doc)}
