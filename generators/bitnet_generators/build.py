"""A spec → the :class:`~bitnet_generators.ir.Api` every generator renders.

One pass collects every problem (unsupported OpenAPI version, server URL,
security scheme, schema or operation construct) and raises them together as a
:class:`~bitnet_generators.errors.SpecError`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from bitnet_generators.errors import ProblemCollector, pointer
from bitnet_generators.ir import Api, Auth, Operation
from bitnet_generators.operations import OperationBuilder
from bitnet_generators.schemas import SchemaConverter
from bitnet_generators.spec import Spec

__all__ = ["build_api"]


def build_api(spec: Spec) -> Api:
    """Check and convert ``spec``; raises :class:`SpecError` listing every problem found."""
    problems = ProblemCollector(source=spec.name)
    tree = spec.tree
    version = str(tree.get("openapi", ""))
    if not re.fullmatch(r"3\.0\.\d+", version):
        problems.add("#/openapi", f"OpenAPI {version or '(missing)'} is not supported; write 3.0.x")
    raw_info = tree.get("info")
    info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
    converter = SchemaConverter(spec, problems)
    if isinstance(tree.get("components", {}).get("schemas"), dict):
        converter.convert_components()
    schemes = _security_schemes(tree, problems)
    builder = OperationBuilder(converter, problems, schemes)
    operations = builder.build_all()
    base_path = _base_path(tree, problems)
    auth = _auth(tree, schemes, operations, base_path, problems)
    problem_type = None
    if len(builder.problem_refs) > 1:
        for ref, at in sorted(builder.problem_refs.items())[1:]:
            problems.add(at, f"problem+json responses use several schemas ({ref}); use one")
    elif builder.problem_refs:
        ref = next(iter(builder.problem_refs))
        problem_type = converter.component(ref.rsplit("/", 1)[-1]).name
    problems.raise_if_any()
    return Api(
        title=str(info.get("title") or "API"), version=str(info.get("version") or "0"),
        description=str(info.get("description") or "").strip(), base_path=base_path,
        spec_name=spec.name, spec_sha256=spec.sha256,
        types=tuple(converter.types[k] for k in sorted(converter.types)),
        operations=tuple(operations), auth=auth, problem_type=problem_type,
        license=_license(tree), extras={"tree": tree},
    )


def _base_path(tree: dict[str, Any], problems: ProblemCollector) -> str:
    """The path every operation's path is appended to (from the first server URL)."""
    servers = tree.get("servers") or []
    if not servers:
        return ""
    url = str((servers[0] or {}).get("url") or "")
    if "{" in url:
        problems.add("#/servers/0/url", "server URL variables are not supported")
        return ""
    return urlsplit(url).path.rstrip("/")


def _license(tree: dict[str, Any]) -> str | None:
    """``info.license.name`` (an SPDX identifier for package metadata), when given."""
    info = tree.get("info")
    licence = info.get("license") if isinstance(info, dict) else None
    name = licence.get("name") if isinstance(licence, dict) else None
    return str(name) if name else None


def _security_schemes(tree: dict[str, Any], problems: ProblemCollector) -> dict[str, str]:
    """Supported schemes by name: ``bearer`` (OAuth2 or HTTP bearer) or ``apikey:<header>``."""
    out: dict[str, str] = {}
    raw = (tree.get("components") or {}).get("securitySchemes") or {}
    for name in sorted(raw):
        scheme = raw[name] or {}
        at = pointer("components", "securitySchemes", name)
        kind = scheme.get("type")
        if kind == "oauth2" or (kind == "http" and str(scheme.get("scheme", "")).lower() == "bearer"):
            out[name] = "bearer"
        elif kind == "apiKey" and scheme.get("in") == "header":
            out[name] = "apikey:" + str(scheme.get("name"))
        else:
            problems.add(at, f"security scheme {kind!r} ({scheme.get('in') or scheme.get('scheme') or ''}) is "
                             "not supported: use OAuth2, HTTP bearer or an API key in a header")
    return out


def _auth(tree: dict[str, Any], schemes: dict[str, str], operations: list[Operation], base_path: str,
          problems: ProblemCollector) -> Auth:
    api_keys = sorted({v.split(":", 1)[1] for v in schemes.values() if v.startswith("apikey:")})
    if len(api_keys) > 1:
        problems.add("#/components/securitySchemes", f"several API key headers {api_keys}; use one")
    token_path = refresh_path = None
    raw = (tree.get("components") or {}).get("securitySchemes") or {}
    for name in sorted(raw):
        scheme = raw[name] or {}
        password = (scheme.get("flows") or {}).get("password") or {}
        at = pointer("components", "securitySchemes", name, "flows", "password")
        if password.get("tokenUrl"):
            token_path = _operation_path(password["tokenUrl"], operations, base_path, f"{at}/tokenUrl", problems)
        if password.get("refreshUrl"):
            refresh_path = _operation_path(password["refreshUrl"], operations, base_path,
                                           f"{at}/refreshUrl", problems)
        if scheme.get("x-refreshUrl"):  # an HTTP bearer scheme names its refresh endpoint so
            refresh_path = _operation_path(scheme["x-refreshUrl"], operations, base_path,
                                           pointer("components", "securitySchemes", name, "x-refreshUrl"), problems)
    return Auth(bearer="bearer" in schemes.values(), api_key_header=api_keys[0] if api_keys else None,
                token_path=token_path, refresh_path=refresh_path)


def _operation_path(url: str, operations: list[Operation], base_path: str, at: str,
                    problems: ProblemCollector) -> str | None:
    path = urlsplit(url).path
    if base_path and path.startswith(base_path + "/"):
        path = path[len(base_path):]
    if not any(op.path == path and op.method == "POST" for op in operations):
        problems.add(at, f"{url} matches no POST operation of this spec")
        return None
    return path
