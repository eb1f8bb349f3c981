"""Sentence pairs of a translation data-bin, and fairseq's length-bucketed batches over them.

A pair is line i of ``SPLIT.SRC-TGT.SRC`` and line i of ``SPLIT.SRC-TGT.TGT`` (each line binarised
with its ``</s>``). A batch holds ``source`` (B, S) and ``target`` (B, T), right-padded with <pad>,
and ``prev_output_tokens``: the target shifted right behind a ``</s>`` (teacher forcing, as fairseq's
``move_eos_to_beginning``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from lmtie.data.dictionary import Dictionary
from lmtie.data.indexed_dataset import MMapIndexedDataset
from lmtie.data.lm_dataset import batch_indices
from lmtie.data.pairs import pair_prefix
from lmtie.errors import UserError


def pair_languages(data_bin: str | Path, source_lang: str | None, target_lang: str | None) -> tuple[str, str]:
    """The (source, target) languages of a translation data-bin: the flags, or fairseq's inference from
    the one ``train.SRC-TGT.*`` pair it holds."""
    d = Path(data_bin)
    if source_lang and target_lang:
        return source_lang, target_lang
    found = sorted({p.name.split(".")[1] for p in d.glob("train.*-*.*.idx")})
    if len(found) != 1:
        have = f"it holds {', '.join(found)}" if found else "it holds no train.SRC-TGT.* files"
        raise UserError(f"{d}: cannot tell the language pair ({have}); pass --source-lang and --target-lang")
    src, tgt = found[0].split("-")
    if (source_lang or src) != src or (target_lang or tgt) != tgt:
        raise UserError(f"{d}: its pair is {src}-{tgt}, not --source-lang {source_lang or src} / --target-lang "
                        f"{target_lang or tgt}")
    return src, tgt


class LanguagePairDataset:
    """Pairs of one split; both sides stay memory-mapped. ``sizes`` is max(source, target) length per
    pair, what a padded batch costs (fairseq's ``num_tokens``)."""

    def __init__(self, data_bin: str | Path, split: str, source_lang: str, target_lang: str,
                 src_dict: Dictionary | None = None, tgt_dict: Dictionary | None = None):
        d = Path(data_bin)
        self.src_dict = src_dict or Dictionary.load(d / f"dict.{source_lang}.txt")
        self.tgt_dict = tgt_dict or Dictionary.load(d / f"dict.{target_lang}.txt")
        self.dictionary = self.tgt_dict  # what the loss and generation decode into
        if self.src_dict.pad() != self.tgt_dict.pad() or self.src_dict.eos() != self.tgt_dict.eos():
            raise UserError(f"{d}: dict.{source_lang}.txt and dict.{target_lang}.txt put <pad>/</s> at different ids; "
                            "re-run lmtie-preprocess")
        prefix = pair_prefix(split, source_lang, target_lang)
        self.src = MMapIndexedDataset(d / f"{prefix}.{source_lang}")
        self.tgt = MMapIndexedDataset(d / f"{prefix}.{target_lang}")
        self.src.check_ids(len(self.src_dict), d / f"dict.{source_lang}.txt")
        self.tgt.check_ids(len(self.tgt_dict), d / f"dict.{target_lang}.txt")
        if len(self.src) != len(self.tgt):
            raise UserError(f"{d}: {prefix}.{source_lang} has {len(self.src)} lines but {prefix}.{target_lang} has "
                            f"{len(self.tgt)}; re-run lmtie-preprocess")
        self.src_sizes = np.asarray(self.src.sizes, dtype=np.int64)
        self.tgt_sizes = np.asarray(self.tgt.sizes, dtype=np.int64)
        self.sizes = np.maximum(self.src_sizes, self.tgt_sizes)

    def __len__(self) -> int:
        return len(self.src_sizes)

    def batch(self, indices: Sequence[int]) -> dict:
        """Pairs ``indices`` as one batch: ``source``, ``target``, ``prev_output_tokens`` (right-padded), ``ntokens``
        (target tokens, ``</s>`` included: what the loss sums over)."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= len(self):
            raise IndexError(f"pair index out of range for {len(self)} pairs")
        pad, eos = self.tgt_dict.pad(), self.tgt_dict.eos()
        source = _padded(self.src, idx, self.src_sizes[idx], pad)
        target = _padded(self.tgt, idx, self.tgt_sizes[idx], pad)
        prev = torch.full_like(target, pad)
        prev[:, 0] = eos
        prev[:, 1:] = target[:, :-1]
        prev[:, 1:].masked_fill_(target[:, 1:].eq(pad), pad)  # a row's last token (its </s>) is no input
        return {"id": torch.from_numpy(idx.copy()), "source": source, "target": target, "prev_output_tokens": prev,
                "ntokens": int(self.tgt_sizes[idx].sum())}

    def filter(self, max_source: int, max_target: int) -> np.ndarray:
        """Indices of the pairs that fit the model's positions (fairseq skips the others, and counts them)."""
        return np.flatnonzero((self.src_sizes <= max_source) & (self.tgt_sizes <= max_target))


def _padded(data: MMapIndexedDataset, idx: np.ndarray, lens: np.ndarray, pad: int) -> torch.Tensor:
    """Lines ``idx`` of ``data`` as one right-padded (B, max len) tensor, in one gather from the memory map."""
    starts = data.pointers[idx] // data.dtype.itemsize  # byte offsets -> token offsets
    width = int(lens.max())
    pos = starts[:, None] + np.arange(width)
    inside = np.arange(width) < lens[:, None]
    out = np.full(pos.shape, pad, dtype=np.int64)
    out[inside] = data.tokens[pos[inside]]
    return torch.from_numpy(out)


def pair_batches(dataset: LanguagePairDataset, order: np.ndarray, seed: int, epoch: int, batch_size: int | None,
                 max_tokens: int | None, multiple: int = 1) -> list[list[int]]:
    """fairseq's translation batches: the shuffled ``order`` sorted (stably) by target then source length, so a
    batch holds pairs of similar lengths and little padding, cut by ``batch_indices``, then the batches shuffled
    by (seed, epoch): a pure function of its arguments, so a resumed run recomputes it."""
    order = np.asarray(order, dtype=np.int64)
    order = order[np.lexsort((dataset.src_sizes[order], dataset.tgt_sizes[order]))]
    batches = batch_indices(order, batch_size=batch_size, max_tokens=max_tokens, sizes=dataset.sizes,
                            multiple=multiple)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch, 2])))
    return [batches[i] for i in rng.permutation(len(batches))]
