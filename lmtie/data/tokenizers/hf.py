"""``--tokenizer hf``: a Hugging Face fast tokenizer (``tokenizer.json``), for models imported from HF.

The file is the tokeniser's model (kept in checkpoints as bytes, like SentencePiece's); ids are
the HF model's own. As every lmtie tokeniser, each line gets one ``</s>`` (the dictionary's eos,
which an import sets to the model's ``eos_token_id``) and no other special token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from lmtie.data.dictionary import Dictionary
from lmtie.data.tokenizers.base import Tokenizer, _join_with_eos, register_tokenizer
from lmtie.errors import UserError


def load_tokenizer_json(path: str | Path):
    """A ``tokenizers.Tokenizer`` from ``path``; a missing library or a bad file is one UserError."""
    try:
        from tokenizers import Tokenizer as FastTokenizer
    except ImportError:
        raise UserError("the hf tokenizer needs the tokenizers library: pip install 'lmtie[hf]'")
    try:
        return FastTokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises its own Exception subclass for every parse error
        raise UserError(f"{path}: not a Hugging Face tokenizer.json ({str(e).splitlines()[0][:120]})")


@register_tokenizer("hf")
class HFTokenizer(Tokenizer):
    """Ids from ``tokenizers``' encoder, without its special tokens; ``</s>`` after every line."""

    model_file = "tokenizer.json"

    def __init__(self, dictionary: Dictionary, model_path: str | Path):
        super().__init__(dictionary)
        self.fast = load_tokenizer_json(model_path)

    @classmethod
    def build(cls, dictionary: Dictionary | None, model_path: str | Path | None = None,
              threads: int = -1) -> "HFTokenizer":
        if dictionary is None or model_path is None:
            raise UserError("--tokenizer hf needs a tokenizer.json and the model's dictionary (import the model "
                            "directory with lmtie.load(DIR))")
        return cls(dictionary, model_path)

    @classmethod
    def train_model(cls, cfg, train, model_path: Path) -> None:
        raise UserError("--tokenizer hf cannot be trained; pass --spm-model PATH/tokenizer.json of the HF model")

    def encode_lines(self, lines: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        encoded = self.fast.encode_batch(list(lines), add_special_tokens=False)
        return _join_with_eos([e.ids for e in encoded], self.dictionary.eos())

    def _text(self, ids: list[int]) -> str:
        return self.fast.decode(ids, skip_special_tokens=False)
