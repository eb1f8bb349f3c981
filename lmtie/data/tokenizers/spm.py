"""``--tokenizer spm``: SentencePiece pieces, from a model trained on train or given (``--spm-model``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

from lmtie.data.dictionary import Dictionary
from lmtie.data.tokenizers.base import Tokenizer, _join_with_eos, register_tokenizer
from lmtie.data.tokenizers.char import char_symbol
from lmtie.errors import UserError

_TOO_HIGH = re.compile(r"value <= (\d+)")
_TOO_LOW = re.compile(r"required_chars\. (\d+) vs (\d+)")


@register_tokenizer("spm")
class SpmTokenizer(Tokenizer):
    """SentencePiece pieces mapped onto the dictionary by a fixed id table (see :func:`spm_dictionary`)."""

    model_file = "spm.model"

    def __init__(self, model_path: str | Path, dictionary: Dictionary | None = None, threads: int = -1):
        import sentencepiece as spm

        self.threads = threads  # spm's batch encoder threads; -1 = all cores
        self.model_path = Path(model_path)
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(self.model_path))
        except (RuntimeError, OSError) as e:
            raise UserError(f"{self.model_path}: not a SentencePiece model ({e}); pass a .model file "
                            "written by spm_train or lmtie-preprocess")
        super().__init__(dictionary if dictionary is not None else spm_dictionary(self.sp))
        self.to_dict = spm_to_dict_table(self.sp, self.dictionary)
        self.to_spm = _inverse_table(self.to_dict, len(self.dictionary), self.sp.unk_id())

    @classmethod
    def build(cls, dictionary: Dictionary | None, model_path: str | Path | None = None,
              threads: int = -1) -> "SpmTokenizer":
        if model_path is None:
            raise UserError("--tokenizer spm needs a SentencePiece model (--spm-model or training data)")
        return cls(model_path, dictionary, threads)

    @classmethod
    def train_model(cls, cfg, train, model_path: Path) -> None:
        """Train a byte-fallback model on ``train.plain`` whose specials already sit at fairseq's ids (0-3)."""
        import sentencepiece as spm

        spm.set_random_generator_seed(cfg.seed)
        prefix = model_path.with_suffix("")
        try:
            spm.SentencePieceTrainer.train(
                input=str(train.plain), model_prefix=str(prefix), vocab_size=cfg.spm_vocab_size,
                model_type=cfg.spm_model_type, bos_id=0, pad_id=1, eos_id=2, unk_id=3, byte_fallback=True,
                normalization_rule_name="identity", remove_extra_whitespaces=False,
                character_coverage=cfg.spm_character_coverage, input_sentence_size=cfg.spm_sample_sentences,
                shuffle_input_sentence=True, max_sentence_length=1 << 16, num_threads=cfg.workers, minloglevel=2)
        except RuntimeError as e:
            raise UserError(_train_error(cfg, train.given, str(e)))
        prefix.with_suffix(".vocab").unlink(missing_ok=True)

    def encode_lines(self, lines: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        encoded = self.sp.encode(list(lines), num_threads=self.threads)
        return _join_with_eos(encoded, self.dictionary.eos(), self.to_dict)

    def _text(self, ids: list[int]) -> str:
        return self.sp.decode([int(self.to_spm[i]) for i in ids if 0 <= i < len(self.to_spm)])


def _train_error(cfg, given: Path, msg: str) -> str:
    where = f"--spm-vocab-size {cfg.spm_vocab_size}"
    if m := _TOO_HIGH.search(msg):
        return f"{where} is larger than {given} allows; use --spm-vocab-size {m.group(1)} or less"
    if m := _TOO_LOW.search(msg):
        return (f"{where} is too small for the characters of {given}; use --spm-vocab-size "
                f"{m.group(2)} or more (or lower --spm-character-coverage)")
    return f"SentencePiece training on {given} failed: {msg.splitlines()[0]}"


def _special_target(sp, i: int) -> int | None:
    """The fairseq special an spm control/unknown id maps onto, if any."""
    return {sp.bos_id(): 0, sp.pad_id(): 1, sp.eos_id(): 2, sp.unk_id(): 3}.get(i) if i >= 0 else None


def piece_symbol(piece: str) -> str:
    """A piece as a dict.txt symbol: characters dict.txt cannot hold (e.g. a tab) are escaped."""
    return "".join(map(char_symbol, piece)) if any(c.isspace() or not c.isprintable() for c in piece) else piece


def spm_dictionary(sp) -> Dictionary:
    """Every spm piece, in spm id order, after fairseq's four specials; spm's own unk/bos/eos/pad
    map onto those specials instead of getting a second entry (so pad and unk never clash)."""
    d = Dictionary()
    for i in range(sp.get_piece_size()):
        if _special_target(sp, i) is not None:
            continue
        sym = piece_symbol(sp.id_to_piece(i))
        if sym in d:
            raise UserError(f"SentencePiece piece {sp.id_to_piece(i)!r} (id {i}) collides with another piece "
                            f"as dict.txt symbol {sym!r}; retrain the model without that user symbol")
        d.add_symbol(sym, n=0)
    d.pad_to_multiple_(8)
    return d


def spm_to_dict_table(sp, dictionary: Dictionary) -> np.ndarray:
    """spm id -> dictionary id (specials by role, other pieces by their text)."""
    table = np.empty(sp.get_piece_size(), dtype=np.int64)
    for i in range(sp.get_piece_size()):
        special = _special_target(sp, i)
        table[i] = special if special is not None else dictionary.index(piece_symbol(sp.id_to_piece(i)))
    return table


def _inverse_table(table: np.ndarray, size: int, unk: int) -> np.ndarray:
    inverse = np.full(size, unk, dtype=np.int64)
    for spm_id in range(len(table) - 1, -1, -1):  # lowest spm id wins for duplicates
        inverse[table[spm_id]] = spm_id
    return inverse
