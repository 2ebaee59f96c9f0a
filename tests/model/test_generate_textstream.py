"""Streaming detokenization (multi-byte UTF-8 across tokens) and stop strings."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bitnet_sdk.model.textstream import IncrementalDetokenizer, StopMatcher

TEXT = "Grüße, 世界! 🙂 ok"


def byte_vocab_decode(ids: Sequence[int]) -> str:
    """A byte-level vocabulary: token id i is the single byte i (as GPT-2 BPE falls back to)."""
    return bytes(ids).decode("utf-8", errors="replace")


def stream(text: str, context: Sequence[int] = ()) -> list[str]:
    detok = IncrementalDetokenizer(byte_vocab_decode, context)
    pieces = [detok.push(b) for b in text.encode("utf-8")]
    pieces.append(detok.flush())
    return pieces


def test_multibyte_characters_split_over_tokens_come_out_whole() -> None:
    pieces = stream(TEXT)
    assert "".join(pieces) == TEXT
    assert all("\ufffd" not in p for p in pieces)
    # the 4-byte emoji is released exactly once, by its last byte
    emoji_end = len(TEXT[: TEXT.index("🙂") + 1].encode("utf-8")) - 1
    assert pieces[emoji_end] == "🙂"
    assert pieces[emoji_end - 3 : emoji_end] == ["", "", ""]


def test_prompt_context_is_not_repeated() -> None:
    prompt = b"Hallo "
    assert "".join(stream("Wörld", list(prompt))) == "Wörld"


def test_flush_releases_an_incomplete_character_as_replacement() -> None:
    detok = IncrementalDetokenizer(byte_vocab_decode)
    assert detok.push("é".encode()[0]) == ""
    assert detok.flush() == "\ufffd"


def test_sentencepiece_style_leading_space_survives_the_window() -> None:
    # a decoder that strips one leading space, as SentencePiece does for the first piece
    vocab = {0: " Hello", 1: " world", 2: "!"}

    def decode(ids: Sequence[int]) -> str:
        return "".join(vocab[i] for i in ids).removeprefix(" ")

    detok = IncrementalDetokenizer(decode, context=[0])
    assert detok.push(1) + detok.push(2) == " world!"


def run_stops(pieces: list[str], stops: list[str]) -> tuple[str, bool]:
    m = StopMatcher(stops)
    out, stopped = [], False
    for p in pieces:
        text, stopped = m.push(p)
        out.append(text)
        if stopped:
            break
    if not stopped:
        out.append(m.flush())
    return "".join(out), stopped


@pytest.mark.parametrize(
    ("pieces", "stops", "expected"),
    [
        (["Hello", " wor", "ld", "\n\nUser:", " more"], ["\n\nUser:"], ("Hello world", True)),
        (["ab", "c<", "/s", ">tail"], ["</s>"], ("abc", True)),
        (["a<", "b"], ["<c>"], ("a<b", False)),  # partial match released once it fails
        (["x", "STO"], ["STOP"], ("xSTO", False)),  # end of text: held-back tail flushed
        (["one", "two", "three"], ["two", "thr"], ("one", True)),  # earliest stop wins
        (["plain"], [], ("plain", False)),
    ],
)
def test_stop_strings(pieces: list[str], stops: list[str], expected: tuple[str, bool]) -> None:
    assert run_stops(pieces, stops) == expected


def test_text_that_may_start_a_stop_is_held_back() -> None:
    m = StopMatcher(["###"])
    assert m.push("abc#") == ("abc", False)
    assert m.push("#") == ("", False)
    assert m.push("x") == ("##x", False)


def test_real_byte_level_bpe_vocabulary(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bitnet_sdk.model.tokenizer import Tokenizer
    from bitnet_sdk.testing.synthetic import build_model

    tok = Tokenizer.from_gguf(build_model(tmp_path / "vocab.gguf", n_layers=1))
    text = "Grüße aus 日本語 🚀🙂 ok"
    ids = tok.encode(text, add_bos=False)
    # the synthetic vocabulary splits rare characters into byte tokens
    assert any("\ufffd" in tok.decode([i]) for i in ids)
    detok = IncrementalDetokenizer(tok.decode)
    pieces = [detok.push(i) for i in ids] + [detok.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
