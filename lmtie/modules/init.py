"""Fan-in initialisers, so a shared tensor starts at a scale that keeps activations stable.

LeCun et al. 1998 (Var(w) = 1/n) keeps the variance of a linear or tanh layer's output equal
to its input's; He et al. 2015 (Var(w) = 2/n) makes up for the half of the signal a ReLU
discards. ``n`` is the fan-in: the number of inputs that feed one output unit.

A tied tensor has one fan-in per use (W is [out, in] for ``F.linear(x, W)`` and acts as
[in, out] for ``F.linear(h, W.t())``), so these functions take the shape's fan-in by default,
i.e. the first use's, and accept ``fan_in=`` when the caller wants another use to set the scale.
"""

from __future__ import annotations

import math

import torch


def fan_in(tensor: torch.Tensor) -> int:
    """Inputs per output unit: ``in`` for a Linear weight [out, in], ``in*kh*kw`` for a conv
    kernel [out, in, kh, kw] (the PyTorch layouts)."""
    if tensor.dim() < 2:
        raise ValueError(f"fan_in needs a weight of 2 or more dims ([out, in, ...]), got shape {tuple(tensor.shape)}")
    return math.prod(tensor.shape[1:])


def _scaled_normal_(tensor: torch.Tensor, gain: float, n: int | None,
                    generator: torch.Generator | None) -> torch.Tensor:
    """Fill ``tensor`` in place with N(0, gain/n); no_grad so a leaf Parameter may be filled."""
    n = fan_in(tensor) if n is None else n
    if n <= 0:
        raise ValueError(f"fan_in must be a positive count of inputs, got {n}")
    with torch.no_grad():
        return tensor.normal_(0.0, math.sqrt(gain / n), generator=generator)


def lecun_normal_(tensor: torch.Tensor, fan_in: int | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Var(w) = 1/n (LeCun 1998), for linear, tanh or GELU units; returns ``tensor``."""
    return _scaled_normal_(tensor, 1.0, fan_in, generator)


def he_normal_(tensor: torch.Tensor, fan_in: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Var(w) = 2/n (He et al. 2015), for ReLU units; returns ``tensor``."""
    return _scaled_normal_(tensor, 2.0, fan_in, generator)


def xavier_linears_(module: torch.nn.Module) -> None:
    """Every Linear inside ``module``: Xavier-uniform weights and zero biases, as fairseq's Transformers."""
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
