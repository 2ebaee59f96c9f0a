"""JSON from clients, parsed and validated with bounds: every malformed body is a 400.

Python's ``json`` is not a safe parser for untrusted input on its own: a body of
100,000 ``[`` raises ``RecursionError``, an integer of 5,000 digits raises a bare
``ValueError`` (the interpreter's int-conversion limit), ``NaN``/``Infinity`` are
accepted although they are not JSON, ``1e999`` becomes ``inf``, and a body nested
900 levels deep parses but then exhausts the stack in whatever walks it next
(schema validation, a handler, ``json.dumps``). Each of those reached clients as a
500. :func:`loads` closes the class: it bounds nesting before parsing (a linear scan,
no recursion), refuses non-JSON constants, non-finite numbers and oversized
integers, and reports every failure as :class:`JSONRejected` with a sentence a
client can act on. It is used for request bodies (:class:`GuardedJSONValidator`,
in place of Connexion's JSON validator) and WebSocket messages.

:class:`GuardedJSONValidator` also validates ``pattern`` with ECMA 262 semantics,
as JSON Schema prescribes: Python's ``$`` also matches before a final newline, so
``'^whsec_…$'`` admitted ``"whsec_…\\n"``, which the handler then refused (or
worse, stored). :data:`ParameterSchemaValidator` does the same for query, path and
header parameters (:mod:`bitnet_sdk.server.validation` uses both).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterator
from itertools import accumulate
from typing import Any

from connexion.json_schema import Draft4RequestValidator
from connexion.validators import JSONRequestBodyValidator
from jsonschema import Draft4Validator, ValidationError
from jsonschema.validators import extend

from bitnet_sdk.service.errors import ApiError

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "GuardedJSONValidator",
    "JSONRejected",
    "ParameterSchemaValidator",
    "loads",
    "request_validator",
]

#: Deepest nesting of arrays and objects accepted; the API's own schemas need under 10.
MAX_DEPTH = 64
#: Most digits in one JSON integer (a signed 64-bit integer has 19).
MAX_INT_DIGITS = 64

# A JSON string (escapes included), then any bracket: strings are removed before counting.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}


class JSONRejected(ValueError):
    """The text is not JSON this server accepts; ``str(exc)`` says why, for the client."""


def depth(text: str) -> int:
    """The deepest nesting of arrays/objects in ``text`` (strings skipped), in linear time."""
    brackets = _BRACKET.findall(_STRING.sub("", text))
    return max(accumulate(map(_DELTA.__getitem__, brackets)), default=0)


def _parse_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise JSONRejected(f"an integer has more than {MAX_INT_DIGITS} digits")
    return int(digits)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONRejected(f"the number {text[:32]!r} is out of range")
    return value


def _parse_constant(name: str) -> Any:
    raise JSONRejected(f"{name} is not a JSON value")


def loads(text: str | bytes) -> Any:
    """Parse ``text`` as JSON within this module's bounds; :class:`JSONRejected` otherwise."""
    if isinstance(text, bytes | bytearray):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONRejected(f"the body is not UTF-8 (byte {exc.start})") from None
    if depth(text) > MAX_DEPTH:
        raise JSONRejected(f"arrays and objects are nested more than {MAX_DEPTH} levels deep")
    try:
        return json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                          parse_constant=_parse_constant)
    except JSONRejected:
        raise
    except json.JSONDecodeError as exc:
        raise JSONRejected(f"not valid JSON: {exc.msg} at line {exc.lineno} column "
                           f"{exc.colno}") from None
    except (ValueError, RecursionError) as exc:  # belt and braces: never a 500
        raise JSONRejected(f"not valid JSON ({type(exc).__name__})") from None


# -- schema validation with ECMA 262 patterns --------------------------------------------


@functools.lru_cache(maxsize=512)
def _ecma(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled so that a final ``$`` means end of input, as in ECMA 262."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _ecma(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


#: Connexion's request validator (``nullable``, ``readOnly``) with ECMA 262 ``pattern``.
RequestValidator = extend(Draft4RequestValidator, {"pattern": _pattern})

#: Plain Draft 4 (as parameters are checked) with the ECMA 262 ``pattern``.
ParameterSchemaValidator = extend(Draft4Validator, {"pattern": _pattern})


def request_validator(schema: dict[str, Any]) -> Any:
    """A validator for client JSON against ``schema`` (formats checked), as bodies get."""
    return RequestValidator(schema, format_checker=Draft4Validator.FORMAT_CHECKER)


class GuardedJSONValidator(JSONRequestBodyValidator):
    """Connexion's JSON body validator, parsing with :func:`loads` and ECMA patterns."""

    @property
    def _validator(self) -> Any:
        return request_validator(self._schema)

    async def _parse(self, stream: Any, scope: Any) -> Any:
        raw = b"".join([chunk async for chunk in stream])
        if not raw:
            return None
        try:
            return loads(raw)
        except JSONRejected as exc:
            raise ApiError(400, "Bad Request", f"The request body was refused: {exc}.") from None
