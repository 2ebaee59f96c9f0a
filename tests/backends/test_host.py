"""BackendHost loading: laziness, validation failures, BITNET_DISABLE_PLUGINS, describe()."""

from __future__ import annotations

import json

from bitnet_sdk.backends import BackendHost, BackendRegistry, hookimpl

from ._support import SpecPlugin, UnknownHookPlugin, fake_spec, make_host


class WrongArgument:
    @hookimpl
    def bitnet_register_backends(self, registry: BackendRegistry, extra: int) -> None:
        raise AssertionError("never called")


class Wrapper:
    @hookimpl(wrapper=True)
    def bitnet_register_backends(self, registry: BackendRegistry):  # type: ignore[no-untyped-def]
        return (yield)


class Empty:
    """A plugin with no hooks at all: registers nothing, and that is fine."""


def test_loading_is_lazy_and_happens_once() -> None:
    plugin = SpecPlugin(fake_spec("x"))
    host = make_host(plugin)
    assert plugin.register_calls == 0
    host.available()
    host.get("x")
    host.describe()
    assert plugin.register_calls == 1


def test_rejected_plugins_are_reported_and_skipped() -> None:
    good = SpecPlugin(fake_spec("ok"))
    host = make_host(UnknownHookPlugin(), WrongArgument(), Wrapper(), Empty(), good)
    assert host.get().name == "ok"
    errors = {e.plugin: e for e in host.load_errors}
    assert set(errors) == {"p0", "p1", "p2"}
    assert all(e.stage == "validate" for e in errors.values())
    assert "unknown hook 'bitnet_register_backendz'" in errors["p0"].error
    assert "extra" in errors["p1"].error
    assert "wrappers are not supported" in errors["p2"].error
    # Rejected plugins are gone from the manager; the empty one stays, without error.
    assert sorted(n for n, _ in host.plugin_manager.list_name_plugin()) == ["p3", "p4"]
    unavailable = {i.name for i in host.available() if not i.available}
    assert unavailable == {"p0", "p1", "p2"}


def test_disable_plugins_by_name() -> None:
    a, b = SpecPlugin(fake_spec("a")), SpecPlugin(fake_spec("b"))
    host = make_host(a, b, env={"BITNET_DISABLE_PLUGINS": " p0 , nothere,"})
    assert [i.name for i in host.available()] == ["b"]
    assert host.disabled == ["p0"] and a.register_calls == 0
    assert host.errors == []


def test_disable_all_skips_entry_points_but_not_explicit_plugins() -> None:
    host = BackendHost(
        plugins=[("mine", SpecPlugin(fake_spec("mine")))],
        environ={"BITNET_DISABLE_PLUGINS": "all"},
    )
    assert [i.name for i in host.available()] == ["mine"]
    assert "numpy" in host.disabled  # the bundled entry point was seen and skipped


def test_bundled_numpy_comes_from_its_entry_point() -> None:
    host = BackendHost(environ={})
    numpy_info = next(i for i in host.available() if i.name == "numpy")
    assert numpy_info.plugin == "numpy"
    assert (numpy_info.distribution or "").startswith("bitnet-sdk==")
    assert numpy_info.available and numpy_info.devices == ("cpu",)
    assert type(host.get("numpy")).__module__ == "bitnet_numpy.backend"


def test_describe_is_json_and_names_the_auto_pick() -> None:
    host = make_host(SpecPlugin(fake_spec("a", priority=2), fake_spec("g", devices=("gpu",))), UnknownHookPlugin())
    doc = json.loads(json.dumps(host.describe()))
    assert doc["auto"] == "a" and doc["auto_reason"] == "priority" and doc["auto_error"] is None
    assert [d["id"] for d in doc["devices"]] == ["cpu", "gpu"]
    assert [b["name"] for b in doc["backends"]] == ["a", "g", "p1"]
    assert doc["backends"][0]["capabilities"] == ["matmul", "prepare_weights"]
    assert doc["errors"][0]["plugin"] == "p1" and doc["errors"][0]["stage"] == "validate"
    assert host.describe("gpu")["auto"] == "g"
    nothing = host.describe("tpu")
    assert nothing["auto"] is None and "device 'tpu'" in nothing["auto_error"]
