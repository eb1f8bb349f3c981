"""A fairseq-compatible vocabulary: ``dict.txt`` in, the same ids out.

Layout (fairseq ``fairseq/data/dictionary.py``): ``<s>``=0, ``<pad>``=1, ``</s>``=2,
``<unk>``=3 are built in and never written; each file line is ``symbol count`` with an
optional trailing ``#fairseq:overwrite``; ``finalize`` sorts by count (ties alphabetical)
and pads the length to a multiple of ``padding_factor`` with ``madeupwordNNNN``.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterable

from lmtie.errors import UserError
from lmtie.io import atomic_write_text

if TYPE_CHECKING:
    import torch

_SPACE = re.compile(r"\s+")
_OVERWRITE = "#fairseq:overwrite"


class DuplicateSymbolError(UserError, RuntimeError):
    """A dict.txt symbol seen twice without ``#fairseq:overwrite``: a UserError for lmtie's commands, and
    the RuntimeError code written for fairseq catches."""


def tokenize_line(line: str) -> list[str]:
    """Split on any run of whitespace, as fairseq's ``tokenize_line`` does."""
    return _SPACE.sub(" ", line).strip().split()


class Dictionary:
    """Maps symbols to consecutive integer ids and back."""

    def __init__(self, bos: str = "<s>", pad: str = "<pad>", eos: str = "</s>", unk: str = "<unk>",
                 extra_special_symbols: Iterable[str] = ()):
        self.bos_word, self.pad_word, self.eos_word, self.unk_word = bos, pad, eos, unk
        self.symbols: list[str] = []
        self.count: list[int] = []
        self.indices: dict[str, int] = {}
        self.bos_index = self.add_symbol(bos)
        self.pad_index = self.add_symbol(pad)
        self.eos_index = self.add_symbol(eos)
        self.unk_index = self.add_symbol(unk)
        for s in extra_special_symbols:
            self.add_symbol(s)
        self.nspecial = len(self.symbols)

    # --- the mapping -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.symbols)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dictionary) and self.symbols == other.symbols

    def __getitem__(self, idx: int) -> str:
        """The symbol of ``idx`` (negative: counted from the end, as a list), ``<unk>`` past the end (as fairseq)."""
        return self.symbols[idx] if idx < len(self.symbols) else self.unk_word

    def get_count(self, idx: int) -> int:
        return self.count[idx]

    def unk_string(self, escape: bool = False) -> str:
        """``<unk>``, or escaped as ``<<unk>>``."""
        return f"<{self.unk_word}>" if escape else self.unk_word

    def __contains__(self, sym: str) -> bool:
        return sym in self.indices

    def index(self, sym: str) -> int:
        return self.indices.get(sym, self.unk_index)

    def bos(self) -> int:
        return self.bos_index

    def pad(self) -> int:
        return self.pad_index

    def eos(self) -> int:
        return self.eos_index

    def unk(self) -> int:
        return self.unk_index

    def add_symbol(self, word: str, n: int = 1, overwrite: bool = False) -> int:
        """Add ``word`` (or raise its count by ``n``) and return its id."""
        if word in self.indices and not overwrite:
            idx = self.indices[word]
            self.count[idx] += n
            return idx
        idx = len(self.symbols)
        self.indices[word] = idx
        self.symbols.append(word)
        self.count.append(n)
        return idx

    def update(self, new_dict: "Dictionary") -> None:
        """Add ``new_dict``'s counts: its symbols not here are appended, in its order."""
        for word, n in zip(new_dict.symbols, new_dict.count):
            self.add_symbol(word, n)

    def dummy_sentence(self, length: int) -> "torch.Tensor":
        """``length`` random ids of ordinary symbols, the last ``</s>`` (fairseq's test helper)."""
        import torch

        t = torch.empty(length).uniform_(self.nspecial + 1, len(self)).long()
        t[-1] = self.eos()
        return t

    # --- building ----------------------------------------------------------------------
    def finalize(self, threshold: int = -1, nwords: int = -1, padding_factor: int = 8) -> None:
        """Sort by count (descending, ties by symbol), drop rare symbols, pad the length.

        ``nwords`` counts the special symbols, as in fairseq.
        """
        if nwords <= 0:
            nwords = len(self)
        special = self.symbols[: self.nspecial]
        new_symbols, new_count = list(special), list(self.count[: self.nspecial])
        rest = sorted(zip(self.symbols[self.nspecial:], self.count[self.nspecial:]))
        ranked = Counter(dict(rest)).most_common(nwords - self.nspecial)  # stable: ties stay alphabetical
        for sym, c in ranked:
            if c < threshold:
                continue
            new_symbols.append(sym)
            new_count.append(c)
        self.symbols, self.count = new_symbols, new_count
        self.indices = {s: i for i, s in enumerate(self.symbols)}
        self.pad_to_multiple_(padding_factor)

    def pad_to_multiple_(self, padding_factor: int) -> None:
        if padding_factor > 1:
            i = 0
            while len(self) % padding_factor != 0:
                self.add_symbol(f"madeupword{i:04d}", n=0)
                i += 1

    # --- encoding ------------------------------------------------------------------------
    def encode_line(self, line: str, line_tokenizer=tokenize_line, add_if_not_exist: bool = True,
                    consumer=None, append_eos: bool = True, reverse_order: bool = False) -> "torch.IntTensor":
        """Split ``line`` into ids, with ``</s>`` appended (an empty line is ``[2]``); as in fairseq, unknown
        words are added (pass ``add_if_not_exist=False`` to map them to ``<unk>``) and ``consumer(word, id)``
        sees each word."""
        import torch  # lazily: preprocessing workers need no torch

        words = line_tokenizer(line)
        if reverse_order:
            words = list(reversed(words))
        ids = [self.add_symbol(w) if add_if_not_exist else self.index(w) for w in words]
        if consumer is not None:
            for w, i in zip(words, ids):
                consumer(w, i)
        if append_eos:
            ids.append(self.eos_index)
        return torch.tensor(ids, dtype=torch.int32)

    def string(self, tensor, bpe_symbol: str | None = None, escape_unk: bool = False,
               extra_symbols_to_ignore=None, unk_string: str | None = None, include_eos: bool = False,
               separator: str = " ") -> str:
        """Ids back to a string, as fairseq: ``<s>`` and (by default) ``</s>`` dropped (``<pad>`` kept),
        then ``bpe_symbol`` post-processing (:func:`post_process`). A 2-D tensor gives one line per row."""
        if hasattr(tensor, "tolist") and getattr(tensor, "ndim", 1) == 2:
            return "\n".join(self.string(t, bpe_symbol, escape_unk, extra_symbols_to_ignore, unk_string,
                                          include_eos, separator) for t in tensor)
        drop = set(extra_symbols_to_ignore or ()) | {self.bos_index}
        if not include_eos:
            drop.add(self.eos_index)
        unk = unk_string if unk_string is not None else self.unk_string(escape_unk)
        ids = tensor.tolist() if hasattr(tensor, "tolist") else [int(i) for i in tensor]
        return post_process(separator.join(unk if i == self.unk_index else self[i] for i in ids if i not in drop),
                            bpe_symbol)

    # --- files ----------------------------------------------------------------------------
    @classmethod
    def load(cls, f: "str | os.PathLike | IO[str]") -> "Dictionary":
        d = cls()
        d.add_from_file(f)
        return d

    def add_from_file(self, f: "str | os.PathLike | IO[str]") -> None:
        """Read ``symbol count [#fairseq:overwrite]`` lines from a path or an open text file; errors name the
        file and line."""
        if hasattr(f, "readlines"):
            name = Path(str(getattr(f, "name", "<dictionary file>")))
            for lineno, line in enumerate(f.read().splitlines(), start=1):
                self._add_file_line(name, lineno, line)
            return
        path = Path(f)
        if not path.exists():
            raise UserError(f"{path}: dictionary file not found; pass the dict.txt written by preprocessing")
        if path.is_dir():
            raise UserError(f"{path}: is a directory; pass the dict.txt file inside it")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); a dict.txt is UTF-8")
        for lineno, line in enumerate(lines, start=1):
            self._add_file_line(path, lineno, line)

    def _add_file_line(self, path: Path, lineno: int, line: str) -> None:
        where = f"{path}:{lineno}"
        try:
            rest, field = line.rstrip().rsplit(" ", 1)
        except ValueError:
            raise UserError(f"{where}: malformed line {line!r}; expected '<symbol> <count>'")
        overwrite = field == _OVERWRITE
        if overwrite:
            try:
                word, field = rest.rsplit(" ", 1)
            except ValueError:
                raise UserError(f"{where}: malformed line {line!r}; expected '<symbol> <count> {_OVERWRITE}'")
        else:
            word = rest
        try:
            count = int(field)
        except ValueError:
            raise UserError(f"{where}: count {field!r} is not an integer; expected '<symbol> <count>'")
        if word in self and not overwrite:
            raise DuplicateSymbolError(f"{where}: Duplicate symbol {word!r}; add ' {_OVERWRITE}' to replace "
                                       "the earlier entry on purpose")
        self.add_symbol(word, n=count, overwrite=overwrite)

    def save(self, f: str | os.PathLike) -> None:
        """Write the non-special symbols, atomically."""
        atomic_write_text(f, self.to_text())

    def to_text(self) -> str:
        return "".join(f"{s} {c}\n" for s, c in zip(self.symbols[self.nspecial:], self.count[self.nspecial:]))

    @staticmethod
    def add_file_to_dictionary(filename: str | os.PathLike, dict: "Dictionary", tokenize=tokenize_line,
                               num_workers: int = 1) -> None:
        """Count ``tokenize``'s words of every line of ``filename`` and one ``</s>`` per line into ``dict``
        (new symbols in alphabetical order), as fairseq's; one process reads the file, whatever ``num_workers``."""
        counts: Counter[str] = Counter()
        with open(filename, encoding="utf-8") as f:
            for line in f:
                counts.update(tokenize(line))
                counts[dict.eos_word] += 1
        for w, c in sorted(counts.items()):
            dict.add_symbol(w, c)

    @classmethod
    def build(cls, lines: Iterable[str], threshold: int = -1, nwords: int = -1,
              padding_factor: int = 8) -> "Dictionary":
        """Count the whitespace tokens of ``lines`` and finalize."""
        d = cls()
        counts: Counter[str] = Counter()
        for line in lines:
            counts.update(tokenize_line(line))
        for w, c in sorted(counts.items()):
            d.add_symbol(w, n=c)
        d.finalize(threshold, nwords, padding_factor)
        return d


def post_process(text: str, symbol: str | None) -> str:
    """fairseq's ``--post-process`` of decoded symbols: ``sentencepiece`` (``▁`` starts a word),
    ``wordpiece`` (``_``), ``letter`` (``|``), ``_EOW``, ``subword_nmt`` (``@@ ``); ``none`` or None leave the
    text; any other string is removed where it ends a symbol."""
    joined = {"sentencepiece": "\u2581", "wordpiece": "_", "letter": "|", "_EOW": "_EOW"}
    if symbol in joined:
        return text.replace(" ", "").replace(joined[symbol], " ").strip()
    if symbol is None or symbol == "none":
        return text
    return (text + " ").replace("@@ " if symbol == "subword_nmt" else symbol, "").rstrip()
