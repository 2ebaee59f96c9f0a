"""The one module holding packed-format constants: GGUF types, keys, block facts, architectures.

GGUF keys, tensor type ids and upstream block sizes come from the ``gguf`` package (the Python
half of llama.cpp) and are re-exported here, never retyped; other modules import them from here.
Facts the ``gguf`` package does not know — bitnet.cpp's I2_S type and its architecture names —
are defined here once, with the public source they were read from.

Sources checked:

* ggml-org/llama.cpp ``ggml/include/ggml.h``: ``GGML_TYPE_TQ1_0 = 34``, ``GGML_TYPE_TQ2_0 = 35``;
  ids 36–38 (``IQ4_NL_4_4/4_8/8_8``) are commented out ("support has been removed from gguf
  files"), so upstream ggml and the ``gguf`` package have no type 36 at all.
* microsoft/BitNet's llama.cpp fork (``3rdparty/llama.cpp``, Eddie-Wang1120/llama.cpp):
  ``GGML_TYPE_I2_S = 36`` in ``ggml.h``; ``LLAMA_FTYPE_MOSTLY_I2_S = 40`` in ``llama.h`` (upstream
  has since given 40 to ``MOSTLY_Q1_0``, so ``general.file_type == 40`` is ambiguous between the two
  projects); architecture names ``"bitnet"``, ``"bitnet-25"``, ``"bitnet-b1.58"`` in ``llama.cpp``'s
  ``LLM_ARCH_NAMES``.
* microsoft/BitNet ``src/ggml-bitnet-mad.cpp``, ``quantize_i2_s``: ``QK_I2_S = 128`` on x86, 32 bytes
  per 128 weights, one float32 scale after the packed data, tensor size ``n / 4 + 32`` bytes
  (see :mod:`bitnet_sdk.formats.i2_s`).
"""

from __future__ import annotations

from typing import Final

import gguf
from gguf import GGML_QUANT_SIZES, MODEL_ARCH, GGMLQuantizationType, Keys, LlamaFileType

__all__ = [
    "ARCH_BITNET",
    "ARCH_BITNET_25",
    "ARCH_BITNET_B158",
    "ARCH_BITNET_DENSE",
    "BITNET_ARCHITECTURES",
    "FTYPE_MOSTLY_I2_S",
    "GGML_QUANT_SIZES",
    "GGUF_DEFAULT_ALIGNMENT",
    "I2_S_BLOCK_BYTES",
    "I2_S_BLOCK_SIZE",
    "I2_S_GROUP_SIZE",
    "I2_S_TRAILER_BYTES",
    "I2_S_TYPE_ID",
    "MODEL_ARCH",
    "QK_K",
    "TQ1_0_BLOCK_BYTES",
    "TQ1_0_BLOCK_SIZE",
    "TQ1_0_QH_BYTES",
    "TQ1_0_QS_BYTES",
    "TQ1_0_TYPE_ID",
    "TQ2_0_BLOCK_BYTES",
    "TQ2_0_BLOCK_SIZE",
    "TQ2_0_GROUP_SIZE",
    "TQ2_0_QS_BYTES",
    "TQ2_0_TYPE_ID",
    "GGMLQuantizationType",
    "Keys",
    "LlamaFileType",
]

#: Weights per k-quant super-block (256); TQ1_0 and TQ2_0 blocks have this size.
QK_K: Final[int] = gguf.QK_K

#: Default tensor-data alignment of a GGUF file (``general.alignment`` overrides it).
GGUF_DEFAULT_ALIGNMENT: Final[int] = gguf.GGUF_DEFAULT_ALIGNMENT

# --- TQ2_0 (upstream ggml): 2 bits per weight, code = value + 1 ----------------------------------
TQ2_0_TYPE_ID: Final[int] = int(GGMLQuantizationType.TQ2_0)
#: (weights per block, bytes per block) = (256, 66).
TQ2_0_BLOCK_SIZE, TQ2_0_BLOCK_BYTES = GGML_QUANT_SIZES[GGMLQuantizationType.TQ2_0]
#: Packed-code bytes per block (``block_tq2_0.qs``); an fp16 scale ``d`` follows them.
TQ2_0_QS_BYTES: Final[int] = QK_K // 4
#: Each 128-weight chunk is 4 groups of this many weights, one group per 2-bit lane of a byte.
TQ2_0_GROUP_SIZE: Final[int] = 32

# --- TQ1_0 (upstream ggml): base-3, 5 trits per byte (1.6875 bits per weight) -------------------
TQ1_0_TYPE_ID: Final[int] = int(GGMLQuantizationType.TQ1_0)
#: (weights per block, bytes per block) = (256, 54).
TQ1_0_BLOCK_SIZE, TQ1_0_BLOCK_BYTES = GGML_QUANT_SIZES[GGMLQuantizationType.TQ1_0]
#: ``block_tq1_0.qs``: 48 bytes of 5 trits each (240 weights) ...
TQ1_0_QS_BYTES: Final[int] = (QK_K - 4 * QK_K // 64) // 5
#: ... then ``block_tq1_0.qh``: 4 bytes of 4 trits each (16 weights), then the fp16 scale ``d``.
TQ1_0_QH_BYTES: Final[int] = QK_K // 64

# --- I2_S (bitnet.cpp fork only): 2 bits per weight, one float32 scale per tensor ---------------
#: bitnet.cpp's ``GGML_TYPE_I2_S``; unknown to upstream ggml and the ``gguf`` package.
I2_S_TYPE_ID: Final[int] = 36
#: ``QK_I2_S`` of bitnet.cpp's x86 build: weights per interleaved block.
I2_S_BLOCK_SIZE: Final[int] = 128
#: Bytes per 128-weight block (2 bits per weight).
I2_S_BLOCK_BYTES: Final[int] = I2_S_BLOCK_SIZE // 4
#: Weights per lane group: byte ``j`` of a block holds weights ``j, j+32, j+64, j+96``.
I2_S_GROUP_SIZE: Final[int] = 32
#: Bytes after the packed codes: the float32 scale, then padding up to 32 bytes.
I2_S_TRAILER_BYTES: Final[int] = 32
#: bitnet.cpp's ``LLAMA_FTYPE_MOSTLY_I2_S`` (``general.file_type``); upstream uses 40 for Q1_0.
FTYPE_MOSTLY_I2_S: Final[int] = 40

# --- architectures (``general.architecture``) ----------------------------------------------------
#: Upstream llama.cpp's name for BitNet b1.58 models (``gguf.MODEL_ARCH.BITNET``).
ARCH_BITNET: Final[str] = gguf.MODEL_ARCH_NAMES[MODEL_ARCH.BITNET]
#: bitnet.cpp's name for microsoft/bitnet-b1.58-2B-4T (``LLM_ARCH_BITNET_B158``).
ARCH_BITNET_B158: Final[str] = "bitnet-b1.58"
#: bitnet.cpp's name for the early-2025 BitNet 2B checkpoint (``LLM_ARCH_BITNET_25``).
ARCH_BITNET_25: Final[str] = "bitnet-25"
#: Every architecture name a BitNet GGUF may carry.
BITNET_ARCHITECTURES: Final[tuple[str, ...]] = (ARCH_BITNET, ARCH_BITNET_B158, ARCH_BITNET_25)
#: Our own name for ternary dense models imported from ONNX (``bitnet_sdk.dense``); no
#: llama.cpp architecture, so no LLM loader mistakes such a file for a language model.
ARCH_BITNET_DENSE: Final[str] = "bitnet-dense"
