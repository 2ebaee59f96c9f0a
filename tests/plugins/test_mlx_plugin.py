"""``bitnet_mlx`` as a plugin: discovery through the real entry point, devices, priority,
and behaviour on machines without MLX (which must never break the host)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

import bitnet_sdk.backends as backends
from bitnet_sdk.backends import BackendHost, BackendUnavailableError

HAVE_MLX = importlib.util.find_spec("mlx") is not None
needs_mlx = pytest.mark.skipif(not HAVE_MLX, reason="the mlx package is not installed (pip install '.[mlx]')")


@pytest.fixture
def fresh_default_host() -> Iterator[None]:
    backends.reset()
    yield
    backends.reset()


def _metal() -> bool:
    import mlx.core as mx

    return bool(mx.metal.is_available())


@needs_mlx
def test_default_host_lists_mlx_with_cpu(fresh_default_host: None) -> None:
    import bitnet_mlx

    (info,) = [i for i in backends.available() if i.name == "mlx"]
    assert info.available and info.error is None
    assert info.plugin == "mlx" and info.distribution and info.distribution.startswith("bitnet-sdk==")
    assert "cpu" in info.devices
    assert list(info.devices) == (["gpu", "cpu"] if _metal() else ["cpu"])
    assert set(info.capabilities) == set(bitnet_mlx.CAPABILITIES)
    assert info.priority == bitnet_mlx.PRIORITY
    backend = backends.get("mlx")
    assert backend.name == "mlx" and backend.device == "cpu"
    assert type(backend).__module__ == "bitnet_mlx.backend"


@needs_mlx
def test_priority_is_between_numpy_and_llvm() -> None:
    host = BackendHost()
    prio = {i.name: i.priority for i in host.available()}
    assert prio["numpy"] < prio["mlx"]
    if "llvm" in prio:
        assert prio["mlx"] < prio["llvm"]  # llvm is the fast CPU path
    # Without llvm, auto on the CPU picks mlx over the numpy reference.
    alone = BackendHost(environ={"BITNET_DISABLE_PLUGINS": "llvm"})
    assert alone.get().name == "mlx"


@needs_mlx
def test_env_selection_and_gpu_device() -> None:
    host = BackendHost(environ={"BITNET_BACKEND": "mlx"})
    assert host.get().name == "mlx"
    if _metal():
        assert host.get("auto", device="gpu").device == "gpu"
    else:
        with pytest.raises(BackendUnavailableError, match=r"'mlx' does not run on 'gpu'"):
            host.get("mlx", device="gpu")


@needs_mlx
def test_broken_mlx_shows_as_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed but not importable: listed, unavailable, with the import error; others still work."""
    monkeypatch.setitem(sys.modules, "mlx.core", None)
    host = BackendHost(environ={"BITNET_DISABLE_PLUGINS": "llvm"})
    (info,) = [i for i in host.available() if i.name == "mlx"]
    assert not info.available and "mlx.core" in (info.error or "")
    assert host.get().name == "numpy"


# Runs with and without mlx: hides mlx in a child interpreter.
_WITHOUT_MLX = """
import json, sys
sys.modules["mlx"] = None
sys.modules["mlx.core"] = None
import bitnet_mlx
from bitnet_sdk.backends import BackendHost
host = BackendHost(environ={"BITNET_DISABLE_PLUGINS": "llvm"})
print(json.dumps({
    "names": [i.name for i in host.available()],
    "errors": [str(e) for e in host.errors],
    "auto": host.get().name,
    "installed": bitnet_mlx.mlx_installed(),
}))
"""


def test_without_mlx_the_plugin_imports_and_registers_nothing() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_MLX], capture_output=True, text=True, check=True, timeout=120
    )
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc == {"names": ["numpy"], "errors": [], "auto": "numpy", "installed": False}
