"""Fuzzing: damaged files always give a report, never an exception or a hang.

Seeded and bounded (a few hundred cases, a few seconds): truncations at every
kind of boundary, bit flips in the header (where structure lives) and in the
tensor data, and random bytes behind a valid magic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bitnet_sdk.model.gguf_file import read_model
from bitnet_sdk.model.validate import validate
from bitnet_sdk.testing.synthetic import build_model, corrupt


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = build_model(tmp_path_factory.mktemp("fuzz") / "src.gguf", n_layers=1, vocab=300, qtype="tq2_0", scale_tensors=True)
    return path, read_model(path).data_offset


def check(path: Path) -> list[str]:
    report = validate(path)
    found = [p.code for p in report.problems]
    assert "internal_error" not in found, report.problems
    return found


def test_truncation_anywhere_is_reported(source: tuple[Path, int], tmp_path: Path) -> None:
    src, header = source
    size = src.stat().st_size
    rng = np.random.default_rng(1)
    cuts = {0, 1, 4, 8, 23, 24, header - 1, header, header + 1, size - 1}
    cuts |= {int(c) for c in rng.integers(0, header, 60)} | {int(c) for c in rng.integers(header, size, 40)}
    for cut in sorted(cuts):
        found = check(corrupt(src, tmp_path / "t.gguf", truncate_to=cut))
        assert found, f"truncation at {cut} of {size} went unnoticed"


@pytest.mark.parametrize("n_bits", [1, 2, 8])
def test_header_bit_flips_never_crash(source: tuple[Path, int], tmp_path: Path, n_bits: int) -> None:
    src, header = source
    for seed in range(60):
        check(corrupt(src, tmp_path / "f.gguf", flip_bits=n_bits, flip_range=(0, header), seed=seed))


def test_data_bit_flips_never_crash(source: tuple[Path, int], tmp_path: Path) -> None:
    src, header = source
    noticed = 0
    for seed in range(40):
        found = check(corrupt(src, tmp_path / "d.gguf", flip_bits=16, flip_range=(header, src.stat().st_size), seed=seed))
        noticed += bool(found)
    # flips that hit TQ2_0 codes (3 is invalid) or block scales are detected; most runs hit one
    assert noticed > 20


def test_random_bytes_after_a_valid_magic(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for i in range(40):
        body = rng.integers(0, 256, int(rng.integers(0, 4096)), dtype=np.uint8).tobytes()
        version = bytes([3, 0, 0, 0]) if i % 2 else bytes([2, 0, 0, 0])
        (tmp_path / "r.gguf").write_bytes(b"GGUF" + version + body)
        assert check(tmp_path / "r.gguf")
