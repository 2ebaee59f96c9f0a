"""The memory-mapped safetensors reader against the safetensors package's own reader."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from bitnet_sdk.quantization.errors import UnsupportedSourceError
from bitnet_sdk.quantization.sources.safetensors_io import SafetensorsFile, ShardedSafetensors


def _write_raw(path: Path, tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    """A safetensors file written by hand (for BF16, which numpy cannot produce)."""
    header, offset, blobs = {}, 0, []
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def test_matches_safe_open(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tensors = {
        "a": rng.standard_normal((3, 5)).astype(np.float32),
        "b": rng.standard_normal(7).astype(np.float16),
        "c": rng.integers(0, 255, (4, 2), dtype=np.uint8),
    }
    save_file(tensors, str(tmp_path / "m.safetensors"))
    ours = SafetensorsFile(tmp_path / "m.safetensors")
    with safe_open(str(tmp_path / "m.safetensors"), framework="np") as ref:
        assert sorted(ours.keys()) == sorted(ref.keys())
        for name in ref.keys():
            expected = ref.get_tensor(name)
            assert np.array_equal(ours.raw(name), expected)
            assert ours.meta(name).shape == expected.shape
            assert ours.meta(name).nbytes == expected.nbytes
            np.testing.assert_array_equal(ours.float32(name), expected.astype(np.float32))


def test_bf16_is_widened_exactly(tmp_path: Path) -> None:
    values = np.array([1.0, -2.5, 3.140625, 0.0, -1e-3], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2")
    _write_raw(tmp_path / "b.safetensors", {"w": ("BF16", [5], bf16.tobytes())})
    got = SafetensorsFile(tmp_path / "b.safetensors").float32("w")
    expected = (bf16.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.float32


def test_sharded_index(tmp_path: Path) -> None:
    save_file({"x": np.ones(2, np.float32)}, str(tmp_path / "s1.safetensors"))
    save_file({"y": np.zeros(3, np.float32)}, str(tmp_path / "s2.safetensors"))
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"x": "s1.safetensors", "y": "s2.safetensors"}})
    )
    store = ShardedSafetensors.from_dir(tmp_path)
    assert store is not None
    assert sorted(store) == ["x", "y"]
    assert store.meta("y").shape == (3,)
    assert store.nbytes_on_disk == sum(p.stat().st_size for p in tmp_path.glob("*.safetensors"))


def test_index_naming_a_missing_shard(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "gone.safetensors"}}))
    with pytest.raises(UnsupportedSourceError, match=r"missing shards"):
        ShardedSafetensors.from_dir(tmp_path)


@pytest.mark.parametrize("damage", ["short", "huge_header", "bad_json", "out_of_bounds", "bad_dtype"])
def test_damaged_files_are_refused(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "d.safetensors"
    if damage == "short":
        path.write_bytes(b"\x01\x00")
    elif damage == "huge_header":
        path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    elif damage == "bad_json":
        path.write_bytes(struct.pack("<Q", 4) + b"{no}")
    elif damage == "out_of_bounds":
        _write_raw(path, {"w": ("F32", [4], b"\0" * 16)})
        path.write_bytes(path.read_bytes()[:-8])
    else:
        _write_raw(path, {"w": ("F8_E4M3", [4], b"\0" * 4)})
    with pytest.raises(UnsupportedSourceError):
        SafetensorsFile(path)
