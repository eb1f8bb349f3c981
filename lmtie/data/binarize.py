"""Parallel passes over byte-range chunks of a text file: counting symbols and binarising.

Workers get only picklable arguments (paths and names) and rebuild the tokeniser themselves,
so any multiprocessing start method works; each writes its own part, merged in order after.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from lmtie.data.dictionary import Dictionary
from lmtie.data.indexed_dataset import MMapIndexedDatasetBuilder
from lmtie.data.sources import chunk_offsets, read_line_batches
from lmtie.data.tokenizers import Tokenizer, make_tokenizer


@dataclass(frozen=True)
class TokenizerSpec:
    """How a worker rebuilds the tokeniser: a name and the files it needs."""

    name: str
    dict_path: str | None = None
    model_path: str | None = None
    threads: int = -1  # 1 inside a pool of workers, so processes do not oversubscribe the cores

    def build(self) -> Tokenizer:
        d = Dictionary.load(self.dict_path) if self.dict_path else None
        return make_tokenizer(self.name, d, self.model_path, self.threads)


@dataclass
class SplitStats:
    lines: int = 0
    tokens: int = 0
    bytes: int = 0
    utf8_replacements: int = 0
    unk: int = 0

    def add(self, other: "SplitStats") -> None:
        for k in vars(self):
            setattr(self, k, getattr(self, k) + getattr(other, k))


_CACHE: dict[TokenizerSpec, Tokenizer] = {}


def _pool(workers: int):
    """A worker pool that is safe in a process that already runs threads (torch's, a test runner's): a
    plain fork copies locks other threads hold, and a worker can wait on one forever; forkserver forks
    from a clean single-threaded server (spawn where the platform has no forkserver)."""
    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn").Pool(workers)


def _tokenizer(spec: TokenizerSpec) -> Tokenizer:
    if spec not in _CACHE:
        _CACHE[spec] = spec.build()
    return _CACHE[spec]


def run_chunks(fn: Callable, path: Path, workers: int, *args) -> list:
    """Apply ``fn(path, start, end, *args)`` to ``workers`` chunks of ``path``, in order."""
    jobs = [(path, s, e, *args) for s, e in chunk_offsets(path, max(workers, 1))]
    if workers <= 1:
        return [fn(*job) for job in jobs]
    with _pool(workers) as pool:
        return pool.starmap(fn, jobs)


def count_chunk(path: Path, start: int, end: int, symbols: Callable[[str], Iterable[str]],
                cut: bytes | None, errors: str, flag: str) -> Counter:
    """Symbol counts of one chunk, ``symbols(line)`` (a tokeniser's, picklable) for each line; a long
    line is counted a piece at a time where its tokeniser allows (``cut``, its ``line_cut``)."""
    counts: Counter = Counter()
    for batch in read_line_batches(path, start, end, errors, flag, cut):
        for line in batch.lines:
            counts.update(symbols(line))
    return counts


def count_symbols(path: Path, symbols: Callable[[str], Iterable[str]], cut: bytes | None, workers: int,
                  errors: str, flag: str) -> Counter:
    total: Counter = Counter()
    for c in run_chunks(count_chunk, path, workers, symbols, cut, errors, flag):
        total.update(c)
    return total


def binarize_chunk(path: Path, start: int, end: int, spec: TokenizerSpec, dtype: str, part: str,
                   errors: str, flag: str) -> SplitStats:
    """Encode one chunk into the part ``{part}.bin``/``.sizes``; return its counts."""
    tok = _tokenizer(spec)
    unk = tok.dictionary.unk()
    builder = MMapIndexedDatasetBuilder(part, np.dtype(dtype))
    stats = SplitStats()
    carry = 0  # tokens of a line cut into pieces (line_cut) written so far, before its </s>
    try:
        for lines, nbytes, replaced, open_end in read_line_batches(path, start, end, errors, flag, tok.line_cut):
            flat, sizes = tok.encode_lines(lines)
            if open_end:  # the last line goes on in the next batch: its ids without </s>, its size later
                flat, piece, sizes = flat[:-1], int(sizes[-1]) - 1, sizes[:-1]
            if carry and len(sizes):
                sizes[0] += carry
                carry = 0
            if open_end:
                carry += piece
            builder.add_lines(flat, sizes)
            stats.add(SplitStats(len(sizes), len(flat), nbytes, replaced, int((flat == unk).sum())))
    finally:
        builder.close_part()
    return stats


def binarize_file(path: Path, prefix: Path, spec: TokenizerSpec, dtype: np.dtype, workers: int,
                  errors: str, flag: str) -> SplitStats:
    """Write ``{prefix}.bin``/``.idx`` for a whole file, chunked over ``workers`` processes."""
    n = len(chunk_offsets(path, max(workers, 1)))
    parts = [prefix.with_name(f"{prefix.name}.part{i}") for i in range(n)]
    jobs_args = (dataclasses.replace(spec, threads=1) if workers > 1 else spec, np.dtype(dtype).name)
    stats_list = _binarize_parts(path, parts, jobs_args, workers, errors, flag)
    out = MMapIndexedDatasetBuilder(prefix, dtype)
    for part in parts:
        out.merge_file_(part)
        for ext in (".bin", ".sizes"):
            part.with_name(part.name + ext).unlink()
    out.finalize()
    total = SplitStats()
    for s in stats_list:
        total.add(s)
    return total


def _binarize_parts(path: Path, parts: Sequence[Path], jobs_args: tuple, workers: int, errors: str,
                    flag: str) -> list[SplitStats]:
    offsets = chunk_offsets(path, max(workers, 1))
    jobs = [(path, s, e, *jobs_args, str(p), errors, flag) for (s, e), p in zip(offsets, parts)]
    if workers <= 1:
        return [binarize_chunk(*job) for job in jobs]
    with _pool(workers) as pool:
        return pool.starmap(binarize_chunk, jobs)


def train_counts(bin_path: Path, dtype: np.dtype, vocab_size: int) -> np.ndarray:
    """How often each id occurs in a ``.bin``, read with plain reads in 8 MB slices, so neither
    heap nor mapped pages grow with the corpus (for dict.txt counts)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    with open(bin_path, "rb") as f:
        while chunk := f.read(8 << 20):
            counts += np.bincount(np.frombuffer(chunk, dtype=dtype), minlength=vocab_size)[:vocab_size]
    return counts
