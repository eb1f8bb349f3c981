"""Root-mean-square layer normalisation (Zhang & Sennrich 2019), as Llama uses it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """y = weight * x / sqrt(mean(x^2) + eps): LayerNorm without the mean and the bias.

    The statistic is taken in float32 and the result cast back before the gain, the order of
    Hugging Face's ``LlamaRMSNorm``, so bf16 outputs agree with an exported model bit for bit.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.rms_norm(x.float(), (x.size(-1),), eps=self.eps)
        return self.weight * y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}"
