"""examples/backend_plugin, installed by pip into a temp dir, found from its entry point.

pip builds the example with setuptools. When ``wheel`` (or setuptools >= 70.1,
which ships ``bdist_wheel``) is installed, the build runs offline in this
environment; otherwise pip fetches the build backend from the package index
into an isolated build environment.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import setuptools

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "backend_plugin"

PROBE = """
import json
import numpy as np
from bitnet_sdk import backends
from bitnet_sdk.ternary import TernaryTensor, quantize_activations, ternary_linear, ternary_matmul_int

host = backends.new_host()
rng = np.random.default_rng(3)
t = TernaryTensor(rng.integers(-1, 2, (9, 37), dtype=np.int8), rng.uniform(0.1, 2, 9).astype(np.float32))
x = rng.standard_normal((2, 37)).astype(np.float32)
named = host.get("example")
w = named.prepare_weights(t)
xq, _ = quantize_activations(x)
info = {i.name: i.to_dict() for i in host.available()}
print(json.dumps({
    "info": info.get("example"),
    "auto": host.get().name,
    "named": [named.name, type(named).__module__],
    "int_exact": bool(np.array_equal(named.matmul_int(w, xq), ternary_matmul_int(t.q, xq))),
    "matmul_exact": bool(np.array_equal(named.matmul(w, x), ternary_linear(t, x))),
    "calls": dict(named.calls),
    "errors": [str(e) for e in host.errors],
}))
"""


def _offline_build() -> bool:
    version = tuple(int(p) for p in setuptools.__version__.split(".")[:2])
    return importlib.util.find_spec("wheel") is not None or version >= (70, 1)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``--target`` directory holding bitnet-example-backend and its dist-info."""
    root = tmp_path_factory.mktemp("example")
    src, target = root / "src", root / "site"
    shutil.copytree(EXAMPLE, src)  # pip builds in-tree: keep the repo clean
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    if _offline_build():
        cmd += ["--no-build-isolation", "--no-index"]
    subprocess.run([*cmd, str(src)], check=True, capture_output=True, text=True, timeout=300)
    assert (target / "bitnet_example_backend" / "backend.py").is_file()
    return target


def _probe(site: Path, **env: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BITNET_")}
    environ.update(env, PYTHONPATH=os.pathsep.join([str(site), environ.get("PYTHONPATH", "")]))
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=environ, capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout)


@pytest.mark.slow
def test_discovered_from_entry_point_and_selected_by_name(installed: Path) -> None:
    doc = _probe(installed, BITNET_DISABLE_PLUGINS="llvm,mlx")
    info = doc["info"]
    assert isinstance(info, dict)
    assert info["plugin"] == "example" and info["distribution"] == "bitnet-example-backend==0.1.0"
    assert info["available"] and info["priority"] == -10
    assert doc["named"] == ["example", "bitnet_example_backend.backend"]
    assert doc["auto"] == "numpy"  # priority -10: never the automatic choice
    assert doc["int_exact"] and doc["matmul_exact"]
    assert doc["calls"] == {"prepare_weights": 1, "matmul_int": 2, "matmul": 1}
    assert doc["errors"] == []


@pytest.mark.slow
def test_selected_by_env_and_disabled_by_env(installed: Path) -> None:
    assert _probe(installed, BITNET_BACKEND="example")["auto"] == "example"
    with pytest.raises(subprocess.CalledProcessError) as exc:
        _probe(installed, BITNET_DISABLE_PLUGINS="example")
    assert "disabled by BITNET_DISABLE_PLUGINS: example" in exc.value.stderr
