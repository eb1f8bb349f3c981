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
from typing import TYPE_CHECKING, Iterable

from lmtie.errors import UserError
from lmtie.io import atomic_write_text

if TYPE_CHECKING:
    import torch

_SPACE = re.compile(r"\s+")
_OVERWRITE = "#fairseq:overwrite"


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
        return self.symbols[idx] if 0 <= idx < len(self.symbols) else self.unk_word

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
    def encode_line(self, line: str, add_if_not_exist: bool = False, append_eos: bool = True,
                    reverse_order: bool = False) -> "torch.IntTensor":
        """Whitespace-split ``line`` into ids, with ``</s>`` appended (an empty line is ``[2]``)."""
        import torch  # lazily: preprocessing workers need no torch

        words = tokenize_line(line)
        if reverse_order:
            words = list(reversed(words))
        ids = [self.add_symbol(w) if add_if_not_exist else self.index(w) for w in words]
        if append_eos:
            ids.append(self.eos_index)
        return torch.tensor(ids, dtype=torch.int32)

    def string(self, tensor, bpe_symbol: str | None = None, escape_unk: bool = False,
               include_eos: bool = False) -> str:
        """Ids back to a space-joined string, dropping ``<s>``, ``<pad>`` and (by default) ``</s>``."""
        if hasattr(tensor, "tolist") and getattr(tensor, "ndim", 1) == 2:
            return "\n".join(self.string(t, bpe_symbol, escape_unk, include_eos) for t in tensor)
        drop = {self.bos_index, self.pad_index}
        if not include_eos:
            drop.add(self.eos_index)
        words = []
        for i in (tensor.tolist() if hasattr(tensor, "tolist") else tensor):
            if i in drop:
                continue
            words.append("<<unk>>" if (escape_unk and i == self.unk_index) else self[i])
        text = " ".join(words)
        if bpe_symbol is not None:
            text = (text + " ").replace(bpe_symbol, "").rstrip()
        return text

    # --- files ----------------------------------------------------------------------------
    @classmethod
    def load(cls, f: str | os.PathLike) -> "Dictionary":
        d = cls()
        d.add_from_file(f)
        return d

    def add_from_file(self, f: str | os.PathLike) -> None:
        """Read ``symbol count [#fairseq:overwrite]`` lines; errors name the file and line."""
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
            raise UserError(f"{where}: duplicate symbol {word!r}; add ' {_OVERWRITE}' to replace "
                            "the earlier entry on purpose")
        self.add_symbol(word, n=count, overwrite=overwrite)

    def save(self, f: str | os.PathLike) -> None:
        """Write the non-special symbols, atomically."""
        atomic_write_text(f, self.to_text())

    def to_text(self) -> str:
        return "".join(f"{s} {c}\n" for s, c in zip(self.symbols[self.nspecial:], self.count[self.nspecial:]))

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
