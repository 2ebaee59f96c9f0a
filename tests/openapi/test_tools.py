"""The tools that consume the spec can read all of it.

openapi-python-client builds the Python SDK and schemathesis fuzzes the server; both
reject or skip constructs that spec validators accept (a ``$ref`` to a callback, an
unsatisfiable string pattern), so each is run over the whole document here.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from openapi_python_client.config import Config, ConfigFile, MetaType
from openapi_python_client.parser.errors import GeneratorError
from openapi_python_client.parser.openapi import GeneratorData

from ._support import GROUPS, SPEC_PATH, iter_operations, load_spec, snake_case

SPEC = load_spec()


def test_python_sdk_generator_parses_every_operation() -> None:
    config = Config.from_sources(ConfigFile(), MetaType.NONE, SPEC_PATH, "utf-8", False, None)
    data = GeneratorData.from_dict(load_spec(), config=config)
    assert not isinstance(data, GeneratorError), f"{data.header}\n{data.detail}"
    assert data.errors == []
    collections = data.endpoint_collections_by_tag
    assert set(collections) == GROUPS
    problems = [(tag, e.header, e.detail) for tag, c in collections.items() for e in c.parse_errors]
    assert not problems, problems
    generated = {e.name for c in collections.values() for e in c.endpoints}
    assert generated == {snake_case(o.operation_id) for o in iter_operations(SPEC)}


def test_enums_are_never_nullable() -> None:
    """A nullable enum becomes several duplicate enum classes in the generated SDK.

    Fields whose value is an enum are left out when they do not apply, never null.
    """
    nullable = [
        name
        for name, schema in SPEC["components"]["schemas"].items()
        for node in [schema, *schema.get("properties", {}).values()]
        if "enum" in node and (node.get("nullable") or None in node["enum"])
    ]
    assert not nullable, nullable


FUZZ_SCHEMA = schemathesis.openapi.from_dict(load_spec())


@pytest.mark.parametrize("operation", [o.name for o in iter_operations(SPEC)])
def test_fuzzer_can_generate_requests(operation: str) -> None:
    """schemathesis finds valid inputs for every operation (no unsatisfiable schema)."""
    method, path = operation.split(" ", 1)
    target = FUZZ_SCHEMA[path][method]

    @settings(
        max_examples=3,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(st.data())
    def generate(data: st.DataObject) -> None:
        case = data.draw(target.as_strategy())
        assert case.operation is target

    generate()
