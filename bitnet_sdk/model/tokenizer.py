"""Tokenizer built from a GGUF vocabulary, tokenizing as llama.cpp does.

Two vocabulary kinds, named by ``tokenizer.ggml.model``:

* ``gpt2``: byte-level BPE (LLaMA-3, BitNet b1.58 2B-4T). Text is split by the
  regular expressions llama.cpp uses for the file's ``tokenizer.ggml.pre``
  (``llama-bpe`` and its aliases → the LLaMA-3 regex with ``ignore_merges``;
  ``gpt-2``; ``default`` or absent → llama.cpp's default list), mapped to
  GPT-2's byte alphabet and merged by rank. The splitting and merging run in
  the ``tokenizers`` library (Split pre-tokenizers + BPE model), which applies
  the same rules as llama.cpp's ``llm_tokenizer_bpe``: successive regex
  splits keeping matches and gaps, lowest-rank pair first, leftmost on ties.
* ``llama``: SentencePiece-style vocabularies with scores. llama.cpp merges the
  adjacent pair whose joined text is the highest-scoring token (leftmost on
  ties) and falls back to ``<0xXX>`` byte tokens; a rank-ordered BPE cannot
  reproduce that tie rule, so :class:`_SpmModel` implements it directly.

Special tokens (control, user-defined, unknown) are cut out of the text first,
longest first, as llama.cpp's ``tokenizer_st_partition`` does; control tokens
only when ``parse_special`` is set, user-defined ones always.
"""

from __future__ import annotations

import heapq
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from gguf import Keys, TokenType
from tokenizers import Regex, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from bitnet_sdk.model.gguf_file import Problem, StringArray, metadata_array

if TYPE_CHECKING:
    from bitnet_sdk.model.gguf_file import ModelFile
    from bitnet_sdk.model.tokenizer_cache import TokenizerCache

__all__ = [
    "GPT2_REGEX",
    "LLAMA3_REGEX",
    "Tokenizer",
    "TokenizerError",
    "TokenizerSpec",
    "bytes_to_unicode",
    "tokenizer_problems",
]

#: llama.cpp's LLaMA-3 pre-tokenizer regex (``LLAMA_VOCAB_PRE_TYPE_LLAMA3``):
#: the tokenizer.json one with ``(?i:...)`` spelled out, as llama.cpp does.
LLAMA3_REGEX = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
#: GPT-2's regex (``LLAMA_VOCAB_PRE_TYPE_GPT2``).
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
#: llama.cpp's fallback list (``LLAMA_VOCAB_PRE_TYPE_DEFAULT``), applied one after another.
DEFAULT_REGEXES = (r"[\p{P}\$\+<=>\^~\|]+", GPT2_REGEX, r"\p{N}+", r"[0-9][0-9][0-9]")

#: ``tokenizer.ggml.pre`` → (regexes, ignore_merges, add_bos default), as in llama-vocab.cpp.
_PRE_TYPES: dict[str, tuple[tuple[str, ...], bool, bool]] = {
    **dict.fromkeys(
        ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"),
        ((LLAMA3_REGEX,), True, True),
    ),
    "gpt-2": ((GPT2_REGEX,), False, False),
    "default": (DEFAULT_REGEXES, False, False),
}
SUPPORTED_MODELS = ("gpt2", "llama")

#: Token texts llama.cpp treats as end of generation when they are control tokens.
_EOG_TEXTS = frozenset({
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>", "<|return|>", "<|call|>",
})
_EOG_BYTE_LENGTHS = sorted({len(t.encode("utf-8")) for t in _EOG_TEXTS})
_SPECIAL_TYPES = frozenset({int(TokenType.CONTROL), int(TokenType.USER_DEFINED), int(TokenType.UNKNOWN)})
_PARSE_ONLY_TYPES = frozenset({int(TokenType.CONTROL), int(TokenType.UNKNOWN)})
_SPM_SPACE = "\u2581"


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character map used by byte-level BPE vocabularies."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


class TokenizerError(ValueError):
    """The file's vocabulary is missing or unusable; ``problems`` says why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class TokenizerSpec:
    """The ``tokenizer.*`` keys of a GGUF file, checked and typed.

    ``add_bos`` / ``add_eos`` / ``add_space_prefix`` are the file's flags, or
    llama.cpp's defaults for the vocabulary kind when the file has none. From a
    ``ModelFile`` the arrays are read in place: ``tokens``/``merges`` a
    ``StringArray``, ``token_types``/``scores`` numpy arrays (from a plain mapping, lists).
    """

    model: str
    pre: str | None
    tokens: Sequence[str]
    token_types: Sequence[int] | np.ndarray
    scores: Sequence[float] | np.ndarray | None
    merges: Sequence[str] | None
    bos_id: int | None
    eos_id: int | None
    eot_id: int | None
    eom_id: int | None
    pad_id: int | None
    unk_id: int | None
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    chat_template: str | None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], *, check_merges: bool = True) -> TokenizerSpec:
        """Raises :class:`TokenizerError` listing every problem found.

        ``check_merges=False`` leaves the check that every BPE merge names known tokens
        (which decodes the whole vocabulary) to the tokenizer's first use (``Tokenizer``
        runs it before building its BPE model).
        """
        spec, problems = _parse_spec(metadata, check_merges=check_merges)
        if problems or spec is None:
            raise TokenizerError(problems)
        return spec


def tokenizer_problems(metadata: Mapping[str, Any]) -> list[Problem]:
    """Everything :meth:`TokenizerSpec.from_metadata` would refuse, as a list, and a
    vocabulary that parses but cannot tokenize (the tokenizer is built and run once on
    :data:`PROBE_TEXT`, so a file that passes does not fail every inference)."""
    spec, problems = _parse_spec(metadata)
    if problems or spec is None:
        return problems
    try:
        tokenizer = Tokenizer(spec)
        ids = tokenizer.encode(PROBE_TEXT, parse_special=True)
        tokenizer.decode(ids)
    except TokenizerError as exc:
        return exc.problems
    except (ValueError, IndexError, KeyError) as exc:
        return [Problem("bad_tokenizer", f"the vocabulary cannot tokenize text: {exc}")]
    return []


#: Text every vocabulary must tokenize at validation: letters, digits, punctuation, spaces.
PROBE_TEXT = "Hello, world! 123 The quick brown fox.\n"


def _merge_problems(tokens: Sequence[str], merges: Sequence[str]) -> list[Problem]:
    """Merges that name tokens the vocabulary lacks (llama.cpp and ``tokenizers`` both fail on
    the first text that reaches one). Reports the first few."""
    vocab = set(tokens)
    bad = []
    for i, merge in enumerate(merges):
        pos = merge.find(" ", 1)
        if pos <= 0:
            continue  # no pair: ignored when tokenizing, as llama.cpp does
        left, right = merge[:pos], merge[pos + 1 :]
        if left not in vocab or right not in vocab or left + right not in vocab:
            bad.append(i)
    if not bad:
        return []
    shown = ", ".join(f"[{i}] {merges[i]!r}" for i in bad[:3])
    return [Problem("bad_tokenizer", f"{len(bad)} of {Keys.Tokenizer.MERGES} name tokens the "
                                     f"vocabulary does not have ({shown}{', ...' if len(bad) > 3 else ''})")]


def _str_list(metadata: Mapping[str, Any], key: str, problems: list[Problem]) -> Sequence[str] | None:
    value = metadata_array(metadata, key)
    if value is None or isinstance(value, StringArray):  # strings by construction (UTF-8 checked)
        return value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(Problem("bad_tokenizer", f"{key} must be an array of strings"))
        return None
    return value


def _num_list(
    metadata: Mapping[str, Any], key: str, n: int, kind: type, problems: list[Problem],
) -> Sequence[Any] | np.ndarray | None:
    value = metadata_array(metadata, key)
    if value is None:
        return None
    if isinstance(value, np.ndarray):  # read in place: check and convert all at once
        return _num_array(value, key, n, kind, problems)
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        problems.append(Problem("bad_tokenizer", f"{key} must be an array of numbers"))
        return None
    if len(value) != n:
        problems.append(Problem("bad_tokenizer", f"{key} has {len(value)} entries for {n} tokens"))
        return None
    return [kind(v) for v in value]


def _num_array(value: np.ndarray, key: str, n: int, kind: type, problems: list[Problem]) -> np.ndarray | None:
    if value.dtype.kind not in "iuf" or (value.dtype.kind == "f" and kind is int and not np.isfinite(value).all()):
        problems.append(Problem("bad_tokenizer", f"{key} must be an array of numbers"))
        return None
    if value.shape != (n,):
        problems.append(Problem("bad_tokenizer", f"{key} has {value.size} entries for {n} tokens"))
        return None
    out: np.ndarray = value.astype(np.int64 if kind is int else np.float64)
    return out


def _parse_spec(md: Mapping[str, Any], *, check_merges: bool = True) -> tuple[TokenizerSpec | None, list[Problem]]:
    T = Keys.Tokenizer
    problems: list[Problem] = []
    model = md.get(T.MODEL)
    if model is None:
        return None, [Problem("missing_tokenizer", f"the file has no vocabulary ({T.MODEL} is missing)")]
    if model not in SUPPORTED_MODELS:
        return None, [Problem("bad_tokenizer", f"{T.MODEL} = {model!r} is not supported ({', '.join(SUPPORTED_MODELS)})")]
    tokens = _str_list(md, T.LIST, problems)
    if not tokens:
        problems.append(Problem("missing_tokenizer", f"{T.LIST} is missing or empty"))
        return None, problems
    n = len(tokens)
    types = _num_list(md, T.TOKEN_TYPE, n, int, problems)
    if types is None:
        types = [int(TokenType.NORMAL)] * n
    scores = _num_list(md, T.SCORES, n, float, problems)
    merges = _str_list(md, T.MERGES, problems)
    pre = md.get(T.PRE)
    if model == "gpt2":
        if not merges:
            problems.append(Problem("bad_tokenizer", f"a gpt2 vocabulary needs {T.MERGES}"))
        elif check_merges:
            problems += _merge_problems(tokens, merges)
        if pre is not None and pre not in _PRE_TYPES:
            problems.append(Problem("bad_tokenizer", f"pre-tokenizer {T.PRE} = {pre!r} is not supported ({', '.join(sorted(_PRE_TYPES))})"))
    ids: dict[str, int | None] = {}
    for name, key in (("bos", T.BOS_ID), ("eos", T.EOS_ID), ("eot", T.EOT_ID), ("eom", T.EOM_ID), ("pad", T.PAD_ID), ("unk", T.UNK_ID)):
        value = md.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < n):
            problems.append(Problem("bad_token_id", f"{key} = {value!r} is not a token id (vocabulary of {n})"))
            value = None
        ids[name] = value
    flags = {}
    for name, key in (("add_bos", T.ADD_BOS), ("add_eos", T.ADD_EOS), ("add_space_prefix", T.ADD_PREFIX)):
        value = md.get(key)
        if value is not None and not isinstance(value, bool):
            problems.append(Problem("bad_tokenizer", f"{key} must be a boolean, got {value!r}"))
            value = None
        flags[name] = value
    template = md.get(T.CHAT_TEMPLATE)
    if template is not None and not isinstance(template, str):
        problems.append(Problem("bad_tokenizer", f"{T.CHAT_TEMPLATE} must be a string"))
        template = None
    if problems:
        return None, problems
    pre_add_bos = _PRE_TYPES.get(pre or "default", ((), False, False))[2]
    spec = TokenizerSpec(
        model=model,
        pre=pre,
        tokens=tokens,
        token_types=types,
        scores=scores,
        merges=merges,
        bos_id=ids["bos"],
        eos_id=ids["eos"],
        eot_id=ids["eot"],
        eom_id=ids["eom"],
        pad_id=ids["pad"],
        unk_id=ids["unk"],
        add_bos=flags["add_bos"] if flags["add_bos"] is not None else (model == "llama" or pre_add_bos),
        add_eos=bool(flags["add_eos"]),
        add_space_prefix=flags["add_space_prefix"] if flags["add_space_prefix"] is not None else model == "llama",
        chat_template=template,
    )
    return spec, []


class _SpmModel:
    """llama.cpp's SentencePiece tokenizer (``llm_tokenizer_spm``) over a scored vocabulary."""

    def __init__(self, spec: TokenizerSpec) -> None:
        self.ids: dict[str, int] = {t: i for i, t in enumerate(spec.tokens)}
        self.scores = spec.scores if spec.scores is not None and len(spec.scores) else [0.0] * len(spec.tokens)
        self.byte_ids = {b: self.ids.get(f"<0x{b:02X}>") for b in range(256)}

    def encode(self, text: str) -> list[int]:
        symbols = list(text)  # UTF-8 characters
        nxt = [*range(1, len(symbols)), -1]
        prv = list(range(-1, len(symbols) - 1))
        heap: list[tuple[float, int, int, str]] = []
        rev: dict[str, tuple[str, str]] = {}

        def push(left: int, right: int) -> None:
            if left < 0 or right < 0:
                return
            joined = symbols[left] + symbols[right]
            tid = self.ids.get(joined)
            if tid is not None:
                heapq.heappush(heap, (-self.scores[tid], left, right, joined))
                rev[joined] = (symbols[left], symbols[right])

        for i in range(1, len(symbols)):
            push(i - 1, i)
        while heap:
            _score, left, right, joined = heapq.heappop(heap)
            if not symbols[left] or not symbols[right] or symbols[left] + symbols[right] != joined or nxt[left] != right:
                continue
            symbols[left], symbols[right] = joined, ""
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prv[nxt[right]] = left
            push(prv[left], left)
            push(left, nxt[left])
        out: list[int] = []
        i = 0 if symbols else -1
        while i != -1:
            self._resegment(symbols[i], rev, out)
            i = nxt[i]
        return out

    def _resegment(self, text: str, rev: dict[str, tuple[str, str]], out: list[int]) -> None:
        tid = self.ids.get(text)
        if tid is not None:
            out.append(tid)
        elif text in rev:
            for part in rev[text]:
                self._resegment(part, rev, out)
        else:
            out.extend(b for b in (self.byte_ids[x] for x in text.encode("utf-8")) if b is not None)


class Tokenizer:
    """Encode and decode text with a GGUF vocabulary, as llama.cpp does.

    Build with :meth:`from_gguf` (a path or ``ModelFile``) or :meth:`from_spec`.
    ``eos_ids`` holds every end-of-generation token (EOS, EOT, EOM and the
    control tokens llama.cpp recognises by text, such as ``<|eot_id|>``).
    """

    def __init__(self, spec: TokenizerSpec, *, cache: TokenizerCache | None = None) -> None:
        self.spec = spec
        self.vocab_size = len(spec.tokens)
        self.bos_id = spec.bos_id
        self.eos_id = spec.eos_id
        self._types = np.asarray(spec.token_types, dtype=np.int64)
        self._cache = cache
        self._lock = threading.Lock()
        self._models: tuple[HFTokenizer | None, _SpmModel | None] | None = None
        self.eos_ids: frozenset[int] = self._eog(spec)

    def _eog(self, spec: TokenizerSpec) -> frozenset[int]:
        """EOS, EOT, EOM and the control tokens llama.cpp ends generation on by their text
        (only texts of a matching length are decoded)."""
        eog = {i for i in (spec.eos_id, spec.eot_id, spec.eom_id) if i is not None}
        idx = np.flatnonzero(self._types == int(TokenType.CONTROL))
        if isinstance(spec.tokens, StringArray):
            idx = idx[np.isin(spec.tokens.byte_lengths()[idx], _EOG_BYTE_LENGTHS)]
        eog |= {i for i in idx.tolist() if spec.tokens[i] in _EOG_TEXTS}
        return frozenset(eog)

    @cached_property
    def _ids(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.spec.tokens)}

    @cached_property
    def _specials(self) -> list[tuple[str, int, bool]]:
        """Special tokens cut out of the text before tokenizing: longest first, then by id."""
        types, tokens = self._types, self.spec.tokens
        idx = np.flatnonzero(np.isin(types, list(_SPECIAL_TYPES))).tolist()
        specials = [(t, i) for i in idx if (t := tokens[i])]
        specials.sort(key=lambda ti: (-len(ti[0]), ti[1]))
        return [(t, i, int(types[i]) in _PARSE_ONLY_TYPES) for t, i in specials]

    @cached_property
    def special_ids(self) -> frozenset[int]:
        """Ids of the control, user-defined and unknown tokens (those with a text)."""
        return frozenset(i for _t, i, _p in self._specials)

    @property
    def _bpe(self) -> HFTokenizer | None:
        return self._built()[0]

    @property
    def _spm(self) -> _SpmModel | None:
        return self._built()[1]

    def _built(self) -> tuple[HFTokenizer | None, _SpmModel | None]:
        """The tokenizing model, built on first use (loading a model does not pay for it)."""
        models_ = self._models
        if models_ is None:
            with self._lock:
                if self._models is None:
                    if self.spec.model == "gpt2":
                        self._models = (self._load_bpe(), None)
                    else:
                        self._models = (None, _SpmModel(self.spec))
                models_ = self._models
        return models_

    def _load_bpe(self) -> HFTokenizer:
        """From the tokenizer cache when it holds this file's, else built (and cached)."""
        text = self._cache.read() if self._cache is not None else None
        if text is not None:
            try:
                return HFTokenizer.from_str(text)
            except Exception:  # a damaged entry (tokenizers raises its own types): rebuild it
                pass
        problems = _merge_problems(self.spec.tokens, self.spec.merges or [])
        if problems:
            raise TokenizerError(problems)
        tok = self._build_bpe(self.spec)
        if self._cache is not None:
            self._cache.write(tok.to_str())
        return tok

    @property
    def eog_ids(self) -> frozenset[int]:
        """Alias of :attr:`eos_ids` (llama.cpp's name: end-of-generation tokens)."""
        return self.eos_ids

    @property
    def chat_template(self) -> str | None:
        return self.spec.chat_template

    @classmethod
    def from_spec(cls, spec: TokenizerSpec, *, cache: TokenizerCache | None = None) -> Tokenizer:
        return cls(spec, cache=cache)

    @classmethod
    def from_gguf(cls, source: str | os.PathLike[str] | ModelFile) -> Tokenizer:
        """The tokenizer of a GGUF file (path or opened ``ModelFile``)."""
        from bitnet_sdk.model.gguf_file import ModelFile, read_model

        mf = source if isinstance(source, ModelFile) else read_model(source, strict=False)
        return cls(TokenizerSpec.from_metadata(mf.metadata))

    @staticmethod
    def _build_bpe(spec: TokenizerSpec) -> HFTokenizer:
        regexes, ignore_merges, _ = _PRE_TYPES[spec.pre or "default"]
        merges = []
        for m in spec.merges if spec.merges is not None else []:
            pos = m.find(" ", 1)  # llama.cpp splits at the first space after the first character
            if pos > 0:
                merges.append((m[:pos], m[pos + 1 :]))
        vocab = {t: i for i, t in enumerate(spec.tokens)}
        try:
            bpe = models.BPE(vocab, merges, ignore_merges=ignore_merges)
        except Exception as exc:  # tokenizers' own errors have no narrower Python type
            raise TokenizerError([Problem("bad_tokenizer", f"the merges do not fit the vocabulary: {exc}")]) from exc
        tok = HFTokenizer(bpe)
        splits = [pre_tokenizers.Split(Regex(r), "isolated") for r in regexes]
        tok.pre_tokenizer = pre_tokenizers.Sequence([*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        return tok

    # -- encoding ---------------------------------------------------------------

    def _partition(self, text: str, parse_special: bool) -> list[str | int]:
        fragments: list[str | int] = [text] if text else []
        for tok_text, tid, needs_parse in self._specials:
            if needs_parse and not parse_special:
                continue
            out: list[str | int] = []
            for frag in fragments:
                if isinstance(frag, int) or tok_text not in frag:
                    out.append(frag)
                    continue
                for k, part in enumerate(frag.split(tok_text)):
                    if k:
                        out.append(tid)
                    if part:
                        out.append(part)
            fragments = out
        return fragments

    def encode(self, text: str, add_bos: bool = True, *, parse_special: bool = False) -> list[int]:
        """Token ids of ``text``.

        ``add_bos`` adds the special tokens the file asks for, as llama.cpp's
        ``add_special``: BOS when ``tokenizer.ggml.add_bos_token`` (or the
        vocabulary's default) says so, EOS when ``add_eos_token`` does.
        ``parse_special`` turns control-token texts such as ``<|eot_id|>`` in
        ``text`` into their ids instead of tokenizing them as plain text.
        """
        out: list[int] = []
        if add_bos and self.spec.add_bos and self.bos_id is not None:
            out.append(self.bos_id)
        prev_special = True
        bpe, spm = self._built()
        for frag in self._partition(text, parse_special):
            if isinstance(frag, int):
                out.append(frag)
                prev_special = True
            elif bpe is not None:
                # encode_batch, not encode: only the batch call releases the interpreter lock, and
                # a long prompt takes seconds that other requests must not wait for
                out.extend(bpe.encode_batch([frag], add_special_tokens=False)[0].ids)
            else:
                assert spm is not None
                piece = (" " if self.spec.add_space_prefix and prev_special else "") + frag
                out.extend(spm.encode(piece.replace(" ", _SPM_SPACE)))
                prev_special = False
        if add_bos and self.spec.add_eos and self.eos_id is not None:
            out.append(self.eos_id)
        return out

    # -- decoding ---------------------------------------------------------------

    def token_bytes(self, token_id: int, *, special: bool = True) -> bytes:
        """The bytes token ``token_id`` stands for (llama.cpp's ``token_to_piece``).

        Control tokens give their text only with ``special``; byte-level BPE
        tokens map back through GPT-2's byte alphabet; ``<0xXX>`` tokens of a
        SentencePiece vocabulary give that byte and ``▁`` becomes a space.
        """
        if not 0 <= token_id < self.vocab_size:
            raise IndexError(f"token id {token_id} is outside the vocabulary (0..{self.vocab_size - 1})")
        text = self.spec.tokens[token_id]
        ttype = int(self._types[token_id])
        if ttype in (TokenType.CONTROL, TokenType.UNKNOWN, TokenType.UNUSED):
            return text.encode("utf-8") if special and ttype != TokenType.UNUSED else b""
        if ttype == TokenType.USER_DEFINED:
            return text.encode("utf-8")
        if self.spec.model == "gpt2":
            table = _unicode_to_byte()
            return b"".join(bytes([table[c]]) if c in table else c.encode("utf-8") for c in text)
        if ttype == TokenType.BYTE and len(text) == 6 and text.startswith("<0x"):
            return bytes([int(text[3:5], 16)])
        return text.replace(_SPM_SPACE, " ").encode("utf-8")

    def token_to_piece(self, token_id: int, *, special: bool = True) -> str:
        """:meth:`token_bytes` as text (invalid UTF-8 becomes U+FFFD)."""
        return self.token_bytes(token_id, special=special).decode("utf-8", errors="replace")

    def token_to_id(self, text: str) -> int | None:
        """Id of the token whose text is exactly ``text``, or None."""
        return self._ids.get(text)

    def decode_bytes(self, ids: Iterable[int], *, special: bool = False) -> bytes:
        """Concatenated token bytes; a SentencePiece vocabulary drops the space after a leading BOS."""
        ids = list(ids)
        data = b"".join(self.token_bytes(int(i), special=special) for i in ids)
        if self.spec.model != "gpt2" and ids and ids[0] == self.bos_id and data.startswith(b" "):
            data = data[1:]
        return data

    def decode(self, ids: Sequence[int], *, special: bool = False) -> str:
        """Text of ``ids``; control tokens (BOS, EOS, ...) are left out unless ``special``."""
        return self.decode_bytes(ids, special=special).decode("utf-8", errors="replace")
