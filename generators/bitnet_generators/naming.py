"""Identifiers for each target language, derived from spec names.

Every name is split into words the same way (case changes, digits and any
non-alphanumeric separator), then joined by the language's convention. Go keeps
the usual initialisms upper-case (``model_id`` → ``ModelID``), as ``golint``
asks.
"""

from __future__ import annotations

import re

__all__ = [
    "GO_KEYWORDS",
    "TS_RESERVED",
    "camel",
    "go_exported",
    "go_local",
    "pascal",
    "snake",
    "ts_property",
    "words",
]

_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")

#: Initialisms Go code writes upper-case (golint's list, plus a few of this API's).
GO_INITIALISMS = frozenset(
    "acl api ascii cpu css dns eof gpu guid html http https id ip json jwt npu qps ram rpc sha "
    "sql sse ssh tcp tls ttl udp ui uid uri url utf8 uuid xml".split()
)

GO_KEYWORDS = frozenset(
    "break case chan const continue default defer else fallthrough for func go goto if import "
    "interface map package range return select struct switch type var "
    # predeclared names a parameter must not shadow, and the generated methods' own names
    "any bool byte error false int nil string true ctx c body params opts req resp err".split()
)

TS_RESERVED = frozenset(
    "break case catch class const continue debugger default delete do else enum export extends "
    "false finally for function if import in instanceof new null return super switch this throw "
    "true try typeof var void while with yield let static implements interface package private "
    "protected public await body params options".split()
)

_TS_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


def words(name: str) -> list[str]:
    """``"listApiKeys"`` → ``["list", "Api", "Keys"]``; ``"X-Content-SHA256"`` → ``["X", "Content", "SHA", "256"]``."""
    return _WORD.findall(name)


def pascal(name: str) -> str:
    """``"api_key_id"`` → ``"ApiKeyId"`` (type names in TypeScript, Python classes)."""
    return "".join(w[:1].upper() + w[1:].lower() if w.isupper() else w[:1].upper() + w[1:] for w in words(name))


def camel(name: str) -> str:
    """``"Idempotency-Key"`` → ``"idempotencyKey"`` (TypeScript methods and arguments)."""
    p = pascal(name)
    head = re.match(r"[A-Z][a-z0-9]*", p)
    if head is None:
        return p
    return head.group(0).lower() + p[head.end():]


def snake(name: str) -> str:
    """``"listApiKeys"`` → ``"list_api_keys"``."""
    return "_".join(w.lower() for w in words(name))


def go_exported(name: str) -> str:
    """``"api_key_id"`` → ``"APIKeyID"``; ``"ModelQType"`` → ``"ModelQType"``."""
    parts = []
    for w in words(name):
        lower = w.lower()
        parts.append(lower.upper() if lower in GO_INITIALISMS else w[:1].upper() + w[1:].lower()
                     if w.isupper() else w[:1].upper() + w[1:])
    return "".join(parts)


def go_local(name: str) -> str:
    """An unexported Go identifier: ``"model_id"`` → ``"modelID"``; keywords get a ``_`` suffix."""
    ws = words(name)
    if not ws:
        return "_"
    first = ws[0].lower()
    rest = go_exported("_".join(ws[1:])) if len(ws) > 1 else ""
    ident = first + rest
    return ident + "_" if ident in GO_KEYWORDS else ident


def ts_property(name: str) -> str:
    """A property key as written in a TypeScript interface (quoted when not an identifier)."""
    return name if _TS_IDENT.match(name) else '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
