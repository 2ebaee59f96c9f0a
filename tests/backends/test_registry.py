"""BackendSpec validation and BackendRegistry: duplicates, scopes, rollback."""

from __future__ import annotations

import pytest

from bitnet_sdk.backends import (
    BackendError,
    BackendRegistry,
    BackendSpec,
    DuplicateBackendError,
    cpu_only,
)

from ._support import FakeBackend, fake_spec


@pytest.mark.parametrize("name", ["", "auto", "Upper", "has space", "-lead", 3])
def test_spec_rejects_bad_names(name: object) -> None:
    with pytest.raises(ValueError, match="backend name"):
        fake_spec(name)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factory": "not callable"}, "factory must be callable"),
        ({"devices": ["cpu"]}, "devices must be a callable probe"),
        ({"priority": True}, "priority must be an int"),
        ({"priority": 1.5}, "priority must be an int"),
        ({"capabilities": [1]}, "capabilities must be strings"),
    ],
)
def test_spec_rejects_bad_fields(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"name": "x", "factory": lambda d: FakeBackend(d, "x")}
    with pytest.raises(TypeError, match=message):
        BackendSpec(**{**base, **kwargs})  # type: ignore[arg-type]


def test_spec_normalises_capabilities_and_defaults() -> None:
    spec = BackendSpec(name="x.y_z-1", factory=lambda d: FakeBackend(d, "x"), capabilities=["a", "a"])
    assert spec.capabilities == frozenset({"a"})
    assert spec.devices is cpu_only and spec.devices() == ["cpu"]
    assert spec.priority == 0


def test_for_class_reads_the_backend_class() -> None:
    class Doc(FakeBackend):
        """First line is the description.

        Not this one.
        """

        name = "doc"

    spec = BackendSpec.for_class(Doc, priority=7, version="2")  # type: ignore[arg-type]
    assert (spec.name, spec.priority, spec.version) == ("doc", 7, "2")
    assert spec.capabilities == Doc.capabilities
    assert spec.description == "First line is the description."
    assert spec.factory is Doc


def test_duplicate_name_is_rejected_and_first_kept() -> None:
    reg = BackendRegistry()
    first, second = fake_spec("dup", priority=1), fake_spec("dup", priority=9)
    with reg.scope("alpha", "alpha-dist==1"):
        reg.add(first)
    with pytest.raises(DuplicateBackendError, match=r"'dup' from plugin 'beta'.*by plugin 'alpha'"):
        with reg.scope("beta", None):
            reg.add(second)
    assert reg.spec("dup") is first
    assert reg.owner("dup") == ("alpha", "alpha-dist==1")


def test_scope_rolls_back_everything_the_plugin_added() -> None:
    reg = BackendRegistry()
    with reg.scope("keep", None):
        reg.add(fake_spec("kept"))
    with pytest.raises(RuntimeError, match="half-way"):
        with reg.scope("bad", None):
            reg.add(fake_spec("a"))
            reg.add(fake_spec("b"))
            raise RuntimeError("half-way")
    assert reg.names() == ["kept"]
    assert [s.name for s in reg] == ["kept"] and len(reg) == 1 and "a" not in reg


def test_add_outside_a_scope_and_nested_scopes_are_rejected() -> None:
    reg = BackendRegistry()
    with pytest.raises(BackendError, match="only valid inside"):
        reg.add(fake_spec("x"))
    with reg.scope("outer", None):
        with pytest.raises(BackendError, match="already open"):
            with reg.scope("inner", None):
                pass


def test_add_rejects_non_specs() -> None:
    reg = BackendRegistry()
    with reg.scope("p", None), pytest.raises(TypeError, match="takes a BackendSpec"):
        reg.add({"name": "x"})  # type: ignore[arg-type]
