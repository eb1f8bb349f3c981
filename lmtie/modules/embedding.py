"""Padding-aware token embeddings and sinusoidal positions."""

from __future__ import annotations

import math

import torch
from torch import nn


def Embedding(num_embeddings: int, embedding_dim: int, padding_idx: int | None) -> nn.Embedding:
    """An ``nn.Embedding`` with weights ~ N(0, embedding_dim^-0.5) and the padding row exactly 0.

    The scale makes ``sqrt(d) * embedding`` unit-variance (Vaswani et al. 2017, sec. 3.4), and a
    tied output projection then starts at the same scale as an untied N(0, d^-0.5) one.
    ``padding_idx=None`` zeroes nothing (fairseq issue 4076 zeroes the whole matrix).
    """
    m = nn.Embedding(num_embeddings, embedding_dim, padding_idx=padding_idx)
    nn.init.normal_(m.weight, mean=0.0, std=embedding_dim ** -0.5)
    if padding_idx is not None:
        with torch.no_grad():
            m.weight[padding_idx].zero_()
    return m


def sinusoidal_table(num_positions: int, dim: int) -> torch.Tensor:
    """[num_positions, dim] table of sin (first half) and cos (second half), as in fairseq."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / max(half - 1, 1)))
    angles = torch.arange(num_positions, dtype=torch.float32)[:, None] * freq[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2 == 1:
        table = torch.cat([table, torch.zeros(num_positions, 1)], dim=1)
    return table
