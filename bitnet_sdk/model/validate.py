"""``validate(path)``: is this file a BitNet b1.58 model we can run, and if not, why.

Checks, each reported as a :class:`~bitnet_sdk.model.gguf_file.Problem` with a
stable ``code``:

* container: magic, version, byte order, header structure (``bad_magic``,
  ``unsupported_version``, ``big_endian``, ``truncated_header``, ``bad_header``,
  ``duplicate_key``, ``duplicate_tensor``);
* data area: tensors of unknown type, running past the end of the file,
  overlapping or misaligned, trailing bytes (``unknown_tensor_type``,
  ``tensor_out_of_bounds``, ``tensor_overlap``, ``tensor_misaligned``,
  ``trailing_data``);
* model: architecture and hyper-parameters (``unknown_architecture``,
  ``missing_key``, ``bad_key_type``, ``bad_hparams``); every tensor the
  architecture needs, with the right shape and a usable type
  (``missing_tensor``, ``tensor_shape``, ``tensor_type``, ``unexpected_tensor``);
  with ``check_data``, projections really ternary and float tensors finite
  (``not_ternary``, ``non_finite``);
* vocabulary: present, well-formed (merges naming known tokens), able to
  tokenize a probe text, and as large as the embedding (``missing_tokenizer``,
  ``bad_tokenizer``, ``bad_token_id``, ``vocab_mismatch``);
* chat template: compiles and renders a plain user message within its limits
  (``bad_chat_template``).

``validate`` never raises for a bad file: any failure is a problem in the report
(``internal_error`` for the unexpected, which is a bug worth reporting).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, Keys

from bitnet_sdk import formats
from bitnet_sdk.model.config import ModelConfig, config_problems
from bitnet_sdk.model.gguf_file import (
    TERNARY_PROJECTIONS,
    TERNARY_TYPES,
    GGUFFormatError,
    ModelFile,
    NotTernaryError,
    Problem,
    StringArray,
    TensorInfo,
    layout_problems,
    read_model,
)
from bitnet_sdk.model.tokenizer import TokenizerSpec, tokenizer_problems

__all__ = ["Problem", "ValidationReport", "validate"]

logger = logging.getLogger(__name__)

_F32, _F16, _BF16 = (int(GGMLQuantizationType.F32), int(GGMLQuantizationType.F16), int(GGMLQuantizationType.BF16))
_FLOAT_TYPES = frozenset({_F32, _F16, _BF16})
_PROJECTION_TYPES = TERNARY_TYPES | _FLOAT_TYPES
_TERNARY_LABELS = "/".join(sorted(f.label for f in formats.FORMATS.values()))


@dataclass
class ValidationReport:
    """The outcome of :func:`validate`: ``ok`` when ``problems`` is empty."""

    path: str
    problems: list[Problem] = field(default_factory=list)
    arch: str | None = None
    n_tensors: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "arch": self.arch,
            "tensors": self.n_tensors,
            "problems": [p.to_dict() for p in self.problems],
        }


#: The problems of a file of another architecture: ``rules(path, check_data=...)``.
ArchRules = Callable[..., Iterable[Problem]]


def validate(path: str | os.PathLike[str], *, check_data: bool = True,
             other_archs: Mapping[str, ArchRules] | None = None) -> ValidationReport:
    """Check a model file and list every problem found.

    ``check_data`` also decodes every ternary projection and scans float
    tensors for NaN/inf (reads the whole file once; off, only the header and
    the directory are checked). A file whose architecture is a key of
    ``other_archs`` is held to those rules instead (``bitnet_sdk.loading.validate``
    passes the dense models' rules: the model package does not know them).
    """
    report = ValidationReport(str(path))
    try:
        report.problems = list(_problems(path, report, check_data, other_archs or {}))
    except MemoryError:
        report.problems.append(Problem("internal_error", "ran out of memory while checking the file"))
    except Exception as exc:  # validate must report, never raise, whatever the file holds
        logger.exception("validate: unexpected error", extra={"path": str(path)})
        report.problems.append(Problem("internal_error", f"unexpected {type(exc).__name__}: {exc}"))
    return report


def _problems(path: str | os.PathLike[str], report: ValidationReport, check_data: bool,
              other_archs: Mapping[str, ArchRules]) -> Iterator[Problem]:
    try:
        mf = read_model(path, strict=False)
    except FileNotFoundError:
        yield Problem("file_missing", f"no such file: {path}")
        return
    except OSError as exc:
        yield Problem("file_unreadable", f"cannot read {path}: {exc.strerror or exc}")
        return
    except GGUFFormatError as exc:
        yield Problem(exc.code, str(exc), exc.tensor)
        return
    report.arch = mf.arch or None
    report.n_tensors = len(mf.tensors)
    rules = other_archs.get(mf.arch)
    if rules is not None:  # e.g. ternary dense models imported from ONNX have their own rules
        yield from rules(path, check_data=check_data)
        return
    layout = layout_problems(mf)
    yield from layout
    bad_layout = {p.tensor for p in layout if p.tensor}
    hparams = config_problems(mf.metadata, mf.tensors)
    yield from hparams
    vocab = tokenizer_problems(mf.metadata)
    yield from vocab
    if not vocab:
        yield from _template_problems(mf)
    if hparams:
        return  # without a configuration there is nothing to check tensors against
    cfg = ModelConfig.from_model_file(mf)
    yield from _vocab_problems(mf, cfg)
    expected = _expected_tensors(cfg, "output.weight" in mf.tensors)
    yield from _tensor_problems(mf, expected)
    if check_data:
        usable = [n for n in expected if n in mf.tensors and n not in bad_layout]
        yield from _data_problems(mf, usable, expected)


def _template_problems(mf: ModelFile) -> Iterator[Problem]:
    """The file's chat template, rendered once for a plain user message (bounded; see
    ``bitnet_sdk.model.chat``): one that cannot would fail every chat request."""
    from bitnet_sdk.model.chat import template_problem

    template = TokenizerSpec.from_metadata(mf.metadata).chat_template
    if template is None:
        return
    why = template_problem(template)
    if why is not None:
        yield Problem("bad_chat_template", why)


def _expected_tensors(cfg: ModelConfig, has_output: bool) -> dict[str, tuple[tuple[int, ...], frozenset[int] | None]]:
    """Name → (shape, allowed types or None for any) of every tensor the model needs."""
    norm = frozenset(_FLOAT_TYPES)
    out: dict[str, tuple[tuple[int, ...], frozenset[int] | None]] = {
        "token_embd.weight": ((cfg.vocab_size, cfg.d_model), None),
        "output_norm.weight": ((cfg.d_model,), norm),
    }
    if has_output:
        out["output.weight"] = ((cfg.vocab_size, cfg.d_model), None)
    shapes = {
        "attn_q": (cfg.q_dim, cfg.d_model), "attn_k": (cfg.kv_dim, cfg.d_model), "attn_v": (cfg.kv_dim, cfg.d_model),
        "attn_output": (cfg.d_model, cfg.q_dim), "ffn_gate": (cfg.d_ff, cfg.d_model),
        "ffn_up": (cfg.d_ff, cfg.d_model), "ffn_down": (cfg.d_model, cfg.d_ff),
    }
    for i in range(cfg.n_layers):
        out[f"blk.{i}.attn_norm.weight"] = ((cfg.d_model,), norm)
        out[f"blk.{i}.attn_sub_norm.weight"] = ((cfg.q_dim,), norm)
        out[f"blk.{i}.ffn_norm.weight"] = ((cfg.d_model,), norm)
        out[f"blk.{i}.ffn_sub_norm.weight"] = ((cfg.d_ff,), norm)
        for proj, shape in shapes.items():
            out[f"blk.{i}.{proj}.weight"] = (shape, _PROJECTION_TYPES)
    return out


def _is_optional(name: str, cfg: ModelConfig) -> bool:
    """Tensors a file may carry beyond the required ones (llama.cpp's TENSOR_NOT_REQUIRED)."""
    parts = name.split(".")
    if name == "rope_freqs.weight":
        return True
    return (
        len(parts) == 4 and parts[0] == "blk" and parts[1].isdigit() and int(parts[1]) < cfg.n_layers
        and parts[2] in TERNARY_PROJECTIONS and parts[3] == "scale"
    )


def _tensor_problems(
    mf: ModelFile, expected: dict[str, tuple[tuple[int, ...], frozenset[int] | None]]
) -> Iterator[Problem]:
    cfg = ModelConfig.from_model_file(mf)
    for name, (shape, types) in expected.items():
        info = mf.tensors.get(name)
        if info is None:
            yield Problem("missing_tensor", f"required tensor {name} is missing", name)
            continue
        if info.shape != shape:
            yield Problem("tensor_shape", f"shape {list(info.shape)}, expected {list(shape)}", name)
        if types is not None and info.ggml_type not in types:
            allowed = f"ternary {_TERNARY_LABELS} or F32/F16/BF16" if types is _PROJECTION_TYPES else "F32/F16/BF16"
            yield Problem("tensor_type", f"type {info.type_name} is not usable here ({allowed})", name)
    for name, info in mf.tensors.items():
        if name in expected:
            continue
        if not _is_optional(name, cfg):
            yield Problem("unexpected_tensor", f"tensor {name} is not part of a {cfg.arch} model", name)
        elif name.endswith(".scale") and (info.n_elements != 1 or info.ggml_type != _F32):
            yield Problem("tensor_shape", f"a projection scale must be one F32 value, got {info.type_name} {list(info.shape)}", name)


def _vocab_problems(mf: ModelFile, cfg: ModelConfig) -> Iterator[Problem]:
    tokens = mf.metadata.array(Keys.Tokenizer.LIST)  # its length only: not decoded
    if not isinstance(tokens, (StringArray, np.ndarray, list)):
        return
    declared = mf.arch_key(Keys.LLM.VOCAB_SIZE)
    if isinstance(declared, int) and declared != len(tokens):
        yield Problem("vocab_mismatch", f"{Keys.LLM.VOCAB_SIZE.format(arch=cfg.arch)} = {declared} but the vocabulary has {len(tokens)} tokens")
    for name in ("token_embd.weight", "output.weight"):
        info = mf.tensors.get(name)
        if info is not None and len(info.shape) == 2 and info.shape[0] != len(tokens):
            yield Problem("vocab_mismatch", f"{info.shape[0]} rows for a vocabulary of {len(tokens)} tokens", name)


def _data_problems(
    mf: ModelFile, names: list[str], expected: dict[str, tuple[tuple[int, ...], frozenset[int] | None]]
) -> Iterator[Problem]:
    for name in names:
        info: TensorInfo = mf.tensors[name]
        shape, types = expected[name]
        if info.shape != shape or info.n_bytes is None or (types is not None and info.ggml_type not in types):
            continue  # already reported
        try:
            if mf.is_projection(name):
                mf.tensor(name, cache=False)
            elif not np.all(np.isfinite(mf.float_tensor(name))):
                yield Problem("non_finite", "holds NaN or infinite values", name)
        except NotTernaryError as exc:
            yield Problem("not_ternary", str(exc).removeprefix(f"{name}: "), name)
        except GGUFFormatError as exc:
            yield Problem(exc.code, str(exc), name)
        except ValueError as exc:  # e.g. a quantized type gguf-py cannot decode
            yield Problem("tensor_type", f"cannot decode {info.type_name} data: {exc}", name)
