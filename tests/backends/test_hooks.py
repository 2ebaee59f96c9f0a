"""Every hook: documented, in docs/plugins.md, and tested here (``test_hook_<name>``)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from bitnet_sdk.backends import BackendRegistry, hookspecs

from ._support import ChooserPlugin, ObserverPlugin, SpecPlugin, fake_spec, make_host

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"

HOOKS = sorted(
    name
    for name, fn in vars(hookspecs).items()
    if inspect.isfunction(fn) and hasattr(fn, f"{hookspecs.PROJECT_NAME}_spec")
)


def test_hookspecs_are_found() -> None:
    assert "bitnet_register_backends" in HOOKS and len(HOOKS) >= 3


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_documents_arguments_return_and_fallback(hook: str) -> None:
    fn = getattr(hookspecs, hook)
    doc = inspect.getdoc(fn) or ""
    for section in ("Arguments:", "Returns:", "Fallback:"):
        assert section in doc, f"{hook}: docstring lacks {section!r}"
    for arg in inspect.signature(fn).parameters:
        assert f"{arg}:" in doc, f"{hook}: argument {arg!r} is not documented"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook: str) -> None:
    assert callable(globals().get(f"test_hook_{hook}")), f"hook {hook} has no test_hook_{hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_in_the_plugin_docs(hook: str) -> None:
    assert f"`{hook}(" in DOCS.read_text(encoding="utf-8"), f"{hook} missing from docs/plugins.md"


# -- bitnet_register_backends -----------------------------------------------------


class _HalfWay(SpecPlugin):
    @hookspecs.hookimpl
    def bitnet_register_backends(self, registry: BackendRegistry) -> None:
        registry.add(self.specs[0])
        raise RuntimeError("boom after one add")


def test_hook_bitnet_register_backends() -> None:
    good = SpecPlugin(fake_spec("one"), fake_spec("two", priority=3))
    bad = _HalfWay(fake_spec("half"))
    dup = SpecPlugin(fake_spec("one"))
    # pluggy calls the last registered plugin first: good (p2), bad (p1), dup (p0).
    host = make_host(dup, bad, good)

    infos = {i.name: i for i in host.available()}
    assert {n for n, i in infos.items() if i.available} == {"one", "two"}
    assert "half" not in infos  # withdrawn: its plugin failed after adding it
    assert infos["two"].plugin == "p2" and infos["two"].priority == 3
    assert [(e.plugin, e.stage) for e in host.load_errors] == [("p1", "register"), ("p0", "register")]
    errors = {e.plugin: e.error for e in host.errors}
    assert "boom after one add" in errors["p1"]
    assert "DuplicateBackendError" in errors["p0"] and "'one'" in errors["p0"]
    # Plugins that registered nothing because they failed are listed, unavailable, with the cause.
    assert not infos["p1"].available and "boom after one add" in (infos["p1"].error or "")
    assert good.register_calls == 1
    host.available()
    assert good.register_calls == 1  # loading happens once per host


# -- bitnet_choose_backend --------------------------------------------------------


def test_hook_bitnet_choose_backend() -> None:
    specs = SpecPlugin(
        fake_spec("fast", priority=10, capabilities=("matmul_int",)),
        fake_spec("slow", priority=0, capabilities=("matmul_int",)),
        fake_spec("gpu", priority=99, devices=("gpu",)),
    )
    abstain, raising, bogus, picker = (
        ChooserPlugin(None), ChooserPlugin(RuntimeError("nope")),
        ChooserPlugin("gpu"), ChooserPlugin("slow"),
    )
    # Registered last is asked first: bogus, then raising, then abstain, then picker.
    host = make_host(specs, picker, abstain, raising, bogus)

    backend = host.get("auto", "cpu", op="matmul_int")
    assert backend.name == "slow"
    # Candidates: usable on cpu with the op, best first; gpu-only excluded.
    assert bogus.calls == raising.calls == abstain.calls == picker.calls == [
        ("matmul_int", "cpu", ["fast", "slow"])
    ]
    stages = [(e.plugin, e.stage) for e in host.errors]
    assert stages == [("p4", "choose"), ("p3", "choose")]
    assert "not one of" in host.errors[0].error and "nope" in host.errors[1].error

    # First non-None answer wins: the picker is not consulted when an earlier plugin answers.
    early = ChooserPlugin("fast")
    host2 = make_host(specs, picker, early)
    picker.calls.clear()
    assert host2.get().name == "fast" and picker.calls == []
    # Not called at all when a name decides.
    early.calls.clear()
    assert host2.get("slow").name == "slow" and early.calls == []


# -- bitnet_backend_selected ------------------------------------------------------


def test_hook_bitnet_backend_selected() -> None:
    specs = SpecPlugin(fake_spec("a", priority=1), fake_spec("b", priority=2))
    observer, broken = ObserverPlugin(), ObserverPlugin(fail=True)
    env: dict[str, str] = {}
    host = make_host(specs, observer, broken, env=env)

    first = host.get()
    again = host.get()
    explicit = host.get("a")
    env["BITNET_BACKEND"] = "a"
    from_env = host.get()

    assert first is again  # cached instance, still notified
    assert [(n, r) for _, n, r in observer.seen] == [
        ("b", "priority"), ("b", "priority"), ("a", "explicit"), ("a", "env"),
    ]
    assert [b for b, _, _ in observer.seen] == [first, again, explicit, from_env]
    # The raising observer is recorded each time and never breaks get().
    assert [(e.plugin, e.stage) for e in host.errors] == [("p2", "selected")] * 4
    assert host.load_errors == []
