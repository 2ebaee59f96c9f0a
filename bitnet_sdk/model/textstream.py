"""Turning a stream of token ids into a stream of text, safely.

Two problems sit between "the model produced token 1234" and "print this":

* A character may span tokens: byte-level BPE splits a multi-byte UTF-8
  character (an emoji, most CJK) over several tokens, and decoding one token
  alone yields U+FFFD. ``IncrementalDetokenizer`` decodes a small window of
  recent tokens and releases text only once it no longer ends in an incomplete
  character (the prefix/read-offset scheme Hugging Face's text-generation-
  inference uses), which also keeps SentencePiece's leading-space rule right.
* A stop string may span tokens and must not reach the user. ``StopMatcher``
  holds back the longest tail of the text that could still begin a stop
  string and releases it once it cannot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["IncrementalDetokenizer", "StopMatcher"]

_REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Feed token ids one at a time, get the text they complete.

    ``decode`` turns a list of ids into text. ``context`` are ids already
    shown (the prompt's tail); they only serve as the window's left edge so
    that the first generated token decodes as it would mid-sentence.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str], context: Sequence[int] = ()) -> None:
        self._decode = decode
        self._ids: list[int] = list(context[-4:])
        self._prefix = 0  # window start
        self._read = len(self._ids)  # first id whose text is not released yet

    def push(self, token_id: int) -> str:
        """Add one token; return the newly completed text (possibly empty)."""
        self._ids.append(token_id)
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        new_text = self._decode(self._ids[self._prefix :])
        if len(new_text) > len(prefix_text) and not new_text.endswith(_REPLACEMENT):
            piece = new_text[len(prefix_text) :]
            self._prefix, self._read = self._read, len(self._ids)
            return piece
        return ""

    def flush(self) -> str:
        """Release whatever is held back (an incomplete character decodes as U+FFFD)."""
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        new_text = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return new_text[len(prefix_text) :] if new_text.startswith(prefix_text) else ""


class StopMatcher:
    """Find stop strings in streamed text without ever releasing one.

    ``push(piece)`` returns ``(text to release, stopped)``. Once stopped, the
    text before the stop string has been released and nothing after it is.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._pending = ""
        self.stopped = False

    def push(self, piece: str) -> tuple[str, bool]:
        if self.stopped:
            return "", True
        if not self._stops:
            return piece, False
        text = self._pending + piece
        hits = [i for i in (text.find(s) for s in self._stops) if i >= 0]
        if hits:
            self.stopped, self._pending = True, ""
            return text[: min(hits)], True
        keep = self._held_back(text)
        self._pending = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep], False

    def flush(self) -> str:
        """Release held-back text at the end of generation."""
        text, self._pending = self._pending, ""
        return "" if self.stopped else text

    def _held_back(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        best = 0
        for s in self._stops:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best
