"""Tokenisers turn lines of text into ids of a fairseq :class:`Dictionary` and back, and are
looked up by name (``--tokenizer``) in a registry, so a new one is one class in one file.

Every tokeniser appends ``</s>`` to each line, as ``fairseq-preprocess`` does, and decodes
``</s>`` as a newline, so ``decode(encode(text)) == text`` for newline-terminated text with
``char``, ``bytes`` and ``spm`` (``space`` normalises whitespace, like fairseq).

The protocol a :class:`Tokenizer` subclass follows; preprocessing, workers, ``load_tokenizer``
and checkpoints use only this, never the name:

- ``@register_tokenizer("name")`` sets ``name``, which manifest.json and checkpoints record.
- ``_ids(line)`` and ``_text(ids)`` (or ``encode_lines``) do the encoding and decoding.
- How dict.txt is made, one of three:

  * counted (the default): ``symbols(line)`` gives the symbols of a train line (a picklable
    static method, for ``--workers``) and ``dict_symbol(symbol)`` how one is written in
    dict.txt; the counts are finalised as fairseq does (``--thresholdsrc``, ``--nwordssrc``),
    or ``--srcdict`` replaces them;
  * ``fixed_vocabulary = True``: ``build(None)`` makes the dictionary; no train text and no
    ``--srcdict``;
  * ``model_file = "x.model"``: a model, trained by ``train_model(cfg, train, path)`` (the
    PreprocessConfig; ``train.plain`` is the text file, ``train.given`` its name for messages)
    or copied from ``--spm-model``, kept under that name in the data-bin and as bytes in
    checkpoints; ``build(None, path)`` derives the dictionary from it, ``--srcdict`` may replace it.

- ``build(dictionary, model_path, threads)`` rebuilds the tokeniser from a data-bin or a
  checkpoint; it reads the model file completely (checkpoints hand it a temporary file).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import ClassVar, Iterable, Sequence

import numpy as np

from lmtie.data.dictionary import Dictionary
from lmtie.data.sources import LINE_END
from lmtie.errors import UserError


class Tokenizer:
    """Base: ``encode_lines`` is the fast path used by preprocessing; the rest derives from it."""

    name: ClassVar[str]
    fixed_vocabulary: ClassVar[bool] = False
    model_file: ClassVar[str | None] = None
    # A regex over UTF-8 bytes: a line may be cut right before any byte it matches, and encoding
    # (or counting) the pieces one after another gives exactly the line's ids (symbols). Then
    # preprocessing reads a long line ~1 MB at a time; None: a line is encoded whole.
    line_cut: ClassVar[bytes | None] = None

    def __init__(self, dictionary: Dictionary):
        self.dictionary = dictionary

    @classmethod
    def build(cls, dictionary: Dictionary | None, model_path: str | Path | None = None,
              threads: int = -1) -> "Tokenizer":
        return cls(dictionary)

    @staticmethod
    def symbols(line: str) -> Iterable[str]:
        raise NotImplementedError

    @staticmethod
    def dict_symbol(symbol: str) -> str:
        return symbol

    @classmethod
    def train_model(cls, cfg, train, model_path: Path) -> None:
        raise NotImplementedError

    def encode_lines(self, lines: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(concatenated ids with one ``</s>`` per line, per-line lengths)."""
        per_line = [self._ids(line) for line in lines]
        return _join_with_eos(per_line, self.dictionary.eos())

    def _ids(self, line: str) -> np.ndarray:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``: one ``</s>`` per line, lines ending as preprocessing ends them (``\\n``, ``\\r\\n``,
        a lone ``\\r``); a final line end does not start a new line."""
        lines = LINE_END.split(text)
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


def _join_with_eos(per_line: list[Sequence[int]], eos: int, table: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate lines with ``eos`` after each (ids optionally mapped through ``table``), vectorised.

    The ids are int32 (every vocabulary fits) and no temporary is as large as them but the output's
    own: ``per_line`` (a list the caller made for this call) is emptied as soon as it is read, the
    ``eos`` go in with a one-byte mask, and ``table`` maps in place, a slice at a time.
    """
    lens = np.fromiter(map(len, per_line), dtype=np.int64, count=len(per_line))
    if per_line and all(isinstance(a, np.ndarray) for a in per_line):
        ids = np.concatenate(per_line, dtype=np.int32, casting="same_kind")
    else:
        ids = np.fromiter(itertools.chain.from_iterable(per_line), dtype=np.int32, count=int(lens.sum()))
    per_line.clear()
    if table is not None:
        for s in range(0, len(ids), _MAP_CHUNK):
            ids[s:s + _MAP_CHUNK] = table[ids[s:s + _MAP_CHUNK]]
    flat = np.insert(ids, np.cumsum(lens), eos)  # eos after each line
    return flat, lens + 1


_MAP_CHUNK = 1 << 20


TOKENIZERS: dict[str, type[Tokenizer]] = {}  # name -> class, in registration order


def register_tokenizer(name: str):
    """Class decorator: make a Tokenizer subclass ``--tokenizer name``."""

    def wrap(cls: type[Tokenizer]) -> type[Tokenizer]:
        if TOKENIZERS.get(name, cls) is not cls:
            raise ValueError(f"tokenizer {name!r} is already registered")
        cls.name = name
        TOKENIZERS[name] = cls
        return cls

    return wrap


def tokenizer_class(name: str) -> type[Tokenizer]:
    if name not in TOKENIZERS:
        raise UserError(f"--tokenizer {name!r} is unknown; choose one of {', '.join(TOKENIZERS)}")
    return TOKENIZERS[name]


def make_tokenizer(name: str, dictionary: Dictionary | None, model_path: str | Path | None = None,
                   threads: int = -1) -> Tokenizer:
    """Build a tokeniser by name (``--tokenizer``)."""
    return tokenizer_class(name).build(dictionary, model_path, threads)
