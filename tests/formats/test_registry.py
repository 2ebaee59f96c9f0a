"""The format registry is the one list of packed formats: the spec, the CLI and GGUF agree with it."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest
import yaml

from bitnet_sdk import formats
from bitnet_sdk.cli.main import build_parser
from bitnet_sdk.model.gguf_file import TERNARY_TYPES, tensor_nbytes, type_name
from bitnet_sdk.service.registry.files import MODEL_QTYPES

SPEC = Path(__file__).resolve().parents[2] / "openapi" / "bitnet.yaml"


def _enum(schema: str) -> list[str]:
    return list(yaml.safe_load(SPEC.read_text())["components"]["schemas"][schema]["enum"])


def test_the_spec_quantizes_to_exactly_the_registered_formats() -> None:
    assert _enum("QuantType") == list(formats.QTYPES)


def test_model_storage_types_are_the_float_types_and_the_registered_formats() -> None:
    assert _enum("ModelQType") == list(MODEL_QTYPES)
    assert set(formats.QTYPES) <= set(MODEL_QTYPES)


def test_the_cli_offers_the_registered_formats() -> None:
    args = build_parser().parse_args(["quantize", "in.gguf", "out.gguf", "--type", formats.QTYPES[-1]])
    assert args.qtype == formats.QTYPES[-1]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["quantize", "in.gguf", "out.gguf", "--type", "q4_0"])


@pytest.mark.parametrize("name", formats.QTYPES)
def test_each_format_declares_consistent_facts(name: str) -> None:
    fmt = formats.FORMATS[name]
    assert fmt.name == name
    assert formats.by_type_id(fmt.type_id) is fmt
    assert formats.qtype_name(fmt.type_id) == name
    assert fmt.type_id in TERNARY_TYPES
    assert type_name(fmt.type_id) == fmt.label
    shape = (3, 2 * fmt.block_size)
    assert fmt.tensor_nbytes(shape) == formats.nbytes(name, shape) == tensor_nbytes(fmt.type_id, shape)
    assert fmt.tensor_nbytes((3, fmt.block_size + 1)) is None
    known = {int(t): s for t, s in gguf.GGML_QUANT_SIZES.items()}
    if fmt.type_id in known:  # upstream ggml knows it: the same geometry
        assert known[fmt.type_id] == (fmt.block_size, fmt.block_bytes)
