"""Tokenisers that turn lines of text into ids of a fairseq :class:`Dictionary` and back.

Every tokeniser appends ``</s>`` to each line, as ``fairseq-preprocess`` does, and decodes
``</s>`` as a newline, so ``decode(encode(text)) == text`` for newline-terminated text with
``char``, ``bytes`` and ``spm`` (``space`` normalises whitespace, like fairseq).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from lmtie.data.dictionary import Dictionary, tokenize_line
from lmtie.errors import UserError

TOKENIZERS = ("space", "char", "bytes", "spm")
_ESCAPE = re.compile(r"<U\+([0-9A-F]{4,6})>")


class Tokenizer:
    """Base: ``encode_lines`` is the fast path used by preprocessing; the rest derives from it."""

    name = "base"

    def __init__(self, dictionary: Dictionary):
        self.dictionary = dictionary

    def encode_lines(self, lines: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(concatenated ids with one ``</s>`` per line, per-line lengths)."""
        per_line = [self._ids(line) for line in lines]
        return _join_with_eos(per_line, self.dictionary.eos())

    def _ids(self, line: str) -> np.ndarray:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``: one ``</s>`` per line (a final newline does not start a new line)."""
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return self.encode_lines(lines)[0].tolist()

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``: ``</s>`` becomes a newline; ``<s>`` and ``<pad>`` vanish."""
        out, run = [], []
        for i in (int(x) for x in ids):
            if i == self.dictionary.eos():
                out.append(self._text(run) + "\n")
                run = []
            elif i not in (self.dictionary.bos(), self.dictionary.pad()):
                run.append(i)
        return "".join(out) + self._text(run)

    def _text(self, ids: list[int]) -> str:
        raise NotImplementedError


def _join_with_eos(per_line: Sequence[Sequence[int]], eos: int, table: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate lines with ``eos`` after each (ids optionally mapped through ``table``), vectorised."""
    lens = np.fromiter(map(len, per_line), dtype=np.int64, count=len(per_line))
    ids = np.fromiter(itertools.chain.from_iterable(per_line), dtype=np.int64, count=int(lens.sum()))
    if table is not None:
        ids = table[ids]
    flat = np.full(len(ids) + len(lens), eos, dtype=np.int64)
    flat[np.arange(len(ids)) + np.repeat(np.arange(len(lens)), lens)] = ids  # shift by the eos before each
    return flat, lens + 1


class SpaceTokenizer(Tokenizer):
    """Word level (WikiText style): whitespace-separated tokens looked up in the dictionary."""

    name = "space"

    def _ids(self, line: str) -> np.ndarray:
        index = self.dictionary.index
        return np.fromiter((index(w) for w in tokenize_line(line)), dtype=np.int64)

    def _text(self, ids: list[int]) -> str:
        return " ".join(self.dictionary[i] for i in ids)


def char_symbol(ch: str) -> str:
    """A dict.txt-safe name: whitespace and unprintable characters become ``<U+XXXX>``."""
    return f"<U+{ord(ch):04X}>" if (ch.isspace() or not ch.isprintable()) else ch


def char_of_symbol(sym: str) -> str | None:
    m = _ESCAPE.fullmatch(sym)
    if m:
        return chr(int(m.group(1), 16))
    return sym if len(sym) == 1 else None


class CharTokenizer(Tokenizer):
    """One id per Unicode character; lookups are vectorised over code points."""

    name = "char"

    def __init__(self, dictionary: Dictionary):
        super().__init__(dictionary)
        pairs = sorted((ord(c), i) for i, s in enumerate(dictionary.symbols)
                       if i >= dictionary.nspecial and (c := char_of_symbol(s)) is not None)
        # a sentinel code point -1 (never in text) keeps the arrays non-empty
        self._cps = np.array([-1] + [p[0] for p in pairs], dtype=np.int64)
        self._ids_of = np.array([dictionary.unk()] + [p[1] for p in pairs], dtype=np.int64)

    def _ids(self, line: str) -> np.ndarray:
        cps = np.frombuffer(line.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        pos = np.searchsorted(self._cps, cps).clip(max=len(self._cps) - 1)
        return np.where(self._cps[pos] == cps, self._ids_of[pos], self.dictionary.unk())

    def _text(self, ids: list[int]) -> str:
        d = self.dictionary
        return "".join(d.unk_word if i == d.unk() else (char_of_symbol(d[i]) or d.unk_word) for i in ids)


def bytes_dictionary() -> Dictionary:
    """The fixed byte vocabulary: specials 0-3, then ``<0x00>``..``<0xFF>`` as ids 4-259, padded to 264."""
    d = Dictionary()
    for b in range(256):
        d.add_symbol(f"<0x{b:02X}>", n=0)
    d.pad_to_multiple_(8)
    return d


class ByteTokenizer(Tokenizer):
    """One id per UTF-8 byte (id = byte + 4); needs no training and has no unknowns."""

    name = "bytes"

    def _ids(self, line: str) -> np.ndarray:
        return np.frombuffer(line.encode("utf-8"), dtype=np.uint8).astype(np.int64) + 4

    def _text(self, ids: list[int]) -> str:
        raw = bytes(i - 4 for i in ids if 4 <= i < 260)
        return raw.decode("utf-8", errors="replace")


class SpmTokenizer(Tokenizer):
    """SentencePiece pieces mapped onto the dictionary by a fixed id table (see :func:`spm_dictionary`)."""

    name = "spm"

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

    def encode_lines(self, lines: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        encoded = self.sp.encode(list(lines), num_threads=self.threads)
        return _join_with_eos(encoded, self.dictionary.eos(), self.to_dict)

    def _text(self, ids: list[int]) -> str:
        return self.sp.decode([int(self.to_spm[i]) for i in ids if 0 <= i < len(self.to_spm)])


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


def make_tokenizer(name: str, dictionary: Dictionary | None, model_path: str | Path | None = None,
                   threads: int = -1) -> Tokenizer:
    """Build a tokeniser by name (``--tokenizer``)."""
    if name == "spm":
        if model_path is None:
            raise UserError("--tokenizer spm needs a SentencePiece model (--spm-model or training data)")
        return SpmTokenizer(model_path, dictionary, threads)
    if name == "bytes":
        return ByteTokenizer(dictionary or bytes_dictionary())
    cls = {"space": SpaceTokenizer, "char": CharTokenizer}.get(name)
    if cls is None:
        raise UserError(f"--tokenizer {name!r} is unknown; choose one of {', '.join(TOKENIZERS)}")
    if dictionary is None:
        raise ValueError(f"tokenizer {name} needs a dictionary")
    return cls(dictionary)
