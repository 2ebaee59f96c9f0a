"""``load(path)`` → ``Model``: a BitNet GGUF file, ready to run on one backend.

Loading maps the file (``gguf_file.read_model``), reads the configuration and
tokenizer from its metadata, and hands every ternary projection to the chosen
backend's ``prepare_weights`` exactly once, one tensor at a time, so the only
lasting copy of the weights is the backend's own layout. Float tensors stored
as F32 (and the F16 embedding / head) stay read-only views of the memory map.
A backend with a ``layout_version`` gets its prepared weights written to a
cache file once and memory-mapped on later loads (``weight_cache``).

A ``Model`` is immutable after loading and holds no per-request state: every
generation gets its own ``KVCache``, so several threads may generate from one
model at once (as far as the backend allows; the bundled ones do).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from bitnet_sdk.backends import get as get_backend
from bitnet_sdk.backends.base import Backend
from bitnet_sdk.model import generate as _gen
from bitnet_sdk.model.config import ModelConfig
from bitnet_sdk.model.gguf_file import ModelFile, read_model
from bitnet_sdk.model.kv_cache import KVCache
from bitnet_sdk.model.llm import forward
from bitnet_sdk.model.weight_cache import WeightCache
from bitnet_sdk.model.weights import ModelWeights, load_weights

__all__ = ["Model", "load"]

logger = logging.getLogger(__name__)

#: ``off`` makes models run per op even when their backend offers a fused forward pass.
FUSED_ENV = "BITNET_FUSED_FORWARD"
#: ``f16`` makes ``Model.new_cache`` keep keys and values in float16 by default.
KV_TYPE_ENV = "BITNET_KV_CACHE_TYPE"


class Model:
    """A loaded BitNet b1.58 model.

    Attributes: ``config`` (``ModelConfig``), ``metadata`` (raw GGUF key/values),
    ``tokenizer``, ``backend`` (the ``Backend`` its weights were prepared for),
    ``weights`` (``ModelWeights`` in the backend's layout), ``path``.
    """

    def __init__(
        self,
        config: ModelConfig,
        weights: ModelWeights[Any],
        backend: Backend,
        tokenizer: Any,
        metadata: Mapping[str, Any] | None = None,
        path: str | None = None,
        file: ModelFile | None = None,
    ) -> None:
        self.config = config
        self.weights = weights
        self.backend = backend
        self.tokenizer = tokenizer
        self.metadata = metadata or {}
        self.path = path
        self._file = file  # keeps the memory map alive as long as the views are used
        fused = os.environ.get(FUSED_ENV, "").strip().lower() not in ("0", "off", "false", "no")
        #: The backend's fused forward pass, or None (per-op ``llm.forward``).
        self.step = backend.compile_forward(config, weights) if fused else None

    def __repr__(self) -> str:
        c = self.config
        return (
            f"<Model {self.path or ''} {c.arch} layers={c.n_layers} d_model={c.d_model} "
            f"vocab={c.vocab_size} backend={self.backend.name}>"
        )

    # -- what generate() needs -----------------------------------------------

    @property
    def context_length(self) -> int:
        """Largest number of positions (prompt + generated) one sequence may use."""
        return self.config.context_length

    @property
    def eog_token_ids(self) -> frozenset[int]:
        """Token ids that end a generation (EOS, end-of-turn, ...)."""
        ids = getattr(self.tokenizer, "eog_ids", None)
        if ids:
            return frozenset(int(i) for i in ids)
        return frozenset() if self.config.eos_id is None else frozenset({self.config.eos_id})

    def new_cache(self, max_positions: int | None = None, *, dtype: type | np.dtype | None = None) -> KVCache:
        """An empty KV cache for one sequence (grows on demand).

        ``dtype``: float32 (default) or float16 (half the memory; llama.cpp's
        default); ``None`` reads ``BITNET_KV_CACHE_TYPE`` (``f32``/``f16``).
        """
        c = self.config
        if dtype is None:
            dtype = np.float16 if os.environ.get(KV_TYPE_ENV, "").strip().lower() == "f16" else np.float32
        return KVCache(c.n_layers, c.n_kv_heads, c.head_dim, max_positions or c.context_length, dtype)

    # -- running -------------------------------------------------------------

    def forward(
        self,
        token_ids: Sequence[int] | np.ndarray,
        start_pos: int = 0,
        cache: KVCache | None = None,
        *,
        last_only: bool = False,
    ) -> np.ndarray:
        """Float32 logits ``[n, vocab]`` for ``token_ids`` at positions ``start_pos ..``.

        ``cache`` holds the sequence's earlier positions (``None``: a fresh
        cache, so ``start_pos`` must be 0). ``last_only`` returns only the last
        row, ``[1, vocab]``.
        """
        if cache is None:
            if start_pos != 0:
                raise ValueError("start_pos > 0 needs the cache holding the earlier positions")
            cache = self.new_cache(max(len(token_ids), 1))
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        return forward(self.weights, self.config, self.backend, ids, start_pos, cache,
                       last_only=last_only, step=self.step)  # fmt: skip

    def generate(self, prompt: str | Sequence[int], **kwargs: Any) -> Iterator[_gen.GenerationStep]:
        """Stream ``GenerationStep`` records; keywords as ``bitnet_sdk.model.generate.generate``.

        ``max_tokens``, ``stop``, ``logprobs`` (number of alternatives), ``cancel`` (a
        ``threading.Event`` or a callable returning True to stop), ``sampling`` (a
        ``SamplingParams``) or its fields (``temperature``, ``top_k``, ``top_p``, ``seed`` …).
        """
        return _gen.generate(self, prompt, **kwargs)

    def complete(self, prompt: str | Sequence[int], **kwargs: Any) -> _gen.Completion:
        """Generate to the end and return a ``Completion`` (ids, text, logprobs, timings)."""
        return _gen.complete(self, prompt, **kwargs)

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` as a prompt (BOS added when the file asks for it)."""
        return list(self.tokenizer.encode(text))

    def detokenize(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids)))


def _tokenizer_for(mf: ModelFile) -> Any:
    """The file's tokenizer, read in place: its tokenizing model is built on first use, from
    the tokenizer cache when an earlier load of this file left it there (``tokenizer_cache``)."""
    from bitnet_sdk.model.tokenizer import Tokenizer, TokenizerSpec
    from bitnet_sdk.model.tokenizer_cache import TokenizerCache

    spec = TokenizerSpec.from_metadata(mf.metadata, check_merges=False)
    return Tokenizer.from_spec(spec, cache=TokenizerCache.for_file(mf.path, len(spec.tokens)))


#: Loads a file of another architecture: ``loader(path, backend)``.
ArchLoader = Callable[[str | os.PathLike[str], str | Backend], Any]


def load(
    path: str | os.PathLike[str], backend: str | Backend = "auto", device: str = "auto",
    *, other_archs: Mapping[str, ArchLoader] | None = None,
) -> Model:
    """Load a BitNet GGUF model for ``backend`` (a name, ``"auto"``, or an instance).

    ``device="auto"`` runs on an accelerator when a usable backend offers one (MLX on
    Metal), else on the CPU; ``"cpu"``/``"gpu"`` ask for one (see ``bitnet_sdk.backends``).

    A file whose architecture is a key of ``other_archs`` is loaded by that function
    instead (``bitnet_sdk.loading.load`` passes the dense models' loader, so ``bitnet-dense``
    files load as ``bitnet_sdk.dense.DenseModel``). Raises ``FileNotFoundError`` for a missing file, ``GGUFFormatError`` /
    ``ConfigError`` / ``NotTernaryError`` (all ``ValueError``) for a file that
    is not a runnable BitNet model, and the backend registry's errors for an
    unknown or unusable backend name.
    """
    t0 = time.perf_counter()
    mf = read_model(path)
    other = (other_archs or {}).get(mf.arch)
    if other is not None:  # e.g. ternary dense models converted from ONNX
        return other(path, backend)
    config = ModelConfig.from_model_file(mf)
    if isinstance(backend, str):
        # Starting a backend (plugins, linking its compiled kernels) mostly runs outside
        # the GIL, so it overlaps the tokenizer's construction (pure Python).
        with ThreadPoolExecutor(1, thread_name_prefix="bitnet-load") as pool:
            started = pool.submit(get_backend, backend, device=device)
            tokenizer = _tokenizer_for(mf)
            backend = started.result()
    else:
        tokenizer = _tokenizer_for(mf)
    store = WeightCache(path, backend) if WeightCache.enabled(backend) else None
    weights = load_weights(mf, config, backend.prepare_weights, backend.prepare_head, store=store)
    if store is not None and not store.hit:
        store.commit()
    logger.info(
        "loaded model",
        extra={
            "path": str(path),
            "arch": config.arch,
            "backend": backend.name,
            "layers": config.n_layers,
            "weight_cache": None if store is None else ("hit" if store.hit else "miss"),
            "seconds": round(time.perf_counter() - t0, 3),
        },
    )
    return Model(config, weights, backend, tokenizer, mf.metadata, str(path), mf)
