"""Validation failures as one problem shape: ``errors[]`` naming each input and its rule in words.

Connexion's validators say what failed as one string, and for path, query and header
parameters that string is jsonschema's dump of the schema ("Failed validating 'maximum' in
schema: {…}"). The validators here run the same checks and raise a 400 problem
(:func:`validation_problem`) whose ``errors[]`` hold one ``FieldError`` per broken rule:
``field`` (parameter name, or dotted path into the body), ``location`` (path, query,
header, body), ``rule`` (the schema keyword, or ``unknown`` for an undeclared parameter)
and ``message`` (the rule in words). Used through :data:`VALIDATOR_MAP` by every API.

No part of an answer (``detail``, ``errors[]``) or of a log line repeats what the client
sent, only the schema's words (:mod:`bitnet_sdk.server.schema_words`): a rejected value may
be a password or a secret pasted into the wrong field.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.lifecycle import ConnexionRequest
from connexion.utils import is_null, is_nullable
from connexion.validators import VALIDATOR_MAP as CONNEXION_VALIDATORS
from connexion.validators import ParameterValidator
from jsonschema import Draft4Validator, ValidationError

from bitnet_sdk.server.json_body import GuardedJSONValidator, ParameterSchemaValidator
from bitnet_sdk.server.multipart import ClosingMultiPartValidator
from bitnet_sdk.server.schema_words import rule_in_words, shown_name
from bitnet_sdk.service.errors import ApiError

__all__ = ["VALIDATOR_MAP", "field_errors", "rule_in_words", "validation_problem"]

#: Most errors reported for one request (a huge invalid body must not make a huge answer).
MAX_ERRORS = 20


def field_errors(errors: Iterable[ValidationError], location: str,
                 name: str | None = None) -> list[dict[str, str]]:
    """``FieldError`` dicts for jsonschema ``errors`` of an input at ``location``.

    ``name``: the parameter's name (parameters); bodies are named by the dotted path
    into them (``body`` for the whole body).
    """
    out: list[dict[str, str]] = []
    for error in errors:
        path = [name] if name else [shown_name(p) if isinstance(p, str) else str(p)
                                    for p in error.absolute_path]
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [p for p in error.validator_value or [] if p not in error.instance]
            out += [_entry([*path, p], location, "required", "is required") for p in missing]
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = set((error.schema or {}).get("properties") or {})
            extra = [p for p in error.instance if p not in known]
            out += [_entry([*path, shown_name(p)], location, "additionalProperties",
                           rule_in_words(error)) for p in extra]
        else:
            out.append(_entry(path, location, str(error.validator), rule_in_words(error)))
    return out[:MAX_ERRORS]


def _entry(path: list[str], location: str, rule: str, message: str) -> dict[str, str]:
    return {"field": ".".join(path) or "body", "location": location, "rule": rule,
            "message": message}


def validation_problem(errors: list[dict[str, str]]) -> ApiError:
    """The 400 problem for ``errors`` (``detail`` sums them up in one line)."""
    summary = "; ".join(f"{e['field']} ({e['location']}) {e['message']}" for e in errors[:5])
    more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
    return ApiError(400, "Bad Request", f"Invalid request: {summary}{more}.",
                    slug="validation", errors=errors)


class FieldParameterValidator(ParameterValidator):
    """Connexion's parameter checks; every failure of every parameter in ``errors[]``."""

    def validate_request(self, request: ConnexionRequest) -> None:
        errors: list[dict[str, str]] = []
        if self.strict_validation:
            extra = self.validate_query_parameter_list(
                request, security_params=self.security_query_params)
            errors += [{"field": shown_name(name), "location": "query", "rule": "unknown",
                        "message": "is not a parameter of this operation"}
                       for name in sorted(extra)]
        sources = {
            "query": lambda p: request.query_params.get(p["name"]),
            "path": lambda p: request.path_params.get(p["name"].replace("-", "_")),
            "header": lambda p: request.headers.get(p["name"]),
            "cookie": lambda p: request.cookies.get(p["name"]),
        }
        for location, value_of in sources.items():
            for param in self.parameters.get(location, []):
                errors += _parameter_errors(param, value_of(param), location)
        if errors:
            raise validation_problem(errors[:MAX_ERRORS])


def _parameter_errors(param: dict[str, Any], value: Any, location: str) -> list[dict[str, str]]:
    name = str(param["name"])
    if is_nullable(param) and is_null(value):
        return []
    if value is None:
        if param.get("required"):
            return [{"field": name, "location": location, "rule": "required",
                     "message": "is required"}]
        return []
    schema = copy.deepcopy(param.get("schema", param))
    validator = ParameterSchemaValidator(schema, format_checker=Draft4Validator.FORMAT_CHECKER)
    return field_errors(validator.iter_errors(value), location, name)


class FieldJSONBodyValidator(GuardedJSONValidator):
    """The bounded JSON body checks (:mod:`bitnet_sdk.server.json_body`: depth, integer size,
    ECMA patterns); every failure (up to :data:`MAX_ERRORS`) in ``errors[]``."""

    async def _parse(self, stream: Any, scope: Any) -> Any:
        try:
            return await super()._parse(stream, scope)
        except ApiError as exc:  # not JSON at all
            raise validation_problem([{"field": "body", "location": "body", "rule": "json",
                                       "message": f"is not valid JSON ({exc.detail})"}]) from None

    def _validate(self, body: Any) -> dict[str, Any] | None:
        if not self._nullable and body is None:
            raise validation_problem([{"field": "body", "location": "body", "rule": "required",
                                       "message": "is required (the body is empty)"}])
        errors = sorted(self._validator.iter_errors(body),
                        key=lambda e: [str(p) for p in e.absolute_path])
        if errors:
            raise validation_problem(field_errors(errors, "body"))
        return None


class FieldMultiPartValidator(ClosingMultiPartValidator):
    """The multipart form checks (file parts closed, see ``multipart``) with ``errors[]``."""

    def _validate(self, body: Any) -> dict[str, Any] | None:
        if not isinstance(body, dict):
            raise validation_problem([{"field": "body", "location": "body", "rule": "type",
                                       "message": "must be a form"}])
        errors = field_errors(self._validator.iter_errors(body), "body")
        if self._strict_validation:
            known, named = self._schema.get("properties", {}), {e["field"] for e in errors}
            errors += [{"field": shown_name(str(k)), "location": "body", "rule": "unknown",
                        "message": "is not a field of this form"}
                       for k in body if k not in known and str(k) not in named]
        if errors:
            raise validation_problem(errors[:MAX_ERRORS])
        return None


#: ``validator_map`` for every API's ``add_api`` (the native and the OpenAI-compatible one):
#: Connexion's validators, with JSON bodies parsed within bounds, ECMA patterns, multipart
#: file parts closed, and every failure in ``errors[]``.
VALIDATOR_MAP: dict[str, Any] = {
    "parameter": FieldParameterValidator,
    "body": MediaTypeDict({**CONNEXION_VALIDATORS["body"], "*/*json": FieldJSONBodyValidator,
                           "multipart/form-data": FieldMultiPartValidator}),
}
