"""Schema failures in words that never repeat the rejected input.

jsonschema's own messages quote the instance ("'hunter2…' is too long"); a
rejected value may be a 10 kB password or a secret pasted into the wrong field,
and the answer's ``detail`` and ``errors[]`` end up in the client's logs, ours
(Connexion logs every problem) and error trackers. So a failure is described by
its rule and the schema's values only (:func:`rule_in_words`), and a name the
client made up (an unknown field or query parameter) is shown only when it looks
like a parameter name (:func:`shown_name`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from jsonschema import ValidationError

__all__ = ["rule_in_words", "shown_name"]

_TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "a string",
               "boolean": "true or false", "object": "an object", "array": "an array",
               "null": "null"}


def rule_in_words(error: ValidationError) -> str:
    """What ``error``'s rule asks for, without the schema: "must be at most 100"."""
    rule, value = error.validator, error.validator_value
    schema = error.schema if isinstance(error.schema, dict) else {}
    if rule == "type":
        if error.instance is None:
            return "must not be null"
        kinds = value if isinstance(value, list) else [value]
        return "must be " + " or ".join(_TYPE_WORDS.get(str(k), str(k)) for k in kinds)
    if rule == "maximum":
        return f"must be {'less than' if schema.get('exclusiveMaximum') else 'at most'} {value}"
    if rule == "minimum":
        return f"must be {'more than' if schema.get('exclusiveMinimum') else 'at least'} {value}"
    words: dict[str, Callable[[], str]] = {
        "maxLength": lambda: f"must be at most {value} characters long",
        "minLength": lambda: f"must be at least {value} characters long",
        "pattern": lambda: f"must match the pattern {value}",
        "enum": lambda: "must be one of " + ", ".join(json.dumps(v) for v in value),
        "maxItems": lambda: f"must have at most {value} items",
        "minItems": lambda: f"must have at least {value} items",
        "uniqueItems": lambda: "must not hold the same item twice",
        "maxProperties": lambda: f"must have at most {value} members",
        "minProperties": lambda: f"must have at least {value} members",
        "multipleOf": lambda: f"must be a multiple of {value}",
        "format": lambda: f"must be a valid {value}",
        "oneOf": lambda: "must match exactly one of the allowed forms",
        "anyOf": lambda: "must match one of the allowed forms",
        "not": lambda: "is not allowed here",
        "required": lambda: "is required",
        "additionalProperties": lambda: "is not a known field here",
    }
    try:
        return words[str(rule)]()
    except (KeyError, TypeError):  # an unusual rule: its name (jsonschema's words quote the value)
        return f"does not satisfy the rule {rule}"


#: What a parameter name looks like in our specs (snake_case, dotted paths aside).
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


def shown_name(name: object) -> str:
    """``name`` when it looks like a parameter name (at most 40 identifier characters),
    else a placeholder: a name the client made up may be a value in the wrong place."""
    text = str(name)
    return text if _NAME.fullmatch(text) else "(unnamed)"
