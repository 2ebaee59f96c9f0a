"""Nothing half-written: cancellation, failures and invalid outputs leave the destination as it
was; and peak memory stays near one tensor."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from bitnet_sdk.quantization.errors import Cancelled, OutputInvalidError, QuantizationCancelled
from bitnet_sdk.quantization.pipeline import quantize
from bitnet_sdk.testing.synthetic import build_model
from tests.quantization._support import build_hf_checkpoint, build_onnx_mlp


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in ("src", "old.gguf"))


@pytest.fixture
def src(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    return build_model(tmp_path / "src" / "m.gguf", qtype="tq2_0", seed=2)


@pytest.mark.parametrize("how", ["return_false", "raise_cancelled"])
@pytest.mark.parametrize("at", [0, 3, "validate", "measure"])
def test_cancellation_leaves_nothing(tmp_path: Path, src: Path, how: str, at: int | str) -> None:
    old = tmp_path / "old.gguf"
    old.write_bytes(b"previous contents")
    seen: list[tuple[int, int, str]] = []

    def progress(done: int, total: int, stage: str) -> bool | None:
        seen.append((done, total, stage))
        if done == at or stage == at:
            if how == "raise_cancelled":
                raise Cancelled
            return False
        return None

    with pytest.raises(QuantizationCancelled):
        quantize(src, old, "tq1_0", progress=progress, backend="numpy")
    assert old.read_bytes() == b"previous contents"
    assert _leftovers(tmp_path) == []
    assert seen[-1][0] == at or seen[-1][2] == at


def test_progress_counts_every_step(tmp_path: Path, src: Path) -> None:
    seen: list[tuple[int, int, str]] = []
    quantize(src, tmp_path / "out.gguf", "i2_s", progress=lambda d, t, s: seen.append((d, t, s)), backend="numpy")
    total = seen[0][1]
    assert [d for d, _, _ in seen] == list(range(total + 1))
    assert all(t == total for _, t, _ in seen)
    assert seen[-2][2] == "validate" and seen[-1][2] == "measure"
    assert "blk.1.ffn_down.weight" in {s for _, _, s in seen}


def test_an_exception_in_the_callback_propagates_after_cleanup(tmp_path: Path, src: Path) -> None:
    def progress(done: int, total: int, stage: str) -> None:
        if done == 5:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        quantize(src, tmp_path / "out.gguf", progress=progress, backend="numpy")
    assert _leftovers(tmp_path) == []


def test_an_output_failing_validation_is_not_published(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    # the source's tokenizer names a pre-tokenizer nobody implements: copied, then caught
    src = build_model(tmp_path / "src" / "m.gguf", qtype="f32", metadata_overrides={"tokenizer.ggml.pre": "mystery"})
    with pytest.raises(OutputInvalidError, match=r"mystery") as exc:
        quantize(src, tmp_path / "out.gguf", backend="numpy")
    assert [p.code for p in exc.value.problems] == ["bad_tokenizer"]
    assert _leftovers(tmp_path) == []


def test_failing_dense_source_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    onnx_path = tmp_path / "src" / "m.onnx"
    build_onnx_mlp(onnx_path)
    calls = []
    with pytest.raises(QuantizationCancelled):
        quantize(onnx_path, tmp_path / "m.gguf", progress=lambda d, t, s: calls.append(s) or d < 2, backend="numpy")
    assert _leftovers(tmp_path) == []


def test_peak_memory_stays_near_one_tensor(tmp_path: Path) -> None:
    """tracemalloc sees every numpy buffer; the memory-mapped source is not allocated."""
    weights = build_hf_checkpoint(
        tmp_path / "hf", hidden_size=256, intermediate_size=2048, num_attention_heads=4,
        num_key_value_heads=4, num_hidden_layers=4, vocab_size=320,
    )
    largest = max(w.nbytes for w in weights.values())  # float32 bytes of the largest tensor
    total = sum(w.nbytes for w in weights.values())
    assert total > 12 * largest
    tracemalloc.start()
    try:
        quantize(tmp_path / "hf", tmp_path / "out.gguf", "tq2_0", backend="numpy")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * largest, (peak, largest, total)
