"""Format constants: derived from the ``gguf`` package where it knows them, consistent otherwise."""

from __future__ import annotations

import gguf

from bitnet_sdk import formats
from bitnet_sdk.formats import constants as c


def test_upstream_ids_and_sizes_come_from_gguf() -> None:
    assert c.TQ1_0_TYPE_ID == gguf.GGMLQuantizationType.TQ1_0 == 34
    assert c.TQ2_0_TYPE_ID == gguf.GGMLQuantizationType.TQ2_0 == 35
    assert (c.TQ2_0_BLOCK_SIZE, c.TQ2_0_BLOCK_BYTES) == (c.QK_K, 66)
    assert (c.TQ1_0_BLOCK_SIZE, c.TQ1_0_BLOCK_BYTES) == (c.QK_K, 54)


def test_block_layouts_add_up() -> None:
    assert c.TQ2_0_QS_BYTES + 2 == c.TQ2_0_BLOCK_BYTES
    assert c.TQ2_0_QS_BYTES * 4 == c.TQ2_0_BLOCK_SIZE
    assert c.TQ1_0_QS_BYTES + c.TQ1_0_QH_BYTES + 2 == c.TQ1_0_BLOCK_BYTES
    assert c.TQ1_0_QS_BYTES * 5 + c.TQ1_0_QH_BYTES * 4 == c.TQ1_0_BLOCK_SIZE
    assert c.I2_S_BLOCK_BYTES * 4 == c.I2_S_BLOCK_SIZE == c.I2_S_GROUP_SIZE * 4


def test_i2_s_id_is_free_in_upstream_gguf() -> None:
    """bitnet.cpp's 36 must not name an upstream type, or files would be read as the wrong one."""
    assert c.I2_S_TYPE_ID == 36
    assert c.I2_S_TYPE_ID not in {int(t) for t in gguf.GGMLQuantizationType}
    assert formats.QTYPE_IDS == {"tq1_0": 34, "tq2_0": 35, "i2_s": 36}


def test_architecture_names() -> None:
    assert c.ARCH_BITNET == gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BITNET] == "bitnet"
    assert c.BITNET_ARCHITECTURES == ("bitnet", "bitnet-b1.58", "bitnet-25")
    assert c.Keys is gguf.Keys and c.GGMLQuantizationType is gguf.GGMLQuantizationType
