"""Arms of an ablation: named, small functions that derive one model config from the base.

The built-in pair differs in one visible line, the tie (Press & Wolf 2017; Inan et al. 2017).
An arm takes and returns the config dataclass of the base's model family, so every arm applies
to every family. Add your own with ``@register_arm("name")`` and name it in ``--arms`` (from
Python; the CLI knows the arms registered at import time).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from lmtie.errors import UserError
from lmtie.models import family_of_config

ArmFn = Callable[[Any], Any]
ARMS: dict[str, ArmFn] = {}


def register_arm(name: str) -> Callable[[ArmFn], ArmFn]:
    def wrap(fn: ArmFn) -> ArmFn:
        ARMS[name] = fn
        return fn

    return wrap


@register_arm("tied")
def tied(base):
    return base.replace(share_decoder_input_output_embed=True)


@register_arm("untied")
def untied(base):
    return base.replace(share_decoder_input_output_embed=False)


@register_arm("untied-matched")
def untied_matched(base):
    """Untied, with the width shrunk until its unique parameters are closest to the tied model's.

    Separates "tying helps" from "fewer parameters help": the two models then have (nearly) the
    same budget. The family says which widths exist (``widths()``) and what else scales with the
    width (``at_width``).
    """
    target = unique_parameters(tied(base))
    candidates = [untied(base.at_width(w)) for w in base.widths()]
    return min(candidates, key=lambda cfg: (abs(unique_parameters(cfg) - target), cfg.decoder_embed_dim))


def unique_parameters(cfg) -> int:
    """Unique parameters of ``cfg`` (a tied matrix once), counted on the meta device: no weights allocated."""
    with torch.device("meta"):
        return family_of_config(cfg).model_class(cfg).num_parameters()["total"]


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
