"""``--tokenizer char``: one id per Unicode character."""

from __future__ import annotations

import re

import numpy as np

from lmtie.data.dictionary import Dictionary
from lmtie.data.tokenizers.base import Tokenizer, register_tokenizer

_ESCAPE = re.compile(r"<U\+([0-9A-F]{4,6})>")


def char_symbol(ch: str) -> str:
    """A dict.txt-safe name: whitespace and unprintable characters become ``<U+XXXX>``."""
    return f"<U+{ord(ch):04X}>" if (ch.isspace() or not ch.isprintable()) else ch


def char_of_symbol(sym: str) -> str | None:
    m = _ESCAPE.fullmatch(sym)
    if m:
        return chr(int(m.group(1), 16))
    return sym if len(sym) == 1 else None


@register_tokenizer("char")
class CharTokenizer(Tokenizer):
    """One id per Unicode character; lookups are vectorised over code points."""

    dict_symbol = staticmethod(char_symbol)
    line_cut = rb"[\x00-\x7f\xc0-\xff]"  # any byte that starts a character (or is invalid): not inside one

    def __init__(self, dictionary: Dictionary):
        super().__init__(dictionary)
        pairs = sorted((ord(c), i) for i, s in enumerate(dictionary.symbols)
                       if i >= dictionary.nspecial and (c := char_of_symbol(s)) is not None)
        # a sentinel code point -1 (never in text) keeps the arrays non-empty
        self._cps = np.array([-1] + [p[0] for p in pairs], dtype=np.int64)
        self._ids_of = np.array([dictionary.unk()] + [p[1] for p in pairs], dtype=np.int64)

    @staticmethod
    def symbols(line: str) -> str:
        return line  # a str iterates over its characters, so counting stays in C

    def _ids(self, line: str) -> np.ndarray:
        cps = np.frombuffer(line.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        pos = np.searchsorted(self._cps, cps).clip(max=len(self._cps) - 1)
        return np.where(self._cps[pos] == cps, self._ids_of[pos], self.dictionary.unk())

    def _text(self, ids: list[int]) -> str:
        d = self.dictionary
        return "".join(d.unk_word if i == d.unk() else (char_of_symbol(d[i]) or d.unk_word) for i in ids)
