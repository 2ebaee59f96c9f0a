"""The Go SDK: structs, ``context.Context`` everywhere, standard library only.

Mirrors ``templates/go/`` one-to-one: ``go.mod`` (module path configurable),
``README.md``, ``doc.go``, ``models.go`` (structs, string enums with constants,
tagged unions with their JSON methods), ``operations.go`` (one method per
operation, ``...All`` iterators, ``WaitFor...`` job waiters), and the
hand-written ``runtime/*.go`` files copied into the package. Output is run
through ``gofmt`` when Go is installed (it always is where the SDK is built).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from bitnet_generators.errors import ProblemCollector
from bitnet_generators.ir import Api, Field, NamedType, Operation, Param, TypeRef
from bitnet_generators.naming import go_exported, go_local
from bitnet_generators.render import environment, provenance, static_files

__all__ = ["GoOptions", "go_type", "render", "type_kinds"]

log = logging.getLogger(__name__)

RUNTIME_NAMES = frozenset({"Client", "Option", "Tokens", "RetryPolicy", "NoRetry", "DefaultRetryPolicy",
                           "APIError", "ProblemField", "ErrTimeout", "ErrWaitTimeout", "File", "EventStream",
                           "WaitOptions", "NewClient", "Ptr", "WithToken", "WithAPIKey", "WithRefreshToken",
                           "WithOnTokens", "WithHTTPClient", "WithTimeout", "WithRetry", "WithHeader"})
_IMPORTS = {"context": "context", "fmt": "fmt", "io": "io", "iter": "iter", "json": "encoding/json",
            "time": "time", "errors": "errors", "strings": "strings", "sha256": "crypto/sha256",
            "hex": "encoding/hex"}
#: Operations the resumable-upload helper (``resumable.go``) is built on.
_RESUMABLE_OPS = frozenset({"UploadModelPiece", "GetModelUpload"})
_BODY_SUFFIX = {"json": "JSON", "multipart": "Multipart", "form": "Form", "binary": "Raw"}


@dataclass(frozen=True)
class GoOptions:
    module: str = "example.com/bitnet"
    package: str = "bitnet"


def _base(ref: TypeRef) -> str:
    if ref.kind == "string":
        return "time.Time" if ref.format == "date-time" else "string"
    if ref.kind == "integer":
        return {"int64": "int64", "int32": "int32"}.get(ref.format or "", "int")
    if ref.kind == "number":
        return "float64"
    if ref.kind == "boolean":
        return "bool"
    if ref.kind == "binary":
        return "File"
    if ref.kind == "object":
        return "json.RawMessage"
    if ref.kind == "any":
        return "any"
    if ref.kind == "named":
        return go_exported(str(ref.name))
    assert ref.item is not None
    elem = _base(ref.item) if not ref.item.nullable or ref.item.kind in ("array", "map", "any", "object") \
        else "*" + _base(ref.item)
    return ("[]" if ref.kind == "array" else "map[string]") + elem


def go_type(ref: TypeRef, *, required: bool, kinds: dict[str, str]) -> str:
    """The Go type of a field or parameter: pointers for optional or nullable scalars and structs.

    ``kinds`` maps named types to ``object``, ``enum``, ``union`` (tagged: a struct),
    ``rawunion`` (untagged, of objects only: a struct keeping the JSON, with ``As<Type>``
    methods) or ``anyunion`` (any other untagged union: ``any``).
    """
    base = _base(ref)
    if ref.kind == "named":
        kind = kinds.get(str(ref.name), "object")
        pointable = kind in ("object", "union", "rawunion") or (kind == "enum" and ref.nullable)
    else:
        pointable = ref.kind in ("string", "integer", "number", "boolean")
    if pointable and (ref.nullable or not required):
        return "*" + base
    return base


def type_kinds(api: Api) -> dict[str, str]:
    """What :func:`go_type` needs to know about each named type."""
    objects = {t.name for t in api.types if t.kind == "object" and t.additional is None}
    return {t.name: _union_kind(t, objects) if t.kind == "union" else t.kind for t in api.types}


def _union_kind(t: NamedType, objects: set[str]) -> str:
    if t.discriminator:
        return "union"
    if all(v.type.kind == "named" and v.type.name in objects and not v.type.nullable for v in t.variants):
        return "rawunion"
    return "anyunion"


def render(api: Api, options: GoOptions | None = None) -> dict[str, str]:
    """Every file of the SDK, by relative path."""
    options = options or GoOptions()
    kinds = type_kinds(api)
    problems = ProblemCollector(source=api.spec_name)
    gen = _Go(api, kinds, problems)
    types = [gen.type_view(t) for t in api.types]
    ops = [gen.op_view(op) for op in api.operations]
    gen.check_names(types, ops)
    problems.raise_if_any()
    header = provenance(api)
    env = environment("go")
    env.filters.update(go_comment=_comment, go_doc=lambda text: _comment(text).rstrip("\n"), quote=_quote)
    context = {"api": api, "types": types, "ops": ops, "options": options, "header": header,
               "websocket_path": next(iter((api.extras.get("tree") or {}).get("x-websockets") or {}), None)}
    files = {}
    resumable = _RESUMABLE_OPS <= {view["name"] for view in ops}
    for rel in ("go.mod", "README.md", "doc.go", "models.go", "operations.go",
                *(("resumable.go",) if resumable else ())):
        text = env.get_template(rel + ".j2").render(context)
        files[rel] = _add_imports(text) if rel.endswith(".go") else text
    for name, text in static_files("go").items():
        body = re.sub(r"\Apackage \w+\n", f"package {options.package}\n", text)
        files[name] = f"// {header}\n\n{body}"
    return _gofmt(files)


class _Go:
    """View models for the Go templates; records problems found on the way."""

    def __init__(self, api: Api, kinds: dict[str, str], problems: ProblemCollector) -> None:
        self.api, self.kinds, self.problems = api, kinds, problems

    def t(self, ref: TypeRef, required: bool = True) -> str:
        return go_type(ref, required=required, kinds=self.kinds)

    def type_view(self, t: NamedType) -> dict[str, Any]:
        name = go_exported(t.name)
        view: dict[str, Any] = {"t": t, "name": name, "doc": t.description}
        if t.kind == "object":
            if t.additional is not None:
                view["map_of"] = self.t(t.additional)
            view["fields"] = [self._field(f, t) for f in t.fields]
        elif t.kind == "enum":
            view["base"] = "string" if t.enum_base == "string" else "int"
            view["consts"] = [(name + _const_suffix(v.value), _quote(v.value) if isinstance(v.value, str)
                               else str(v.value)) for v in t.values]
        elif t.discriminator:
            view["variants"] = [{"field": go_exported(v.tag or ""), "tag": v.tag, "type": self.t(v.type)}
                                for v in t.variants]
        else:
            view["options"] = [self.t(v.type) for v in t.variants]
            view["raw"] = self.kinds.get(t.name) == "rawunion"
        return view

    def _field(self, f: Field, owner: NamedType) -> dict[str, Any]:
        name = go_exported(f.name)
        if not re.match(r"^[A-Z]", name):
            self.problems.add(owner.pointer, f"property {f.name!r} gives no valid Go field name")
        omit = "" if f.required else ",omitempty"
        return {"name": name, "type": self.t(f.type, f.required), "tag": f'`json:"{f.name}{omit}"`',
                "doc": f.description}

    def _param(self, p: Param, op: Operation) -> dict[str, Any]:
        idem = p.name == op.idempotency_header
        required = p.required and not idem
        typ = "string" if idem else self.t(p.type, required)
        doc = p.description + ("\n\nLeft empty, the client generates one (the same for every retry)." if idem else "")
        return {"name": go_exported(p.name), "wire": p.name, "type": typ, "location": p.location,
                "doc": doc.strip()}

    def op_view(self, op: Operation) -> dict[str, Any]:
        name = go_exported(op.id)
        path_args = [(go_local(p.name), self.t(p.type)) for p in op.path_params]
        parts = re.split(r"{([^}]+)}", op.path)
        locals_ = {p.name: go_local(p.name) for p in op.path_params}
        path_expr = " + ".join(_quote(s) if i % 2 == 0 else f"pathSegment({locals_[s]})"
                               for i, s in enumerate(parts) if s or i % 2)
        result = op.result
        view: dict[str, Any] = {
            "op": op, "name": name, "path_args": path_args, "path_expr": path_expr or '""',
            "params_name": name + "Params" if op.option_params else None,
            "params": [self._param(p, op) for p in op.option_params],
            "doc": _method_doc(name, op), "encoding": result.encoding,
        }
        if result.encoding == "json" and result.type is not None:
            out = self.t(result.type)
            view["out"], view["out_ptr"] = out, out == go_exported(str(result.type.name)) and \
                self.kinds.get(str(result.type.name)) == "object"
        if result.encoding == "sse":
            view["event_name"] = name + "Event"
            view["events"] = [{"name": e.name, "field": go_exported(e.name), "type": _base(e.type)}
                              for e in result.events if not e.error]
            view["error_events"] = [e.name for e in result.events if e.error]
            for e in result.events:
                if not e.error and (e.type.kind != "named" or self.kinds.get(str(e.type.name)) != "object"):
                    self.problems.add(op.pointer, f"event {e.name!r} must have an object schema for Go")
        view["variants"] = self._variants(op, name)
        view["pagination"] = self._pagination(op)
        if op.waiter:
            stem = op.id[3:] if op.id.startswith("get") and len(op.id) > 3 else op.id
            view["waiter"] = {"name": "WaitFor" + go_exported(stem), "terminal": list(op.waiter.terminal),
                              "field": go_exported(op.waiter.status_field)}
        return view

    def _variants(self, op: Operation, name: str) -> list[dict[str, Any]]:
        variants: list[dict[str, Any]] = []
        for i, body in enumerate(op.bodies or (None,)):
            if body is None:
                variants.append({"name": name, "body": None})
                continue
            if body.encoding == "binary":
                arg = "io.Reader"
            else:
                arg = self.t(body.type, body.required)
            variants.append({"name": name + ("" if i == 0 else _BODY_SUFFIX[body.encoding]), "body": body,
                             "arg": arg, "optional": arg.startswith("*")})
        return variants

    def _pagination(self, op: Operation) -> dict[str, Any] | None:
        pg = op.pagination
        if pg is None or op.result.type is None:
            return None
        page = self.api.type(str(op.result.type.name))
        nxt = next(f for f in page.fields if f.name == pg.next_field)
        cursor = next(p for p in op.params if p.name == pg.cursor_param)
        if self.t(cursor.type, cursor.required) != "*string":
            self.problems.add(op.pointer, "the cursor parameter must be an optional string")
        next_type = self.t(nxt.type, nxt.required)
        next_expr = "page." + go_exported(nxt.name)
        if next_type == "string":
            next_expr = "&" + next_expr
        elif next_type != "*string":
            self.problems.add(op.pointer, f"'{pg.next_field}' must be a string")
        return {"name": go_exported(op.id) + "All", "item": self.t(pg.item), "items_field": go_exported(pg.items_field),
                "next": next_expr, "cursor": go_exported(pg.cursor_param)}

    def check_names(self, types: list[dict[str, Any]], ops: list[dict[str, Any]]) -> None:
        seen: dict[str, str] = {}
        for view in types:
            self._claim(seen, view["name"], view["t"].pointer)
            for const, _ in view.get("consts", []):
                self._claim(seen, const, view["t"].pointer)
        for view in ops:
            for extra in (view.get("params_name"), view.get("event_name")):
                if extra:
                    self._claim(seen, extra, view["op"].pointer)

    def _claim(self, seen: dict[str, str], name: str, where: str) -> None:
        if name in RUNTIME_NAMES:
            self.problems.add(where, f"Go name {name!r} clashes with the runtime")
        elif name in seen and seen[name] != where:
            self.problems.add(where, f"Go name {name!r} is also declared for {seen[name]}")
        seen[name] = where


def _const_suffix(value: str | int) -> str:
    if isinstance(value, int):
        return ("Minus" if value < 0 else "") + str(abs(value))
    return go_exported(value) or "Empty"


def _method_doc(name: str, op: Operation) -> str:
    head = f"{name} sends {op.method} {op.path}"
    head += f": {op.summary.rstrip('.')}." if op.summary else "."
    return "\n\n".join(filter(None, [head, op.description]))


def _quote(value: object) -> str:
    """A Go interpreted string literal."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{text}"'


def _comment(text: str, indent: str = "") -> str:
    """``text`` as ``//`` comment lines (empty string for no text)."""
    if not text:
        return ""
    return "".join(f"{indent}//{' ' + line if line.strip() else ''}\n" for line in text.strip().splitlines())


def _add_imports(text: str) -> str:
    """Fill the ``// imports`` marker with the packages the code (outside comments) uses."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
    used = sorted({_IMPORTS[m] for m in re.findall(r"\b(" + "|".join(_IMPORTS) + r")\.[A-Z]", code)})
    block = "import (\n" + "".join(f'\t"{p}"\n' for p in used) + ")\n" if used else ""
    return text.replace("// imports\n", block, 1)


def _gofmt(files: dict[str, str]) -> dict[str, str]:
    gofmt = shutil.which("gofmt")
    if gofmt is None:
        log.warning("gofmt not found: the Go SDK is written unformatted (it still builds)")
        return files
    out = {}
    for rel, text in files.items():
        if not rel.endswith(".go"):
            out[rel] = text
            continue
        done = subprocess.run([gofmt], input=text.encode(), capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"gofmt rejected generated {rel}:\n{done.stderr.decode()}")
        out[rel] = done.stdout.decode()
    return out
