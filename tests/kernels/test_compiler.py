"""Compile once: the on-disk object cache (keying, atomic writes, damage, second process)."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bitnet_kernels.compiler import CACHE_ENV, cache_dir, jit_module
from bitnet_kernels.elementwise import build_relu2
from bitnet_kernels.isa import ISAS, supported_isas
from llvmlite import ir


def _module(name: str = "bitnet_relu2") -> ir.Module:
    module = ir.Module(name="cache_test")
    build_relu2(module, ISAS["generic"], name)
    return module


def _relu2_works(jm: object) -> bool:
    fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)(
        jm.address("bitnet_relu2"))  # type: ignore[attr-defined]
    x = np.array([-2.0, 3.0, 0.5], np.float32)
    out = np.empty_like(x)
    fn(x.ctypes.data, out.ctypes.data, 0, 3)
    return out.tolist() == [0.0, 9.0, 0.25]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    return tmp_path / "kernels"


def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "bitnet_sdk" / "kernels"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine" / "kernels"


def test_cold_then_warm(cache: Path) -> None:
    isa = ISAS["generic"]
    cold = jit_module(_module(), isa)
    assert not cold.stats.cache_hit and cold.stats.path is not None and cold.stats.path.is_file()
    assert cold.stats.path.parent == cache
    assert [p.name for p in cache.iterdir()] == [cold.stats.path.name]  # no temporary left over
    warm = jit_module(_module(), isa)
    assert warm.stats.cache_hit and warm.stats.key == cold.stats.key
    assert _relu2_works(cold) and _relu2_works(warm)


def test_key_depends_on_ir_and_variant(cache: Path) -> None:
    a = jit_module(_module(), ISAS["generic"])
    b = jit_module(_module("bitnet_relu2_other"), ISAS["generic"])
    assert a.stats.key != b.stats.key
    if "avx2" in supported_isas():
        c = jit_module(_module(), ISAS["avx2"])
        assert c.stats.key != a.stats.key and not c.stats.cache_hit


def test_damaged_entry_is_recompiled_not_linked(cache: Path) -> None:
    first = jit_module(_module(), ISAS["generic"])
    path = first.stats.path
    assert path is not None
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    again = jit_module(_module(), ISAS["generic"])
    assert not again.stats.cache_hit and any("corrupt" in n for n in again.stats.notes)
    assert _relu2_works(again)
    assert jit_module(_module(), ISAS["generic"]).stats.cache_hit  # rewritten whole


def test_unwritable_cache_still_compiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(CACHE_ENV, str(blocker))
    jm = jit_module(_module(), ISAS["generic"])
    assert not jm.stats.cache_hit and any("write failed" in n for n in jm.stats.notes)
    assert _relu2_works(jm)


def test_second_process_starts_without_compiling(cache: Path) -> None:
    code = (
        "import json; from bitnet_kernels.library import KernelLibrary;"
        "lib = KernelLibrary('generic', 1); s = lib.compile_stats;"
        "print(json.dumps({'hit': s.cache_hit, 'seconds': s.seconds}))"
    )
    env = dict(os.environ)
    runs = [
        json.loads(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                  capture_output=True, text=True, timeout=300).stdout)
        for _ in range(2)
    ]  # fmt: skip
    assert [r["hit"] for r in runs] == [False, True]
    assert len(list(cache.glob("generic-*.o"))) == 1
