"""Run kernel objects built for another architecture under qemu user-mode emulation.

The kernels of a variant are compiled to a position-independent object for
the target triple, linked statically with ``data/kernel_harness.c`` by the
cross compiler, and run under ``qemu-<arch>``; the harness's binary output is
parsed back into arrays for the tests to compare with the numpy reference.

Tools come from Debian packages (``gcc-aarch64-linux-gnu``, ``qemu-user``).
When they are missing and we are root with ``apt-get``, they are installed;
otherwise the caller is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from bitnet_kernels.compiler import emit_object
from bitnet_kernels.isa import ISAS
from bitnet_kernels.layout import PackedTernary, pack_ternary
from bitnet_kernels.module import build_kernel_module

from bitnet_sdk.backends import ops
from bitnet_sdk.ternary import (
    TernaryTensor,
    quantize_activations,
    ternary_linear,
    ternary_matmul_int,
)

HARNESS = Path(__file__).parent / "data" / "kernel_harness.c"
#: Random cases (rows, k, tokens): tails of every kind, k not a multiple of 256,
#: more tokens than a register tile.
CASES = [(1, 1, 1), (7, 300, 3), (13, 513, 5), (64, 1024, 4), (37, 2000, 9)]
_OUTPUTS = ("packed", "pack_status", "xq", "a", "xsum", "gemv_i32", "gemm_i32", "gemv_f32", "gemm_f32",
            "rms_norm", "softmax", "silu", "relu2")  # fmt: skip


def ensure_tools(tools: dict[str, str]) -> None:
    """Make every ``tool`` (name -> Debian package) available, or skip the test."""
    missing = {t: pkg for t, pkg in tools.items() if shutil.which(t) is None}
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"needs {sorted(missing)} (Debian packages {sorted(set(missing.values()))}); "
                    "not root or no apt-get to install them")  # fmt: skip
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True, timeout=900)
        subprocess.run(["apt-get", "install", "-y", "-qq", *sorted(set(missing.values()))],
                       check=True, env=env, capture_output=True, timeout=900)  # fmt: skip
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"could not install {sorted(set(missing.values()))}: {exc}")
    still = [t for t in missing if shutil.which(t) is None]
    if still:
        pytest.skip(f"{still} still missing after installing their packages")


@dataclass(frozen=True)
class CrossTarget:
    """How to build and run for one architecture."""

    triple: str
    cc: str
    cc_package: str
    qemu: str
    sysroot: str

    def ensure(self) -> None:
        ensure_tools({self.cc: self.cc_package, self.qemu: "qemu-user"})


AARCH64 = CrossTarget(
    "aarch64-unknown-linux-gnu", "aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu",
    "qemu-aarch64", "/usr/aarch64-linux-gnu",
)  # fmt: skip
#: Same machine, other CPU models: runs the x86 variants on CPUs without AVX-512.
X86_64 = CrossTarget("x86_64-unknown-linux-gnu", "gcc", "gcc", "qemu-x86_64", "/")


def build_harness(isa_name: str, target: CrossTarget, workdir: Path) -> Path:
    """Compile the kernels of ``isa_name`` for ``target`` and link the harness; return the binary."""
    isa = ISAS[isa_name]
    obj = workdir / f"{isa_name}.o"
    obj.write_bytes(emit_object(build_kernel_module(isa), isa, target.triple))
    exe = workdir / f"harness_{isa_name}"
    subprocess.run([target.cc, "-O1", "-static", "-o", str(exe), str(HARNESS), str(obj), "-lm"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    return exe


def random_case(
    rng: np.random.Generator, rows: int, k: int, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(q, scale, x, norm_weight)`` with tokens of very different magnitudes."""
    q = rng.integers(-1, 2, size=(rows, k)).astype(np.int8)
    scale = rng.uniform(0.01, 2.0, rows).astype(np.float32)
    x = (rng.standard_normal((n, k)) * rng.uniform(0.1, 30.0, (n, 1))).astype(np.float32)
    return q, scale, x, rng.standard_normal(k).astype(np.float32)


def run_harness(
    exe: Path, target: CrossTarget, qemu_cpu: str, p: PackedTernary, x: np.ndarray,
    norm_weight: np.ndarray, n_padded: int, workdir: Path, q: np.ndarray,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Run the harness under ``qemu -cpu qemu_cpu``; return its outputs by name.

    ``p`` is ``q`` packed by the numpy reference; the harness multiplies with
    ``p`` and separately repacks ``q`` with the kernel (``packed``).
    """
    n, k = x.shape
    rows, rp, kp = p.rows, p.rows_padded, p.cols_padded
    header = np.array([rows, k, n, p.nblocks, rp, kp, n_padded], dtype=np.int64)
    src, dst = workdir / "in.bin", workdir / "out.bin"
    src.write_bytes(b"".join(a.tobytes() for a in (header, p.data, p.scale, x, norm_weight, q)))
    proc = subprocess.run([target.qemu, "-cpu", qemu_cpu, "-L", target.sysroot, str(exe), str(src), str(dst)],
                          capture_output=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, f"harness failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}"
    shapes = {
        "packed": (np.uint8, (rp * kp // 4,)), "pack_status": (np.int32, (1,)),
        "xq": (np.int8, (n_padded, kp)), "a": (np.float32, (n_padded,)),
        "xsum": (np.int32, (n_padded,)),
        **{name: (np.int32 if name.endswith("i32") else np.float32, (n, rows))
           for name in ("gemv_i32", "gemm_i32", "gemv_f32", "gemm_f32")},
        **{name: (np.float32, (n, k)) for name in ("rms_norm", "softmax", "silu", "relu2")},
    }  # fmt: skip
    blob, out, offset = dst.read_bytes(), {}, 0
    for name in _OUTPUTS:
        dtype, shape = shapes[name]
        count = int(np.prod(shape))
        out[name] = np.frombuffer(blob, dtype=dtype, count=count, offset=offset).reshape(shape)
        offset += count * np.dtype(dtype).itemsize
    assert offset == len(blob), f"harness wrote {len(blob)} bytes, expected {offset}"
    return out


def check_outputs(
    out: dict[str, np.ndarray], q: np.ndarray, scale: np.ndarray, x: np.ndarray, nw: np.ndarray, where: str
) -> None:
    """Harness outputs against the numpy reference: exact for integers and the float
    rescale, within float32 rounding for the element-wise ops (``rms_norm`` eps 1e-6)."""
    n, k = x.shape
    assert out["pack_status"][0] == 0, where
    np.testing.assert_array_equal(out["packed"], pack_ternary(q, scale).data, err_msg=where)
    xq, a = quantize_activations(x)
    np.testing.assert_array_equal(out["xq"][:n, :k], xq, err_msg=where)
    assert not out["xq"][:n, k:].any(), where
    np.testing.assert_array_equal(out["a"][:n], a, err_msg=where)
    np.testing.assert_array_equal(out["xsum"][:n], xq.sum(axis=1, dtype=np.int32), err_msg=where)
    acc = ternary_matmul_int(q, xq)
    np.testing.assert_array_equal(out["gemv_i32"], acc, err_msg=where)
    np.testing.assert_array_equal(out["gemm_i32"], acc, err_msg=where)
    y = ternary_linear(TernaryTensor(q, scale), x)
    np.testing.assert_array_equal(out["gemv_f32"], y, err_msg=where)
    np.testing.assert_array_equal(out["gemm_f32"], y, err_msg=where)
    np.testing.assert_allclose(out["rms_norm"], ops.rms_norm(x, nw, 1e-6), rtol=2e-6, atol=1e-6, err_msg=where)
    np.testing.assert_allclose(out["softmax"], ops.softmax(x), rtol=4e-6, atol=1e-30, err_msg=where)
    with np.errstate(over="ignore"):
        silu = ops.silu(x)
    np.testing.assert_allclose(out["silu"], silu, rtol=4e-6, atol=1e-30, err_msg=where)
    np.testing.assert_array_equal(out["relu2"], ops.relu2(x), err_msg=where)

