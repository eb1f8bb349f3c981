"""Arms of an ablation: named, small functions that derive one model config from the base.

The built-in pair differs in one visible line, the tie (Press & Wolf 2017; Inan et al. 2017).
An arm takes and returns the config dataclass of the base's model family, so every arm applies
to every family. Add your own with ``@register_arm("name")`` and name it in ``--arms`` (from
Python; the CLI knows the arms registered at import time). An arm with a parameter
(``@register_arm("untie-at", param=int, tasks=("language_modeling",))``) is named ``untie-at:500`` in ``--arms``.

Beyond on/off: ``tied-init`` (keras-hub's "start equal, train separately"), ``untie-at:K`` (tied
early, untied late; the speedrun community has gone both ways, modded-nanogpt PR #175 re-tied) and
``tied-pr`` (Press & Wolf 2017's projection regularisation).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch

from lmtie.errors import UserError
from lmtie.models import family_of_config

ArmFn = Callable[[Any], Any]
ARMS: dict[str, ArmFn] = {}
ARM_PARAMS: dict[str, type] = {}  # arms taking a parameter ("untie-at:500") -> its type
BOTH = ("language_modeling", "translation")
ARM_TASKS: dict[str, tuple[str, ...]] = {}  # the tasks whose families an arm applies to


def register_arm(name: str, param: type | None = None, tasks: tuple[str, ...] = BOTH) -> Callable[[ArmFn], ArmFn]:
    """Register ``fn(base)`` as arm ``name``; with ``param``, ``fn(base, value)`` as ``name:value``; ``tasks``
    are those whose model families it applies to."""
    def wrap(fn: ArmFn) -> ArmFn:
        ARMS[name] = fn
        ARM_TASKS[name] = tuple(tasks)
        if param is not None:
            ARM_PARAMS[name] = param
        return fn

    return wrap


def arms_for(task: str) -> list[str]:
    """The registered arms that apply to ``task``'s families, in registration order."""
    return [n for n in ARMS if task in ARM_TASKS[n]]


@register_arm("tied")
def tied(base):
    """The output layer is the (decoder's) input embedding."""
    return _ties(base, decoder=True)


@register_arm("untied")
def untied(base):
    """Every matrix its own (in translation: source embedding, target embedding and output layer)."""
    return _ties(base, decoder=False)


@register_arm("all-tied", tasks=("translation",))
def all_tied(base):
    """Translation's ``--share-all-embeddings``: one matrix embeds the source and the target and is the output
    layer (needs a joined dictionary)."""
    if not hasattr(base, "share_all_embeddings"):
        raise UserError(f"arm all-tied: the {family_of_config(base).name} family has a single embedding; "
                        "all-tied is for encoder-decoder models (use tied)")
    return _ties(base, decoder=True, everything=True)


def _most_shared(base):
    """The tied model the matched arm is sized to: all-tied for an encoder-decoder on a joined dictionary
    (the smallest of the three), else tied."""
    joined = getattr(base, "src_vocab_size", None) == getattr(base, "tgt_vocab_size", 0)
    return all_tied(base) if hasattr(base, "share_all_embeddings") and joined else tied(base)


def _ties(base, decoder: bool, everything: bool = False):
    """``base`` with the decoder tie set, and the all-embeddings tie (where the family has one) set or cleared."""
    changes = {"share_decoder_input_output_embed": decoder}
    if hasattr(base, "share_all_embeddings"):
        changes["share_all_embeddings"] = everything
    return base.replace(**changes)


@register_arm("untied-matched")
def untied_matched(base):
    """Untied, with the width shrunk until its unique parameters are closest to the tied model's (in
    translation on a joined dictionary: the all-tied model's).

    Separates "tying helps" from "fewer parameters help": the two models then have (nearly) the
    same budget. The family says which widths exist (``widths()``) and what else scales with the
    width (``at_width``).
    """
    target = unique_parameters(_most_shared(base))
    candidates = [untied(base.at_width(w)) for w in base.widths()]
    return min(candidates, key=lambda cfg: (abs(unique_parameters(cfg) - target), cfg.decoder_embed_dim))


@register_arm("tied-init", tasks=("language_modeling",))
def tied_init(base):
    """Untied, the output matrix starting as an exact copy of the input embedding."""
    return untied(base).replace(init_output_from_embedding=True)


@register_arm("untie-at", param=int)
def untie_at(base, update: int):
    """Tied for ``update`` updates, then two matrices that start equal (with the Adam state copied)."""
    return tied(base).replace(untie_at_update=update)


@register_arm("tied-pr", tasks=("language_modeling",))
def tied_pr(base):
    """Tied, with Press & Wolf's projection P before the output layer and its penalty."""
    return tied(base).replace(output_projection=True)


def unique_parameters(cfg) -> int:
    """Unique parameters of ``cfg`` (a tied matrix once), counted on the meta device: no weights allocated."""
    with torch.device("meta"):
        return family_of_config(cfg).model_class(cfg).num_parameters()["total"]


def resolve_arms(names: str | list[str], task: str | None = None) -> dict[str, ArmFn]:
    """``"tied,untied,untie-at:500"`` -> the arm functions, in order; unknown or repeated names, and (given the
    base model's ``task``) arms that do not apply to it, are an error."""
    listed = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    listed = [n for n in listed if n]
    wrong = [n for n in listed if task is not None and n.partition(":")[0] in ARM_TASKS
             and task not in ARM_TASKS[n.partition(":")[0]]]
    if wrong:
        raise UserError(f"--arms {','.join(listed)}: arm {wrong[0]} does not apply to a {task} model; its arms are "
                        f"{', '.join(arms_for(task))}")
    if len(set(listed)) != len(listed):
        raise UserError(f"--arms {','.join(listed)}: an arm is listed twice; list each once")
    if not listed:
        raise UserError(f"--arms: no arm given; {_choices()}")
    return {n: _arm(n, listed) for n in listed}


def _arm(name: str, listed: list[str]) -> ArmFn:
    """The arm function of ``name``; ``name:value`` binds the value of an arm with a parameter."""
    base, sep, value = name.partition(":")
    where = f"--arms {','.join(listed)}"
    if base not in ARMS or bool(sep) != (base in ARM_PARAMS):
        why = (f"arm {base} takes a value ({base}:N)" if base in ARM_PARAMS
               else f"arm {base} takes no value" if base in ARMS else f"unknown arm {name}")
        raise UserError(f"{where}: {why}; {_choices()}")
    if not sep:
        return ARMS[name]
    kind = ARM_PARAMS[base]
    try:
        parsed = kind(value)
    except ValueError:
        raise UserError(f"{where}: {name}: {value!r} is not {'an integer' if kind is int else 'a ' + kind.__name__}")
    if kind is int and parsed < 1:
        raise UserError(f"{where}: {name}: the value must be >= 1")

    @functools.wraps(ARMS[base])
    def arm(cfg):
        return ARMS[base](cfg, parsed)

    return arm


def _choices() -> str:
    shown = sorted(f"{n}:N" if n in ARM_PARAMS else n for n in ARMS)
    return f"choose from {', '.join(shown)} (or register one with lmtie.ablation.register_arm)"
