"""The format dispatch in ``bitnet_sdk.formats``: names, type ids, sizes, pack/unpack routing."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from bitnet_sdk import formats
from bitnet_sdk.formats import i2_s, tq1_0, tq2_0
from bitnet_sdk.ternary import TernaryTensor

from ._support import assert_tensors_equal, random_ternary


@pytest.mark.parametrize(
    ("names", "type_id", "module"),
    [
        (("tq2_0", "TQ2_0", gguf.GGMLQuantizationType.TQ2_0), 35, tq2_0),
        (("tq1_0", " Tq1_0 ", gguf.GGMLQuantizationType.TQ1_0), 34, tq1_0),
        (("i2_s", "I2_S", np.int64(36)), 36, i2_s),
    ],
)
def test_names_and_ids_resolve_to_the_same_format(names, type_id, module) -> None:
    t = random_ternary(np.random.default_rng(type_id), 3, 512, per_row_scale=False)
    data = module.pack(t)
    for name in (*names, type_id):
        assert formats.type_id(name) == type_id
        assert formats.qtype_name(name) == module.__name__.rsplit(".", 1)[1]
        assert formats.nbytes(name, t.shape) == data.size
        np.testing.assert_array_equal(formats.pack(name, t), data)
        assert_tensors_equal(module.unpack(data, t.shape), formats.unpack(name, data, t.shape))


def test_sizes_per_format() -> None:
    assert formats.nbytes("tq2_0", (4, 512)) == 4 * 2 * 66
    assert formats.nbytes("tq1_0", (4, 512)) == 4 * 2 * 54
    assert formats.nbytes("i2_s", (4, 512)) == 4 * 512 // 4 + 32
    assert formats.QTYPES == ("tq2_0", "tq1_0", "i2_s")


@pytest.mark.parametrize("bad", ["q4_0", "", 0, 37, True, gguf.GGMLQuantizationType.Q8_0, 1.5])
def test_unknown_formats_are_rejected_with_the_supported_list(bad) -> None:
    with pytest.raises(ValueError, match=r"unsupported.*tq2_0 \(35\), tq1_0 \(34\), i2_s \(36\)"):
        formats.type_id(bad)
    with pytest.raises(ValueError, match="unsupported"):
        formats.pack(bad, TernaryTensor.from_scalar(np.zeros((1, 256), np.int8), 1.0))
