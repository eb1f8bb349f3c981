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


def register_positions(module: nn.Module, num_positions: int, dim: int, learned: bool) -> None:
    """Give ``module`` an ``embed_positions`` table [num_positions, dim]: a learned Parameter ~ N(0, dim^-0.5),
    or sinusoids as a non-persistent buffer (derived from the config, never stored in a checkpoint)."""
    if learned:
        module.embed_positions = nn.Parameter(torch.empty(num_positions, dim))
        nn.init.normal_(module.embed_positions, mean=0.0, std=dim ** -0.5)
    else:
        module.register_buffer("embed_positions", sinusoidal_table(num_positions, dim), persistent=False)


class TiedOutput:
    """Mixin for a decoder module with ``embed_tokens`` and a ``cfg``: ``embed_out`` is its output matrix
    [V, d_out].

    When tied (``cfg.share_decoder_input_output_embed``, fairseq's flag) it *is* ``embed_tokens.weight``
    (Press & Wolf 2017; Inan et al. 2017), and the tie is structural: no second Parameter is
    registered, so ``parameters()`` and ``state_dict()`` hold the matrix once and no load, device
    move or re-initialisation can split it. Read from the config at each access, so a model that
    unties (``--untie-at-update``) by swapping its config and registering ``embed_out`` is untied.
    """

    @property
    def tied_output(self) -> bool:
        return bool(self.cfg.share_decoder_input_output_embed)

    @property
    def embed_out(self) -> nn.Parameter:
        if self.tied_output:
            return self.embed_tokens.weight
        if self._parameters.get("embed_out") is None:
            raise AttributeError("embed_out")  # not built yet: lets nn.Module register it
        return self._parameters["embed_out"]

    def add_output_matrix(self, vocab_size: int, dim: int) -> None:
        """Register the untied head, drawn at the tied matrix's scale. Called last, so at one seed the
        tied and untied models share every other tensor."""
        if not self.tied_output:
            self.embed_out = nn.Parameter(torch.empty(vocab_size, dim))
            nn.init.normal_(self.embed_out, mean=0.0, std=dim ** -0.5)
