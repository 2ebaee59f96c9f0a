"""The public surface of ``bitnet_sdk.backends``: locked ``__all__``, lazy default host."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bitnet_sdk import backends

EXPECTED_ALL = [
    "DISABLE_ENV", "ENTRY_POINT_GROUP", "OPTIONAL_OPS", "REQUIRED_OPS", "SELECT_ENV",
    "Backend", "BackendError", "BackendHost", "BackendInfo", "BackendNotFoundError",
    "BackendRegistry", "BackendSpec", "BackendUnavailableError", "DuplicateBackendError",
    "PluginError", "available", "cpu_only", "default_host", "describe", "get", "hookimpl",
    "new_host", "reset",
]


@pytest.fixture
def clean_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("BITNET_BACKEND", raising=False)
    monkeypatch.delenv("BITNET_DISABLE_PLUGINS", raising=False)
    backends.reset()
    yield
    backends.reset()


def test_all_is_locked() -> None:
    assert sorted(backends.__all__) == sorted(EXPECTED_ALL)
    assert all(hasattr(backends, name) for name in backends.__all__)


def test_importing_loads_no_plugin_and_creates_no_host() -> None:
    code = (
        "import sys, json, bitnet_sdk, bitnet_sdk.backends as b;"
        "print(json.dumps({'plugins': sorted(m for m in sys.modules if m.startswith("
        "('bitnet_numpy', 'bitnet_llvm', 'bitnet_mlx', 'bitnet_example'))),"
        " 'host': b._default is not None}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"plugins": [], "host": False}


def test_default_host_is_cached_and_reset_replaces_it(clean_default: None) -> None:
    first = backends.default_host()
    assert backends.default_host() is first
    backends.reset()
    assert backends.default_host() is not first
    assert backends.new_host() is not backends.default_host()


def test_module_functions_use_the_default_host(
    clean_default: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert backends.get("numpy").name == "numpy"
    assert "numpy" in [i.name for i in backends.available()]
    assert backends.describe()["backends"] == backends.default_host().describe()["backends"]
    monkeypatch.setenv("BITNET_DISABLE_PLUGINS", "numpy")
    assert "numpy" in [i.name for i in backends.available()]  # the cached host already loaded
    backends.reset()
    assert "numpy" not in [i.name for i in backends.available()]
    with pytest.raises(backends.BackendNotFoundError, match="disabled by BITNET_DISABLE_PLUGINS: numpy"):
        backends.get("numpy")
