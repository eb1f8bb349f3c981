"""Rotary position embeddings (Su et al. 2021, RoFormer) in the "rotate half" layout.

Channel i of a head pairs with channel i + head_dim/2 (Hugging Face's ``LlamaForCausalLM``
convention, not the interleaved pairs of the paper), and pair i turns by position * theta^(-2i/head_dim).
A weight copied to or from a Hugging Face Llama therefore needs no permutation.

The tables are computed for the positions in use at each call, not stored: a buffer sized to
131072 positions would cost memory for nothing, and a buffer built on the meta device would be
garbage after ``to_empty``.
"""

from __future__ import annotations

import torch


def inverse_frequencies(head_dim: int, theta: float, device: torch.device | None = None) -> torch.Tensor:
    """(head_dim/2,) float32 angular speeds theta^(-2i/head_dim)."""
    exponents = torch.arange(0, head_dim, 2, device=device, dtype=torch.int64).float() / head_dim
    return 1.0 / (theta ** exponents)


def rotary_tables(start: int, length: int, head_dim: int, theta: float, device: torch.device | None = None,
                  dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each (length, head_dim), for positions start .. start + length - 1.

    float32 (tests ask for float64), and a broadcast product rather than a matmul so autocast
    cannot lower the angles to bf16 (at position 10^5 a bf16 angle is off by up to 256 radians).
    """
    positions = torch.arange(start, start + length, device=device, dtype=dtype)
    angles = positions[:, None] * inverse_frequencies(head_dim, theta, device).to(dtype)[None, :]  # (T, hd/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, hd): both halves of a pair turn alike
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (..., T, head_dim) queries or keys by their positions' angles (tables from ``rotary_tables``).

    The tables are cast to x's dtype first, as Hugging Face does, so exported models agree in bf16.
    """
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + rotate_half(x) * sin
