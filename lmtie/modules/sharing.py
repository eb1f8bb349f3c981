"""Modules that use one weight twice, so the pair trains, saves and moves as one Parameter.

Each weight is registered once (``nn.Parameter``) and re-read in ``forward`` by every use,
transposed where the use needs it. Nothing is tied after construction, so there is no tie to
lose: ``.to()``, ``copy.deepcopy`` and ``load_state_dict`` all see a single tensor, and autograd
sums the gradients of the two uses into it. Biases are per use and not shared.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lmtie.errors import UserError
from lmtie.modules.init import he_normal_, lecun_normal_

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda x: x,
    "relu": F.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
}
_INITS = {"lecun": lecun_normal_, "he": he_normal_}
_FORMS = ("linear", "mm")


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{name} must be a positive integer, got {value!r}")


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise UserError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _pair(name: str, value: int | tuple[int, int], minimum: int) -> tuple[int, int]:
    """Normalise an int or (h, w) pair, as conv2d spells sizes, and check each entry."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in pair):
        raise UserError(f"{name} must be an integer >= {minimum} or a pair of them, got {value!r}")
    return pair  # type: ignore[return-value]


def _default_init(init: str | None, activation: str) -> str:
    """He for ReLU (it drops half the signal), LeCun otherwise."""
    if init is None:
        return "he" if activation == "relu" else "lecun"
    _check_choice("init", init, tuple(_INITS))
    return init


def _optional_bias(size: int, bias: bool) -> nn.Parameter | None:
    return nn.Parameter(torch.zeros(size)) if bias else None


def _mm_last(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``x @ matrix`` over the last dim of any-rank ``x``, through 2-D ``mm``."""
    flat = x.reshape(-1, x.shape[-1]).mm(matrix)  # (N, d_a) @ (d_a, d_b) -> (N, d_b)
    return flat.reshape(*x.shape[:-1], matrix.shape[1])


class SharedKernelConv2d(nn.Module):
    """Two conv2d layers sharing one kernel W [C, C, kh, kw]: the first convolves with W, the
    second with W's spatial dims swapped, W.transpose(2, 3) of shape [C, C, kw, kh].

    The second conv reads the first's C output channels with the kernel's channel dims as they
    are, so in- and out-channels must be equal: hence one ``channels``. ``second_padding``
    defaults to ``padding`` with H and W swapped, which keeps a "same" first conv "same" twice.
    """

    def __init__(self, channels: int, kernel_size: int | tuple[int, int], padding: int | tuple[int, int] = 0,
                 second_padding: int | tuple[int, int] | None = None, activation: str = "identity",
                 bias: bool = False, init: str | None = None) -> None:
        super().__init__()
        _check_positive("channels", channels)
        kh, kw = _pair("kernel_size", kernel_size, 1)
        _check_choice("activation", activation, tuple(_ACTIVATIONS))
        self.padding = _pair("padding", padding, 0)
        self.second_padding = (self.padding[::-1] if second_padding is None
                               else _pair("second_padding", second_padding, 0))
        self.activation = activation
        self.init = _default_init(init, activation)
        self.weight = nn.Parameter(torch.empty(channels, channels, kh, kw))
        self.first_bias = _optional_bias(channels, bias)
        self.second_bias = _optional_bias(channels, bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Both uses have fan-in C*kh*kw (swapping H and W keeps it), so the scale is unambiguous."""
        _INITS[self.init](self.weight)
        for b in (self.first_bias, self.second_bias):
            if b is not None:
                nn.init.zeros_(b)

    def transposed_kernel(self) -> torch.Tensor:
        """W with H and W swapped, copied to dense memory: cuDNN convolutions have rejected
        strided weights ("cuDNN requires contiguous weight tensor", pytorch/pytorch#5044), and
        the copy stays in the autograd graph of ``weight``, so gradients still reach it."""
        return self.weight.transpose(2, 3).contiguous()  # [C, C, kh, kw] -> [C, C, kw, kh]

    def first(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.first_bias, padding=self.padding)

    def second(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.transposed_kernel(), self.second_bias, padding=self.second_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H', W'); H', W' depend on the two paddings."""
        return self.second(_ACTIVATIONS[self.activation](self.first(x)))

    def extra_repr(self) -> str:
        c, _, kh, kw = self.weight.shape
        return (f"channels={c}, kernel_size=({kh}, {kw}), padding={self.padding}, "
                f"second_padding={self.second_padding}, activation={self.activation}, init={self.init}")


class TiedAutoencoder(nn.Module):
    """A tied two-layer perceptron: encode with W [d_hidden, d_in], decode with W.t().

    ``form="linear"`` uses ``F.linear`` (which multiplies by its weight's transpose);
    ``form="mm"`` spells the same maps with ``mm``: encode ``x.mm(W.t())``, decode ``h.mm(W)``.
    (``x.mm(W)`` then ``.mm(W.t())`` would be the other tie, W^T-first, and differs from the
    linear form unless W is symmetric.)
    """

    def __init__(self, d_in: int, d_hidden: int, activation: str = "relu", form: str = "linear",
                 bias: bool = True, init: str | None = None) -> None:
        super().__init__()
        _check_positive("d_in", d_in)
        _check_positive("d_hidden", d_hidden)
        _check_choice("activation", activation, tuple(_ACTIVATIONS))
        _check_choice("form", form, _FORMS)
        self.activation = activation
        self.form = form
        self.init = _default_init(init, activation)
        self.weight = nn.Parameter(torch.empty(d_hidden, d_in))
        self.encoder_bias = _optional_bias(d_hidden, bias)
        self.decoder_bias = _optional_bias(d_in, bias)
        self.reset_parameters()

    def reset_parameters(self, fan_in: int | None = None) -> None:
        """Scale W for the encoder's fan-in, d_in, by default: it is the use that sees the data.
        Pass ``fan_in=d_hidden`` to scale for the decoder instead."""
        _INITS[self.init](self.weight, fan_in=fan_in)
        for b in (self.encoder_bias, self.decoder_bias):
            if b is not None:
                nn.init.zeros_(b)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., d_hidden), before the activation."""
        if self.form == "linear":
            return F.linear(x, self.weight, self.encoder_bias)
        h = _mm_last(x, self.weight.t())  # (N, d_in) @ (d_in, d_hidden)
        return h if self.encoder_bias is None else h + self.encoder_bias

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """(..., d_hidden) -> (..., d_in) with the same W, transposed."""
        if self.form == "linear":
            return F.linear(h, self.weight.t(), self.decoder_bias)
        y = _mm_last(h, self.weight)  # (N, d_hidden) @ (d_hidden, d_in)
        return y if self.decoder_bias is None else y + self.decoder_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(_ACTIVATIONS[self.activation](self.encode(x)))

    def extra_repr(self) -> str:
        d_hidden, d_in = self.weight.shape
        return (f"d_in={d_in}, d_hidden={d_hidden}, activation={self.activation}, form={self.form}, "
                f"init={self.init}")
