"""``--tokenizer bytes``: one id per UTF-8 byte, from a fixed vocabulary."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmtie.data.dictionary import Dictionary
from lmtie.data.tokenizers.base import Tokenizer, register_tokenizer


def bytes_dictionary() -> Dictionary:
    """The fixed byte vocabulary: specials 0-3, then ``<0x00>``..``<0xFF>`` as ids 4-259, padded to 264."""
    d = Dictionary()
    for b in range(256):
        d.add_symbol(f"<0x{b:02X}>", n=0)
    d.pad_to_multiple_(8)
    return d


@register_tokenizer("bytes")
class ByteTokenizer(Tokenizer):
    """One id per UTF-8 byte (id = byte + 4); needs no training and has no unknowns."""

    fixed_vocabulary = True
    line_cut = rb"[\x00-\x7f\xc0-\xff]"  # any byte that starts a character (or is invalid): not inside one

    @classmethod
    def build(cls, dictionary: Dictionary | None, model_path: str | Path | None = None,
              threads: int = -1) -> "ByteTokenizer":
        return cls(dictionary or bytes_dictionary())

    def _ids(self, line: str) -> np.ndarray:
        return np.frombuffer(line.encode("utf-8"), dtype=np.uint8).astype(np.int64) + 4

    def _text(self, ids: list[int]) -> str:
        raw = bytes(i - 4 for i in ids if 4 <= i < 260)
        return raw.decode("utf-8", errors="replace")
