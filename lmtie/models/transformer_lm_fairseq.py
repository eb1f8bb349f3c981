"""fairseq ``transformer_lm`` weights and args -> ``transformer_lm`` fields and state, exactly.

The two decoders compute the same function under other names, with three differences folded here:

- fairseq's separate ``self_attn.{q,k,v}_proj`` are lmtie's fused ``self_attn.qkv`` (rows q, k, v);
- fairseq numbers positions from ``padding_idx + 1`` (``make_positions``), so token t reads row
  ``padding_idx + 1 + t`` of its table; lmtie reads row t. Learned tables are sliced; sinusoidal
  ones (fairseq stores only a ``_float_tensor`` placeholder) are fairseq's formula at the offset
  rows, imported as a learned table of ``max_target_positions`` rows (lmtie's own sinusoids start at 0);
- fairseq scales embeddings by sqrt(decoder_embed_dim), lmtie by sqrt(decoder_input_dim): equal
  unless an input projection exists, whose (bias-free) weight then absorbs the ratio.

Anything else (post-norm blocks, adaptive input/softmax, embedding LayerNorm, NormFormer scales,
an unknown key) is refused by name rather than imported as a different model.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lmtie.errors import UserError
from lmtie.modules.embedding import sinusoidal_table

Tensors = dict[str, torch.Tensor]

_ACT = {"relu": "relu", "gelu": "gelu", "gelu_accurate": "gelu_accurate", "gelu_fast": "gelu_accurate",
        "swish": "silu", "silu": "silu"}
_COPIED = {"decoder_embed_dim": int, "decoder_ffn_embed_dim": int, "decoder_layers": int,
           "decoder_attention_heads": int, "decoder_learned_pos": bool, "no_scale_embedding": bool,
           "no_decoder_final_norm": bool, "dropout": float, "attention_dropout": float}
# option -> the value lmtie's decoder implies; any other value has no lmtie equivalent
_REQUIRED = {"decoder_normalize_before": True, "adaptive_input": False, "adaptive_softmax_cutoff": None,
             "character_embeddings": False, "layernorm_embedding": False, "no_token_positional_embeddings": False,
             "tie_adaptive_weights": False, "cross_self_attention": False, "decoder_layers_to_keep": None,
             "scale_attn": False, "scale_fc": False, "scale_heads": False, "scale_resids": False}
_BLOCK = [f"{m}.{p}" for m in ("self_attn_layer_norm", "self_attn.out_proj", "final_layer_norm", "fc1", "fc2")
          for p in ("weight", "bias")]  # fairseq's names in layers.{i}; lmtie's are the same, fc1/fc2 under ffn.
_IGNORED = ("decoder.version", "decoder.embed_positions._float_tensor")  # a version number, a placeholder


def _differs(value: Any, wanted: bool | None) -> bool:
    """Whether an option is set otherwise than lmtie's decoder implies (None: unset, as fairseq spells it)."""
    return value not in (None, "", "0", 0, False) if wanted is None else bool(value) != wanted


def fields_from_args(args: dict[str, Any]) -> dict:
    """``TransformerLMConfig`` fields of fairseq's model args; options lmtie cannot express are refused by name."""
    arch = str(args.get("arch") or args.get("_name") or "")
    if not arch.startswith("transformer_lm"):
        raise UserError(f"arch {arch!r} is not a fairseq transformer_lm (only transformer_lm* models import)")
    bad = [f"{k}={args[k]!r} (lmtie needs {v!r})" for k, v in _REQUIRED.items() if k in args and _differs(args[k], v)]
    act = str(args.get("activation_fn", "relu"))
    if act not in _ACT:
        bad.append(f"activation_fn={act!r} (lmtie has {', '.join(sorted(_ACT))})")
    if bad:
        raise UserError(f"this fairseq model has no exact lmtie equivalent: {'; '.join(bad)}")
    fields = {k: kind(args[k]) for k, kind in _COPIED.items() if args.get(k) is not None}
    for k in ("decoder_input_dim", "decoder_output_dim"):
        if args.get(k) is not None:
            fields[k] = int(args[k])
    fields["activation_dropout"] = float(args.get("activation_dropout") or args.get("relu_dropout") or 0.0)
    fields["activation_fn"] = _ACT[act]
    positions = args.get("max_target_positions") or args.get("tokens_per_sample")
    if positions is None:
        raise UserError("the args give neither max_target_positions nor tokens_per_sample")
    fields["max_target_positions"] = int(positions)
    fields["share_decoder_input_output_embed"] = bool(args.get("share_decoder_input_output_embed", False))
    return fields


def _take(state: Tensors, key: str) -> torch.Tensor:
    if key not in state:
        raise UserError(f"the model state lacks {key!r}, which a fairseq transformer_lm of these args has")
    return state.pop(key)


def _positions(state: Tensors, fields: dict, padding_idx: int) -> torch.Tensor:
    """The rows lmtie's positions 0..max-1 read: fairseq's rows padding_idx+1 onwards."""
    n, d = fields["max_target_positions"], fields["decoder_embed_dim"]
    if fields.get("decoder_learned_pos"):
        table = _take(state, "decoder.embed_positions.weight")
        if table.shape != (n + padding_idx + 1, d):
            raise UserError(f"decoder.embed_positions.weight is {tuple(table.shape)}, expected "
                            f"({n + padding_idx + 1}, {d}) = (max_target_positions + padding_idx + 1, embed_dim)")
        return table[padding_idx + 1:].clone()
    return sinusoidal_table(n + padding_idx + 1, d)[padding_idx + 1:].clone()


def _head(state: Tensors, embed: torch.Tensor, tied: bool) -> torch.Tensor | None:
    """The untied output matrix (``embed_out`` in old checkpoints, ``output_projection.weight`` in new)."""
    head = state.pop("decoder.output_projection.weight", None)
    old = state.pop("decoder.embed_out", None)
    head = head if head is not None else old
    if tied:
        if head is not None and not torch.equal(head, embed):
            raise UserError("args say share_decoder_input_output_embed but the output projection differs from "
                            "decoder.embed_tokens.weight")
        return None
    if head is None:
        raise UserError("args say the embedding is not shared, but the state has neither decoder.embed_out nor "
                        "decoder.output_projection.weight")
    return head


def from_fairseq(args: dict[str, Any], fairseq_state: Tensors, padding_idx: int) -> tuple[dict, Tensors]:
    """(config fields, lmtie state dict) of a fairseq ``transformer_lm``; every key is used or refused."""
    fields = fields_from_args(args)
    state = {k: v.float() if v.is_floating_point() else v for k, v in fairseq_state.items()}
    out: Tensors = {}
    for i in range(fields.get("decoder_layers", 6)):
        src = f"decoder.layers.{i}."
        for name in _BLOCK:
            out[f"decoder.layers.{i}.{'ffn.' if name.startswith('fc') else ''}{name}"] = _take(state, src + name)
        for part in ("weight", "bias"):  # lmtie's fused projection: rows q, then k, then v
            out[f"decoder.layers.{i}.self_attn.qkv.{part}"] = torch.cat(
                [_take(state, f"{src}self_attn.{p}_proj.{part}") for p in "qkv"])
    embed = _take(state, "decoder.embed_tokens.weight")
    out["decoder.embed_tokens.weight"] = embed
    out["decoder.embed_positions"] = _positions(state, fields, padding_idx)
    fields["decoder_learned_pos"] = True  # a sinusoidal table arrives as its rows at fairseq's offset
    if not fields.get("no_decoder_final_norm"):
        out["decoder.layer_norm.weight"] = _take(state, "decoder.layer_norm.weight")
        out["decoder.layer_norm.bias"] = _take(state, "decoder.layer_norm.bias")
    if "decoder.project_in_dim.weight" in state:
        w = state.pop("decoder.project_in_dim.weight")
        d, d_in = w.shape
        ratio = 1.0 if fields.get("no_scale_embedding") else math.sqrt(d) / math.sqrt(d_in)
        out["decoder.project_in_dim.weight"] = w * ratio  # fairseq scales by sqrt(d), lmtie by sqrt(d_in)
    if "decoder.project_out_dim.weight" in state:
        out["decoder.project_out_dim.weight"] = state.pop("decoder.project_out_dim.weight")
    head = _head(state, embed, fields["share_decoder_input_output_embed"])
    if head is not None:
        out["decoder.embed_out"] = head
    left = sorted(k for k in state if k not in _IGNORED)
    if left:
        more = f" and {len(left) - 3} more" if len(left) > 3 else ""
        raise UserError(f"the model state has keys with no lmtie equivalent: {', '.join(left[:3])}{more}")
    return fields, out
