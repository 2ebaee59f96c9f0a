"""Device records and the ``describe()`` document against the API's ``Devices`` schema."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from openapi_schema_validator import OAS30Validator, validate

from bitnet_sdk.backends.devices import device_record

from ._support import SpecPlugin, UnknownHookPlugin, fake_spec, make_host

SPEC = Path(__file__).resolve().parents[2] / "openapi" / "bitnet.yaml"


def test_cpu_record_describes_this_machine() -> None:
    cpu = device_record("cpu")
    assert (cpu["id"], cpu["kind"], cpu["threads"]) == ("cpu", "cpu", os.cpu_count())
    assert cpu["name"] and (cpu["memory_bytes"] is None or cpu["memory_bytes"] > 0)
    cpu["name"] = "changed"
    assert device_record("cpu")["name"] != "changed"  # callers get copies


def test_other_devices_are_named_with_unknown_sizes() -> None:
    assert device_record("gpu") == {
        "id": "gpu", "name": "gpu", "kind": "gpu", "memory_bytes": None, "threads": None,
    }
    assert device_record("ane")["kind"] == "other"


def test_describe_matches_the_openapi_devices_schema() -> None:
    components = yaml.safe_load(SPEC.read_text(encoding="utf-8"))["components"]
    schema = {"$ref": "#/components/schemas/Devices", "components": components}
    host = make_host(
        SpecPlugin(fake_spec("a", priority=2), fake_spec("g", devices=("gpu",))), UnknownHookPlugin()
    )
    doc = host.describe()
    validate(doc, schema, cls=OAS30Validator)
    assert doc["auto"] == "a"
    assert [d["id"] for d in doc["devices"]] == ["cpu", "gpu"]
    assert doc["backends"][1]["devices"] == [device_record("gpu")]
    validate(make_host().describe(), schema, cls=OAS30Validator)  # nothing at all: auto is null
