"""Arms of an ablation: named, small functions that derive one model config from the base.

The built-in pair differs in one visible line, the tie (Press & Wolf 2017; Inan et al. 2017).
Add your own with ``@register_arm("name")`` on a function ``TransformerLMConfig -> TransformerLMConfig``
and name it in ``--arms`` (from Python; the CLI knows the arms registered at import time).
"""

from __future__ import annotations

from typing import Callable

import torch

from lmtie.errors import UserError
from lmtie.models import TransformerLMConfig
from lmtie.models.transformer_lm import TransformerDecoder

ArmFn = Callable[[TransformerLMConfig], TransformerLMConfig]
ARMS: dict[str, ArmFn] = {}


def register_arm(name: str) -> Callable[[ArmFn], ArmFn]:
    def wrap(fn: ArmFn) -> ArmFn:
        ARMS[name] = fn
        return fn

    return wrap


@register_arm("tied")
def tied(base: TransformerLMConfig) -> TransformerLMConfig:
    return base.replace(share_decoder_input_output_embed=True)


@register_arm("untied")
def untied(base: TransformerLMConfig) -> TransformerLMConfig:
    return base.replace(share_decoder_input_output_embed=False)


@register_arm("untied-matched")
def untied_matched(base: TransformerLMConfig) -> TransformerLMConfig:
    """Untied, with the width shrunk until its unique parameters are closest to the tied model's.

    Separates "tying helps" from "fewer parameters help": the two models then have (nearly) the
    same budget. Width = decoder_embed_dim in steps of the head count, the FFN scaled with it.
    """
    target = unique_parameters(tied(base))
    heads = base.decoder_attention_heads
    candidates = [_narrower(base, d) for d in range(heads, base.decoder_embed_dim + 1, heads)]
    return min(candidates, key=lambda cfg: (abs(unique_parameters(cfg) - target), cfg.decoder_embed_dim))


def _narrower(base: TransformerLMConfig, width: int) -> TransformerLMConfig:
    """The untied model at ``width``; input/output widths follow when they equalled the old one."""
    d = base.decoder_embed_dim
    follow = lambda dim: width if dim == d else dim
    ffn = max(1, round(base.decoder_ffn_embed_dim * width / d))
    return base.replace(share_decoder_input_output_embed=False, decoder_embed_dim=width, decoder_ffn_embed_dim=ffn,
                        decoder_input_dim=follow(base.decoder_input_dim),
                        decoder_output_dim=follow(base.decoder_output_dim))


def unique_parameters(cfg: TransformerLMConfig) -> int:
    """Unique parameters of ``cfg`` (a tied matrix once), counted without allocating weights.

    Built on the meta device, where every tensor has address 0, so the model's tie check (which
    compares storage) is skipped by building the decoder alone; it holds every parameter.
    """
    with torch.device("meta"):
        return sum(p.numel() for p in TransformerDecoder(cfg).parameters())


def resolve_arms(names: str | list[str]) -> dict[str, ArmFn]:
    """``"tied,untied"`` -> the arm functions, in order; unknown or repeated names are an error."""
    listed = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    listed = [n for n in listed if n]
    unknown = [n for n in listed if n not in ARMS]
    if unknown or not listed:
        raise UserError(f"--arms {','.join(listed)!s}: unknown arm {unknown[0] if unknown else '(none given)'}; "
                        f"choose from {', '.join(sorted(ARMS))} (or register one with lmtie.ablation.register_arm)")
    if len(set(listed)) != len(listed):
        raise UserError(f"--arms {','.join(listed)}: an arm is listed twice; list each once")
    return {n: ARMS[n] for n in listed}
