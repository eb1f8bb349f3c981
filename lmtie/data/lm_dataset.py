"""Token blocks for language modelling, and a shuffle/batch order a resumed run can recompute.

Blocks follow fairseq's ``TokenBlockDataset`` with ``include_targets``: the target is the
block, the source is the same span shifted right by one, so its first token is the token
before the block in the split (``</s>`` at the start of the split and of every line).
Improvement over fairseq: in ``complete``/``complete_doc``/``eos`` a line longer than
``tokens_per_sample`` is cut into pieces of that length instead of one over-long block.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from lmtie.data.dictionary import Dictionary
from lmtie.data.indexed_dataset import MMapIndexedDataset
from lmtie.errors import UserError

BREAK_MODES = ("none", "complete", "complete_doc", "eos")


def block_slices(sizes: np.ndarray, tokens_per_sample: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) offsets of each block in the concatenated split."""
    if tokens_per_sample < 1:
        raise UserError(f"--tokens-per-sample {tokens_per_sample}: must be at least 1")
    sizes = np.asarray(sizes, dtype=np.int64)
    ends_of_lines = np.cumsum(sizes)
    if mode == "none":
        starts = np.arange(0, int(ends_of_lines[-1]) if len(sizes) else 0, tokens_per_sample, dtype=np.int64)
        return starts, np.minimum(starts + tokens_per_sample, ends_of_lines[-1] if len(sizes) else 0)
    if mode == "eos":
        starts, ends = ends_of_lines - sizes, ends_of_lines
    elif mode in ("complete", "complete_doc"):
        starts, ends = _pack_lines(sizes, tokens_per_sample, doc_breaks=mode == "complete_doc")
    else:
        raise UserError(f"--sample-break-mode {mode!r}: choose one of {', '.join(BREAK_MODES)}")
    return _split_long(starts, ends, tokens_per_sample)


def _pack_lines(sizes: np.ndarray, limit: int, doc_breaks: bool) -> tuple[np.ndarray, np.ndarray]:
    """Whole lines per block, up to ``limit`` tokens; with ``doc_breaks`` an empty line (just
    ``</s>``) ends the block and is itself dropped, as fairseq's ``complete_doc`` does."""
    starts, ends = [], []
    block_start, pos = 0, 0
    for size in sizes.tolist():
        if doc_breaks and size == 1:
            if pos - block_start > 1:
                starts.append(block_start), ends.append(pos)
            pos += 1
            block_start = pos
            continue
        if pos > block_start and pos + size - block_start > limit:
            starts.append(block_start), ends.append(pos)
            block_start = pos
        pos += size
    if pos - block_start > (1 if doc_breaks else 0):
        starts.append(block_start), ends.append(pos)
    return np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)


def _split_long(starts: np.ndarray, ends: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut every block longer than ``limit`` into consecutive pieces of ``limit`` tokens."""
    pieces = np.maximum((ends - starts + limit - 1) // limit, 1)
    block = np.repeat(np.arange(len(starts)), pieces)
    first = np.repeat(np.cumsum(pieces) - pieces, pieces)
    new_starts = starts[block] + (np.arange(len(block)) - first) * limit
    return new_starts, np.minimum(new_starts + limit, ends[block])


class LanguageModelDataset:
    """Blocks of a binarised split: ``ds[i]`` is ``{"id", "source", "target"}``; the split stays mmapped."""

    def __init__(self, data_bin: str | Path, split: str, tokens_per_sample: int, sample_break_mode: str = "none"):
        data_bin = Path(data_bin)
        self.dictionary = Dictionary.load(data_bin / "dict.txt")
        if len(self.dictionary) <= self.dictionary.nspecial:
            raise UserError(f"{data_bin / 'dict.txt'}: no symbols besides the {self.dictionary.nspecial} special ones "
                            "(empty or emptied); re-run lmtie-preprocess for this data-bin")
        self.data = MMapIndexedDataset(data_bin / split)
        self.data.check_ids(len(self.dictionary), data_bin / "dict.txt")
        self.tokens_per_sample, self.sample_break_mode = tokens_per_sample, sample_break_mode
        self.starts, self.ends = block_slices(self.data.sizes, tokens_per_sample, sample_break_mode)
        self.sizes = (self.ends - self.starts).astype(np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"block {i} out of range for {len(self)} blocks")
        start, end = int(self.starts[i]), int(self.ends[i])
        span = self.data.token_range(max(start - 1, 0), end)  # the token before the block, then the block
        if start == 0:
            span = np.concatenate([[self.dictionary.eos()], span])
        span = torch.from_numpy(span)
        return {"id": i, "source": span[:-1], "target": span[1:]}

    def batch(self, indices: Sequence[int]) -> dict:
        """The blocks ``indices`` as one batch, gathered from the memory map at once (no per-block Python):
        row r of ``source``/``target`` is ``self[indices[r]]``'s, right-padded with ``<pad>``."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= len(self):
            bad = idx[(idx < 0) | (idx >= len(self))]
            raise IndexError(f"block {int(bad[0]) if bad.size else '(none)'} out of range for {len(self)} blocks")
        starts, lens = self.starts[idx], self.sizes[idx]
        width = int(lens.max())
        pos = starts[:, None] - 1 + np.arange(width + 1)  # (B, width + 1): the token before, then the block
        inside = np.arange(width + 1) <= lens[:, None]
        span = np.full(pos.shape, self.dictionary.pad(), dtype=np.int64)
        span[inside] = self.data.tokens[np.maximum(pos[inside], 0)]
        span[(pos == -1) & inside] = self.dictionary.eos()
        source, target = span[:, :-1].copy(), span[:, 1:].copy()
        source[np.arange(width) >= lens[:, None]] = self.dictionary.pad()  # a block's last token is no source
        return {"id": torch.from_numpy(idx.copy()), "source": torch.from_numpy(source),
                "target": torch.from_numpy(target), "ntokens": int(lens.sum())}


def epoch_order(num_items: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled item order of ``epoch``: a pure function of its arguments, so resuming recomputes it."""
    if seed < 0 or epoch < 0:
        raise UserError(f"--seed {seed} / epoch {epoch}: must be non-negative")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch])))
    return rng.permutation(num_items).astype(np.int64)


def batch_indices(order: Sequence[int], batch_size: int | None = None, max_tokens: int | None = None,
                  sizes: Sequence[int] | None = None, multiple: int = 1) -> list[list[int]]:
    """Consecutive items of ``order`` grouped into batches of at most ``batch_size`` items and
    ``max_tokens`` padded tokens (batch length x longest item), as fairseq's ``batch_by_size``; a full
    batch is cut to a multiple of ``multiple`` items when it holds that many (fairseq's
    ``--required-batch-size-multiple``), the rest starting the next batch."""
    if batch_size is None and max_tokens is None:
        raise UserError("pass --batch-size or --max-tokens to form batches")
    if max_tokens is not None and sizes is None:
        raise ValueError("max_tokens needs the item sizes")
    batches, current, longest = [], [], 0
    for idx in (int(i) for i in order):
        size = int(sizes[idx]) if sizes is not None else 0
        if max_tokens is not None and size > max_tokens:
            raise UserError(f"--max-tokens {max_tokens}: item {idx} has {size} tokens; raise --max-tokens "
                            "or lower --tokens-per-sample")
        grown = max(longest, size)
        full = (batch_size is not None and len(current) == batch_size) or \
               (max_tokens is not None and (len(current) + 1) * grown > max_tokens)
        if current and full:
            keep = max(multiple * (len(current) // multiple), len(current) % multiple)
            batches.append(current[:keep])
            current = current[keep:]
            grown = max([size, *(int(sizes[i]) for i in current)]) if sizes is not None else 0
        current.append(idx)
        longest = grown
    if current:
        batches.append(current)
    return batches
