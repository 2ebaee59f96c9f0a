"""Every available backend runs the same model to the same logits and tokens.

Yardsticks: the numpy reference backend, and the independent float64
``reference_forward`` with BitNet's per-token activation quantization. The
models are conditioned synthetic files (see ``bitnet_sdk.testing.parity``) in
llama.cpp's TQ2_0 and bitnet.cpp's I2_S, so both the SiLU (``bitnet``) and
squared-ReLU (``bitnet-b1.58``) graphs are covered.

Tolerances: backends must use the exact int32 ternary product and the same
per-token quantization rule, so logits agree to float32 rounding, except
where a rounding difference moved an activation by one int8 step (see
``LogitsAgreement``); hence "most positions tight, all positions close".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bitnet_sdk.backends import available
from bitnet_sdk.model.config import ModelConfig
from bitnet_sdk.model.gguf_file import read_model
from bitnet_sdk.model.loader import load
from bitnet_sdk.model.reference import compare_logits, reference_forward
from bitnet_sdk.testing.parity import build_conditioned_model

BACKENDS = sorted(i.name for i in available() if i.available and "cpu" in i.devices)
FILES = {"tq2_0-bitnet": ("tq2_0", "bitnet"), "i2_s-bitnet-b1.58": ("i2_s", "bitnet-b1.58")}
PROMPT = "The quick brown fox"
N_GREEDY = 12


@pytest.fixture(scope="module", params=sorted(FILES))
def model_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    qtype, arch = FILES[request.param]
    path = tmp_path_factory.mktemp("parity") / f"{request.param}.gguf"
    return build_conditioned_model(
        path, qtype=qtype, arch=arch, n_layers=2, d_model=256, n_heads=4, n_kv_heads=2, d_ff=512, seed=7
    )


@pytest.fixture(scope="module")
def token_ids() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 512, 24)


def test_numpy_backend_is_available() -> None:
    assert "numpy" in BACKENDS  # the yardstick below; never skipped silently


@pytest.mark.parametrize("backend", BACKENDS)
def test_logits_agree_with_numpy_and_reference(backend: str, model_path: Path, token_ids: np.ndarray) -> None:
    ours = load(model_path, backend=backend).forward(token_ids)
    assert ours.dtype == np.float32 and ours.shape == (len(token_ids), 512)
    baseline = load(model_path, backend="numpy").forward(token_ids)
    mf = read_model(model_path)
    reference = reference_forward(mf, ModelConfig.from_model_file(mf), token_ids)
    for yardstick in (baseline, reference):
        agreement = compare_logits(ours, yardstick)
        assert agreement.tight_fraction >= 0.75, agreement
        assert agreement.median_abs <= 1e-5 * agreement.scale, agreement
        assert agreement.min_cosine >= 0.999, agreement
        assert agreement.argmax_agreement == 1.0, agreement


def reference_greedy(path: Path, prompt_ids: list[int], n: int) -> list[int]:
    """Greedy decoding with the float64 reference (recomputes the whole sequence per token)."""
    mf = read_model(path)
    ids = list(prompt_ids)
    for _ in range(n):
        ids.append(int(np.argmax(reference_forward(mf, ModelConfig.from_model_file(mf), ids)[-1])))
    return ids[len(prompt_ids) :]


def test_golden_greedy_tokens_on_every_backend(model_path: Path) -> None:
    models = {name: load(model_path, backend=name) for name in BACKENDS}
    prompt_ids = models["numpy"].tokenize(PROMPT)
    golden = reference_greedy(model_path, prompt_ids, N_GREEDY)
    eog = models["numpy"].eog_token_ids
    if any(t in eog for t in golden):  # generation would stop there: compare up to it
        golden = golden[: next(i for i, t in enumerate(golden) if t in eog) + 1]
    for name, model in models.items():
        result = model.complete(PROMPT, max_tokens=N_GREEDY, temperature=0.0)
        assert list(result.prompt_ids) == prompt_ids
        assert list(result.token_ids) == golden, f"backend {name}"
        assert result.text == model.detokenize([t for t in golden if t not in eog]), f"backend {name}"
