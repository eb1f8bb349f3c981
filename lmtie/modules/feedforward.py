"""Feed-forward layers: fairseq's two-Linear FFN and SwiGLU (Shazeer 2020, "GLU Variants Improve
Transformer"), bias-free as in Llama."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_accurate": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


class FeedForward(nn.Module):
    """fc2(dropout(activation(fc1(x)))), as fairseq's Transformer layers."""

    def __init__(self, dim: int, hidden_dim: int, activation_fn: str = "relu", activation_dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.activation = ACTIVATIONS[activation_fn]
        self.activation_dropout = nn.Dropout(activation_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_dropout(self.activation(self.fc1(x))))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)).

    gate and up are one fused Linear (``gate_up_proj``: gate rows first, then up), one matmul
    instead of two; splitting its weight in half gives Hugging Face's ``gate_proj`` and ``up_proj``.
    """

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.gate_up_proj = nn.Linear(dim, 2 * hidden_dim, bias=False)
        self.down_proj = nn.Linear(hidden_dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)  # (..., hidden) each
        return self.down_proj(F.silu(gate) * up)
