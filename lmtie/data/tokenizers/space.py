"""``--tokenizer space``: words, as fairseq-preprocess splits them."""

from __future__ import annotations

import numpy as np

from lmtie.data.dictionary import tokenize_line
from lmtie.data.tokenizers.base import Tokenizer, register_tokenizer


@register_tokenizer("space")
class SpaceTokenizer(Tokenizer):
    """Word level (WikiText style): whitespace-separated tokens looked up in the dictionary."""

    symbols = staticmethod(tokenize_line)
    line_cut = rb"[ \t]"  # words never hold a space or a tab, so a line may be cut before one

    def _ids(self, line: str) -> np.ndarray:
        index = self.dictionary.index
        return np.fromiter((index(w) for w in tokenize_line(line)), dtype=np.int64)

    def _text(self, ids: list[int]) -> str:
        return " ".join(self.dictionary[i] for i in ids)
