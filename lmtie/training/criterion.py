"""The language-model loss: summed token NLL, pad targets ignored."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def lm_loss(model: nn.Module, source: torch.Tensor, target: torch.Tensor, pad: int) -> tuple[torch.Tensor, int]:
    """(sum of -log p(target) over non-pad targets, in nats; number of those targets)."""
    logits = model(source)  # (B, T, V)
    loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=pad, reduction="sum")
    return loss, int(target.ne(pad).sum())
