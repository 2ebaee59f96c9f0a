"""The built byte-level BPE tokenizer of a model file, kept beside the weight cache.

Building a ``tokenizers`` BPE model from a GGUF vocabulary decodes every token
and merge into Python objects and checks the merges (a LLaMA-3 vocabulary: 128k
tokens, 280k merges, a few tenths of a second, more on a loaded machine). The
built tokenizer's JSON is written here once and read back by later loads of the
same file version (``tokenizers`` parses it natively).

Key: the model file's identity (``weight_cache.file_identity``: path, size,
mtime, inode) and :data:`VERSION`, hashed into the file name; a new version of a
model file replaces the old entry of the same path. Only vocabularies of at least
:data:`MIN_TOKENS` tokens are cached (small ones build in milliseconds, and tests
do not fill the cache). ``BITNET_TOKENIZER_CACHE=off`` disables it. A damaged
entry fails to parse and is rebuilt and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from bitnet_sdk.model.weight_cache import cache_root, file_identity

__all__ = ["ENABLE_ENV", "MIN_TOKENS", "VERSION", "TokenizerCache"]

log = logging.getLogger(__name__)

ENABLE_ENV = "BITNET_TOKENIZER_CACHE"
#: Bumped whenever the way the tokenizer is built from a vocabulary changes.
VERSION = 1
#: Smaller vocabularies are not cached.
MIN_TOKENS = 32768


class TokenizerCache:
    """One model file's cache entry: ``read`` the tokenizer JSON, or ``write`` it."""

    def __init__(self, model_path: str | os.PathLike[str]) -> None:
        path = Path(model_path).resolve()
        identity = {**file_identity(path), "version": VERSION}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
        self._prefix = hashlib.sha256(f"{path}\0tokenizer".encode()).hexdigest()[:16]
        self.path = cache_root("tokenizers") / f"{self._prefix}-{digest}.json"

    @classmethod
    def for_file(cls, model_path: str | os.PathLike[str] | None, n_tokens: int) -> TokenizerCache | None:
        """The entry of ``model_path``, or None when caching is off, the vocabulary is small
        or the file cannot be identified."""
        off = os.environ.get(ENABLE_ENV, "").strip().lower() in ("0", "off", "false", "no")
        if off or model_path is None or n_tokens < MIN_TOKENS:
            return None
        try:
            return cls(model_path)
        except OSError:
            return None

    def read(self) -> str | None:
        """The cached tokenizer JSON, or None."""
        try:
            return self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def write(self, text: str) -> None:
        """Store ``text`` (atomically); failures are logged, never raised."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            for old in self.path.parent.glob(f"{self._prefix}-*.json"):
                if old != self.path:
                    old.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not write the tokenizer cache %s: %s", self.path, exc)
