"""Real entry-point discovery with small distributions written to a temp dir on sys.path.

Each test writes ``<dist>.dist-info`` (METADATA + entry_points.txt) and a
plugin module: exactly what pip leaves behind, without running pip.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bitnet_sdk.backends import BackendHost, BackendNotFoundError

WriteDist = Callable[[str, str, str], str]

GOOD_PLUGIN = """
from bitnet_numpy import NumpyBackend
from bitnet_sdk.backends import BackendSpec, hookimpl

class Tagged(NumpyBackend):
    name = "{backend}"

@hookimpl
def bitnet_register_backends(registry):
    registry.add(BackendSpec.for_class(Tagged, priority=5, version="9.9"))
"""


@pytest.fixture
def write_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteDist]:
    """``write_dist(entry_point_name, module_source, backend_name) -> module name``."""
    modules: list[str] = []
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(ep_name: str, source: str, backend: str = "") -> str:
        module = f"bitnet_testplug_{ep_name}_{len(modules)}_{tmp_path.name}".replace("-", "_")
        twins = sum(m.startswith(f"bitnet_testplug_{ep_name}_") for m in modules)
        dist = f"test-plugin-{ep_name}" + (f"-{twins}" if twins else "")
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source.format(backend=backend)))
        info = tmp_path / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[bitnet_sdk.backends]\n{ep_name} = {module}\n")
        modules.append(module)
        return module

    yield write
    for module in modules:
        sys.modules.pop(module, None)


def _host(**env: str) -> BackendHost:
    return BackendHost(environ={"BITNET_DISABLE_PLUGINS": "llvm,mlx", **env})


def test_third_party_plugin_is_discovered_and_attributed(write_dist: WriteDist) -> None:
    write_dist("tagged", GOOD_PLUGIN, "tagged")
    host = _host()
    (info,) = [i for i in host.available() if i.name == "tagged"]
    assert (info.plugin, info.distribution, info.version) == ("tagged", "test-plugin-tagged==1.0", "9.9")
    assert host.get().name == "tagged"  # priority 5 beats numpy's 0
    assert host.errors == []


def test_plugin_raising_on_import_is_reported_and_skipped(write_dist: WriteDist) -> None:
    write_dist("broken", "raise ImportError('needs libfoo.so')\n")
    write_dist("tagged", GOOD_PLUGIN, "tagged")
    host = _host()
    (err,) = host.load_errors
    assert (err.plugin, err.stage, err.distribution) == ("broken", "import", "test-plugin-broken==1.0")
    assert "needs libfoo.so" in err.error
    names = {i.name: i for i in host.available()}
    assert names["tagged"].available and names["numpy"].available
    assert not names["broken"].available and "needs libfoo.so" in (names["broken"].error or "")
    with pytest.raises(BackendNotFoundError, match=r"'broken' did not load: .*needs libfoo\.so.*numpy \(cpu\)"):
        host.get("broken")
    with pytest.raises(BackendNotFoundError, match=r"'broken' \(from BITNET_BACKEND\) did not load"):
        _host(BITNET_BACKEND="broken").get()


def test_plugin_raising_in_its_hook_is_reported_and_skipped(write_dist: WriteDist) -> None:
    write_dist("angry", """
        from bitnet_sdk.backends import hookimpl

        @hookimpl
        def bitnet_register_backends(registry):
            raise RuntimeError("probe of my GPU crashed")
    """)
    host = _host()
    assert [(e.plugin, e.stage) for e in host.errors] == [("angry", "register")]
    assert host.get().name == "numpy"


def test_plugin_that_registers_nothing_is_fine(write_dist: WriteDist) -> None:
    write_dist("quiet", "VALUE = 1\n")
    host = _host()
    assert host.errors == [] and "quiet" in dict(host.plugin_manager.list_name_plugin())
    assert "quiet" not in [i.name for i in host.available()]


def test_disabled_entry_point_is_not_even_imported(write_dist: WriteDist) -> None:
    module = write_dist("bomb", "raise SystemExit('must not be imported')\n")
    write_dist("tagged", GOOD_PLUGIN, "tagged")
    host = BackendHost(environ={"BITNET_DISABLE_PLUGINS": "bomb,tagged,llvm,mlx"})
    assert [i.name for i in host.available()] == ["numpy"]
    assert {"bomb", "tagged"} <= set(host.disabled) and host.errors == []
    assert module not in sys.modules


def test_two_entry_points_with_one_name(write_dist: WriteDist) -> None:
    write_dist("twin", GOOD_PLUGIN, "twin-a")
    write_dist("twin", GOOD_PLUGIN, "twin-b")
    host = _host()
    twins = [i.name for i in host.available() if i.name.startswith("twin")]
    assert len(twins) == 1
    (err,) = host.errors
    assert err.plugin == "twin" and "already loaded" in err.error
