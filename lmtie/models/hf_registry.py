"""Hugging Face converters, one per family, looked up by the family's name or by HF's ``model_type``.

A converter lives beside its family (``transformer_lm_hf.py``, ``llama_hf.py``) and only maps
names, shapes and config fields; it needs neither ``transformers`` nor files. What it promises:

- ``to_hf(cfg, state)``: ``(config fields, tensors)`` of the exact HF equivalent of a model
  (``model_type``, ``architectures`` and the shape fields; the caller adds vocabulary, special ids
  and the tie), or a UserError naming every flag that has no exact equivalent. A tied matrix
  appears once (under the input embedding's HF name); an untied head as ``lm_head.weight``.
- ``from_hf(config, state)``: ``(config fields, lmtie state_dict)`` of a ``save_pretrained``
  config.json and its tensors, the input embedding and the head already resolved by the caller
  (``state`` holds the head under ``lm_head.weight`` only when untied), or a UserError naming the
  config field lmtie cannot honour. ``to_hf(from_hf(x))`` gives back x's tensors bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from lmtie.errors import UserError

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class HFConverter:
    family: str
    model_types: tuple[str, ...]  # the HF model_type values from_hf accepts
    embed_key: str  # HF name of the input embedding (which a tied head is)
    to_hf: Callable[[object, Tensors], tuple[dict, Tensors]]
    from_hf: Callable[[dict, Tensors], tuple[dict, Tensors]]
    tie_default: bool = False  # the HF config class's tie_word_embeddings default (save_pretrained omits defaults)


HF_CONVERTERS: dict[str, HFConverter] = {}


def register_hf_converter(converter: HFConverter) -> HFConverter:
    if HF_CONVERTERS.get(converter.family, converter) != converter:
        raise ValueError(f"family {converter.family!r} already has a Hugging Face converter")
    HF_CONVERTERS[converter.family] = converter
    return converter


def hf_converter(family: str) -> HFConverter:
    if family not in HF_CONVERTERS:
        raise UserError(f"model family {family!r} has no Hugging Face converter; families that have one: "
                        f"{', '.join(sorted(HF_CONVERTERS))}")
    return HF_CONVERTERS[family]


def hf_converter_for(model_type: str) -> HFConverter:
    for converter in HF_CONVERTERS.values():
        if model_type in converter.model_types:
            return converter
    known = sorted(t for c in HF_CONVERTERS.values() for t in c.model_types)
    raise UserError(f"Hugging Face model_type {model_type!r} cannot be imported; lmtie imports {', '.join(known)}")


def take(state: Tensors, key: str, where: str = "the HF weights") -> torch.Tensor:
    """``state[key]``, or a UserError naming the missing tensor."""
    if key not in state:
        raise UserError(f"{where} lack tensor {key!r}; the directory is incomplete or not of the model_type it claims")
    return state[key]


def need(config: dict, key: str) -> int:
    """A shape field of config.json (an int), or a UserError naming it: shapes are never guessed."""
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"config.json: {key} is {value!r}, not a positive integer; the config is incomplete")
    return value


def refuse(flags: list[str], target: str) -> None:
    """One UserError naming every setting that keeps a model from being ``target`` exactly."""
    if flags:
        raise UserError(f"cannot export as {target} exactly: {'; '.join(flags)}")
