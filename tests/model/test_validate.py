"""validate(): each kind of broken file is named precisely."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFValueType

from bitnet_sdk.model.gguf_file import read_model
from bitnet_sdk.model.validate import validate
from bitnet_sdk.testing.synthetic import build_model, corrupt

SMALL = {"n_layers": 1, "vocab": 300}


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("v") / "good.gguf", qtype="f32", **SMALL)


def codes(path: Path, **kw: object) -> list[tuple[str, str | None]]:
    report = validate(path, **kw)
    assert report.ok == (not report.problems)
    return [(p.code, p.tensor) for p in report.problems]


def tensor_info_offset(path: Path, name: str) -> tuple[int, int]:
    """(offset of the type field, number of dims) of ``name``'s tensor-info record."""
    data = path.read_bytes()
    key = struct.pack("<Q", len(name)) + name.encode()
    pos = data.index(key) + len(key)
    (n_dims,) = struct.unpack_from("<I", data, pos)
    return pos + 4 + 8 * n_dims, n_dims


def patch(src: Path, dst: Path, offset: int, new: bytes) -> Path:
    data = bytearray(src.read_bytes())
    data[offset : offset + len(new)] = new
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("qtype", ["tq2_0", "tq1_0", "i2_s", "f32", "f16"])
def test_valid_files_pass(tmp_path: Path, qtype: str) -> None:
    arch = "bitnet-25" if qtype == "i2_s" else "bitnet"
    report = validate(build_model(tmp_path / "m.gguf", qtype=qtype, arch=arch, scale_tensors=qtype == "tq1_0", **SMALL))
    assert report.ok, report.problems
    assert report.arch == arch and report.n_tensors > 0
    json.dumps(report.to_dict())


def test_unreadable_paths(tmp_path: Path) -> None:
    assert codes(tmp_path / "missing.gguf") == [("file_missing", None)]
    assert codes(tmp_path) == [("file_unreadable", None)]
    (tmp_path / "empty.gguf").write_bytes(b"")
    assert codes(tmp_path / "empty.gguf") == [("truncated_header", None)]


def test_container_problems(good: Path, tmp_path: Path) -> None:
    assert codes(patch(good, tmp_path / "magic", 0, b"GGML")) == [("bad_magic", None)]
    assert codes(patch(good, tmp_path / "v9", 4, struct.pack("<I", 9))) == [("unsupported_version", None)]
    assert codes(patch(good, tmp_path / "be", 4, struct.pack(">I", 3))) == [("big_endian", None)]
    assert codes(corrupt(good, tmp_path / "short", truncate_to=2000)) == [("truncated_header", None)]
    # a tensor count the file cannot hold is refused before parsing
    assert codes(patch(good, tmp_path / "count", 8, struct.pack("<Q", 10**9))) == [("truncated_header", None)]


def test_data_area_problems(good: Path, tmp_path: Path) -> None:
    size = good.stat().st_size
    cut = codes(corrupt(good, tmp_path / "cut", truncate_to=size - 100))
    assert cut[0][0] == "tensor_out_of_bounds"
    assert cut[0][1] == max(read_model(good).tensors.values(), key=lambda t: t.offset).name
    assert codes(corrupt(good, tmp_path / "tail", append=b"\xff" * 33)) == [("trailing_data", None)]
    type_at, _ = tensor_info_offset(good, "blk.0.ffn_up.weight")
    assert ("unknown_tensor_type", "blk.0.ffn_up.weight") in codes(patch(good, tmp_path / "t99", type_at, struct.pack("<I", 99)))
    # move a tensor onto its neighbour's data
    off_at = type_at + 4
    other = read_model(good).tensor_info("blk.0.ffn_gate.weight").offset - read_model(good).data_offset
    assert ("tensor_overlap", "blk.0.ffn_up.weight") in codes(patch(good, tmp_path / "ov", off_at, struct.pack("<Q", other))) or (
        "tensor_overlap", "blk.0.ffn_gate.weight") in codes(tmp_path / "ov")
    misaligned = codes(patch(good, tmp_path / "mis", off_at, struct.pack("<Q", other + 4)))
    assert ("tensor_misaligned", "blk.0.ffn_up.weight") in misaligned


def test_model_problems(tmp_path: Path) -> None:
    def build(name: str, **kw: object) -> list[tuple[str, str | None]]:
        return codes(build_model(tmp_path / name, qtype="f16", **{**SMALL, **kw}))

    assert build("arch", metadata_overrides={"general.architecture": "llama"}) == [("unknown_architecture", None)]
    assert ("missing_key", None) in build("nokey", metadata_overrides={"bitnet.block_count": None})
    assert ("bad_hparams", None) in build("heads", metadata_overrides={"bitnet.attention.head_count": (3, GGUFValueType.UINT32)})
    assert ("bad_hparams", None) in build("kv", metadata_overrides={"bitnet.attention.head_count_kv": (3, GGUFValueType.UINT32)})
    assert ("bad_key_type", None) in build("type", metadata_overrides={"bitnet.context_length": "long"})
    assert build("skip", skip_tensors={"blk.0.ffn_sub_norm.weight"}) == [("missing_tensor", "blk.0.ffn_sub_norm.weight")]
    shapes = build("ff", metadata_overrides={"bitnet.feed_forward_length": (768, GGUFValueType.UINT32)})
    assert {t for c, t in shapes if c == "tensor_shape"} == {
        "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight", "blk.0.ffn_sub_norm.weight"
    }


def test_tensor_type_and_name_problems(good: Path, tmp_path: Path) -> None:
    type_at, _ = tensor_info_offset(good, "blk.0.attn_norm.weight")
    i32 = patch(good, tmp_path / "i32", type_at, struct.pack("<I", 26))  # I32: same size as F32
    assert codes(i32) == [("tensor_type", "blk.0.attn_norm.weight")]
    data = good.read_bytes().replace(b"blk.0.attn_q.weight", b"blk.0.attn_x.weight", 1)
    (tmp_path / "renamed").write_bytes(data)
    assert sorted(codes(tmp_path / "renamed")) == [
        ("missing_tensor", "blk.0.attn_q.weight"), ("unexpected_tensor", "blk.0.attn_x.weight")
    ]


def test_data_problems(good: Path, tmp_path: Path) -> None:
    mf = read_model(good)
    q = mf.tensor_info("blk.0.attn_k.weight")
    bad = patch(good, tmp_path / "nt", q.offset + 4 * 300, np.float32(0.123).tobytes())
    assert codes(bad) == [("not_ternary", "blk.0.attn_k.weight")]
    assert validate(bad).problems[0].message.startswith("row 1 ")  # 300 // 256 columns
    assert codes(bad, check_data=False) == []
    norm = mf.tensor_info("blk.0.ffn_norm.weight")
    assert codes(patch(good, tmp_path / "nan", norm.offset + 8, np.float32(np.nan).tobytes())) == [
        ("non_finite", "blk.0.ffn_norm.weight")
    ]


def test_vocabulary_problems(tmp_path: Path) -> None:
    def build(name: str, **kw: object) -> list[tuple[str, str | None]]:
        return codes(build_model(tmp_path / name, qtype="f16", **{**SMALL, **kw}))

    assert build("notok", metadata_overrides={"tokenizer.ggml.model": None}) == [("missing_tokenizer", None)]
    assert build("bert", metadata_overrides={"tokenizer.ggml.model": "bert"}) == [("bad_tokenizer", None)]
    assert build("bos", metadata_overrides={"tokenizer.ggml.bos_token_id": (5000, GGUFValueType.UINT32)}) == [("bad_token_id", None)]
    assert build("size", metadata_overrides={"bitnet.vocab_size": (301, GGUFValueType.UINT32)}) == [("vocab_mismatch", None)]
    assert build("pre", metadata_overrides={"tokenizer.ggml.pre": "qwen9"}) == [("bad_tokenizer", None)]
    types = build("types", metadata_overrides={"tokenizer.ggml.token_type": [1, 1, 1]})
    assert types == [("bad_tokenizer", None)]
