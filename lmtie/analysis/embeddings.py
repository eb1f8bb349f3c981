"""Statistics of embedding matrices, pure functions of tensors (no checkpoints, no files).

Press & Wolf (2017, sec. 4) compare embeddings by the Spearman correlation of their pairwise
word similarities; they find the tied matrix ranks word pairs more like the untied model's
output embedding than like its input embedding.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def singular_values(w: torch.Tensor) -> list[float]:
    """Singular values of a (V, d) matrix, largest first, computed in float64."""
    return torch.linalg.svdvals(w.detach().double()).tolist()


def matrix_stats(w: torch.Tensor, rows: torch.Tensor, pad: int) -> dict:
    """Spectrum summary of ``w`` over the word rows ``rows``, and the norm of its pad row.

    The effective rank is exp(entropy of the normalised singular values) (Roy & Vetterli 2007):
    d for a flat spectrum, 1 when one direction holds everything.
    """
    s = np.asarray(singular_values(w[rows]))
    p = s / s.sum() if s.sum() > 0 else np.full_like(s, 1 / len(s))
    entropy = -float(np.sum(p[p > 0] * np.log(p[p > 0])))
    return {"shape": list(w.shape), "singular_values": s.tolist(), "effective_rank": math.exp(entropy),
            "condition": float(s[0] / s[-1]) if s[-1] > 0 else None, "frobenius_norm": float(np.sqrt((s ** 2).sum())),
            "pad_row_norm": float(w[pad].detach().double().norm()),
            "mean_row_norm": float(w[rows].detach().double().norm(dim=1).mean())}


def row_cosine(a: torch.Tensor, b: torch.Tensor, rows: torch.Tensor) -> float | None:
    """Mean cosine similarity of matching rows of two (V, d) matrices (None when widths differ)."""
    if a.shape != b.shape:
        return None
    return float(F.cosine_similarity(a[rows].double(), b[rows].double(), dim=1).mean())


def sample_pairs(rows: torch.Tensor, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct unordered pairs of ``rows`` drawn with ``seed`` (every pair when there are fewer)."""
    ids = rows.numpy()
    k = len(ids)
    total = k * (k - 1) // 2
    if total <= n:
        i, j = np.triu_indices(k, 1)
        return ids[i], ids[j]
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(total, size=n, replace=False))  # linear indices into the upper triangle
    starts = np.cumsum(np.arange(k - 1, 0, -1)) - np.arange(k - 1, 0, -1)  # row i's first index
    i = np.searchsorted(starts, chosen, side="right") - 1
    j = chosen - starts[i] + i + 1
    return ids[i], ids[j]


def pairwise_cosines(w: torch.Tensor, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """cos(w[left[p]], w[right[p]]) for every pair p."""
    unit = F.normalize(w.detach().double(), dim=1)
    a, b = unit[torch.from_numpy(left)], unit[torch.from_numpy(right)]
    return (a * b).sum(dim=1).numpy()


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rank correlation: Pearson's of the (tie-averaged) ranks; None if either is constant."""
    rx, ry = _ranks(np.asarray(x)), _ranks(np.asarray(y))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx ** 2).sum() * (ry ** 2).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else None
