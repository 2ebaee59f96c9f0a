"""The ``llvm`` backend plugin: registration, selection, configuration and the Backend contract."""

from __future__ import annotations

import numpy as np
import pytest
from bitnet_kernels import ISA_ENV, THREADS_ENV, PackedTernary, supported_isas
from bitnet_llvm import PRIORITY, LlvmBackend

from bitnet_sdk.backends import BackendHost, BackendUnavailableError, ops
from bitnet_sdk.ternary import (
    TernaryTensor,
    quantize_activations,
    quantize_weights,
    ternary_linear,
    ternary_matmul_int,
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITNET_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "llvm-cache"))
    monkeypatch.delenv(ISA_ENV, raising=False)
    monkeypatch.delenv(THREADS_ENV, raising=False)


def test_registered_by_entry_point_and_chosen_automatically() -> None:
    host = BackendHost(environ={})
    info = host.info("llvm")
    assert info is not None and info.available and info.devices == ("cpu",)
    assert info.priority == PRIORITY > host.info("numpy").priority  # type: ignore[union-attr]
    assert {"matmul_int", "quantize_activations", "rms_norm", "softmax"} <= set(info.capabilities)
    backend = host.get()
    assert isinstance(backend, LlvmBackend)
    assert backend.variant == supported_isas()[0]


def test_a_bad_isa_variable_makes_it_unavailable_and_auto_passes_it_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ISA_ENV, "sse9")
    host = BackendHost(environ={})
    info = host.info("llvm")
    assert info is not None and not info.available and "sse9" in (info.error or "")
    assert host.get().name != "llvm"  # the next best usable backend


def test_variant_and_threads_are_forceable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LlvmBackend(isa="generic", num_threads=1).variant == "generic"
    monkeypatch.setenv(ISA_ENV, "generic")
    monkeypatch.setenv(THREADS_ENV, "3")
    backend = LlvmBackend()
    assert backend.variant == "generic" and backend.num_threads == 3
    assert "variant='generic'" in repr(backend)


def test_only_the_cpu_device() -> None:
    with pytest.raises(BackendUnavailableError, match="cpu"):
        LlvmBackend("gpu")


@pytest.fixture(scope="module")
def backend() -> LlvmBackend:
    return LlvmBackend()


def test_backend_contract_matches_the_reference(backend: LlvmBackend) -> None:
    rng = np.random.default_rng(11)
    t = quantize_weights(rng.standard_normal((45, 700)).astype(np.float32))
    w = backend.prepare_weights(t)
    assert isinstance(w, PackedTernary) and w.shape == t.shape
    for n in (1, 2, 9):
        x = (rng.standard_normal((n, 700)) * 4).astype(np.float32)
        xq, a = backend.quantize_activations(x)
        ref_q, ref_a = quantize_activations(x)
        np.testing.assert_array_equal(xq, ref_q)
        np.testing.assert_array_equal(a, ref_a)
        np.testing.assert_array_equal(backend.matmul_int(w, xq), ternary_matmul_int(t.q, xq))
        np.testing.assert_array_equal(backend.matmul(w, x), ternary_linear(t, x))


def test_prepare_weights_wants_a_ternary_tensor(backend: LlvmBackend) -> None:
    with pytest.raises(TypeError, match="TernaryTensor"):
        backend.prepare_weights(np.zeros((2, 2), np.int8))  # type: ignore[arg-type]
    p = backend.prepare_weights(TernaryTensor.from_scalar(np.eye(3, dtype=np.int8), 0.5))
    np.testing.assert_array_equal(backend.matmul_int(p, np.eye(3, dtype=np.int8)), np.eye(3))


def test_layer_ops_match_the_reference(backend: LlvmBackend) -> None:
    rng = np.random.default_rng(12)
    x = (rng.standard_normal((3, 4, 96)) * 5).astype(np.float32)
    w = rng.standard_normal(96).astype(np.float32)
    np.testing.assert_allclose(backend.rms_norm(x, w, 1e-6), ops.rms_norm(x, w, 1e-6), rtol=3e-6, atol=1e-7)
    for axis in (-1, 2, 0, 1):
        np.testing.assert_allclose(backend.softmax(x, axis), ops.softmax(x, axis), rtol=5e-6, atol=1e-35)
    np.testing.assert_allclose(backend.silu(x), ops.silu(x), rtol=5e-6, atol=1e-37)
    np.testing.assert_array_equal(backend.relu2(x), ops.relu2(x))



def test_the_head_stays_in_the_files_float16(tmp_path) -> None:
    from bitnet_kernels import HeadMatrix

    from bitnet_sdk.model.loader import load
    from bitnet_sdk.testing.synthetic import build_model

    path = build_model(tmp_path / "m.gguf", qtype="tq2_0")  # token embedding stored F16
    model = load(path, backend=LlvmBackend())
    head = model.weights.output
    assert isinstance(head, HeadMatrix) and head.kind == "f16"
    assert head.data.base is not None and not head.data.flags.writeable  # a view of the map
    assert model.weights.token_embd.dtype == np.float16
    ids = np.arange(20)
    ours = model.forward(ids)
    numpy_logits = load(path, backend="numpy").forward(ids)
    np.testing.assert_allclose(ours, numpy_logits, rtol=0, atol=1e-4 * np.abs(numpy_logits).max())


def test_int8_head_is_opt_in_and_close(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bitnet_sdk.model.loader import load
    from bitnet_sdk.testing.parity import build_conditioned_model

    assert LlvmBackend().head_kind == "native"
    monkeypatch.setenv("BITNET_LLVM_HEAD", "int8")
    assert LlvmBackend().head_kind == "int8"
    monkeypatch.setenv("BITNET_LLVM_HEAD", "int4")
    with pytest.raises(BackendUnavailableError, match="int4"):
        LlvmBackend()
    path = build_conditioned_model(tmp_path / "c.gguf", qtype="tq2_0", n_layers=2, d_model=256,
                                   n_heads=4, n_kv_heads=2, d_ff=512, seed=7)  # fmt: skip
    ids = np.random.default_rng(5).integers(0, 512, 200)
    f16 = load(path, backend=LlvmBackend(head="native")).forward(ids)
    i8 = load(path, backend=LlvmBackend(head="int8")).forward(ids)
    err = np.abs(f16 - i8).max(axis=1) / (f16.max(axis=1) - f16.min(axis=1))
    assert err.max() <= 0.02  # the documented bound (docs/benchmarks.md: output head)
    assert np.mean(f16.argmax(1) == i8.argmax(1)) >= 0.95
