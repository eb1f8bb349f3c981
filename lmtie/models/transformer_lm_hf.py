"""``transformer_lm`` <-> Hugging Face ``GPT2LMHeadModel``: the same pre-norm decoder under other names.

Per block: ``self_attn_layer_norm`` = ``ln_1``, ``self_attn.qkv`` = ``attn.c_attn`` (q, k, v rows
in the same order), ``self_attn.out_proj`` = ``attn.c_proj``, ``final_layer_norm`` = ``ln_2``,
``ffn.fc1`` / ``fc2`` = ``mlp.c_fc`` / ``c_proj``; GPT-2's Conv1D stores a Linear's weight
transposed ([in, out]). Exact equivalents exported beyond GPT-2's own settings:

- sinusoidal positions are a fixed table, written as ``wpe`` (exact up to
  ``--max-target-positions``; GPT-2 cannot extend past its table as lmtie's sinusoids can);
- the embedding scale sqrt(d) is folded into ``wte``; when tied, the head then sees sqrt(d)·E,
  so ``ln_f``'s gain and bias are divided by sqrt(d): logits = (LN(x)·g/s + b/s)·(sE)^T, the same;
- the activations are GPT-2's ``relu``, ``gelu`` (erf), ``gelu_new`` (tanh form) and ``silu``.

Refused: input/output projections (``--decoder-input-dim`` / ``--decoder-output-dim`` unlike
``--decoder-embed-dim``) and ``--no-decoder-final-norm``: GPT-2 has neither form.
"""

from __future__ import annotations

import math

import torch

from lmtie.errors import UserError
from lmtie.models.hf_registry import HFConverter, Tensors, need, refuse, register_hf_converter, take
from lmtie.models.transformer_lm import TransformerLMConfig
from lmtie.modules.embedding import sinusoidal_table

_TO_HF_ACT = {"relu": "relu", "gelu": "gelu", "gelu_accurate": "gelu_new", "silu": "silu"}
_FROM_HF_ACT = {"relu": "relu", "gelu": "gelu", "gelu_new": "gelu_accurate", "gelu_pytorch_tanh": "gelu_accurate",
                "silu": "silu", "swish": "silu"}
_BLOCK = {  # lmtie name in layers.{i} -> (GPT-2 name in h.{i}, transposed)
    "self_attn_layer_norm.weight": ("ln_1.weight", False), "self_attn_layer_norm.bias": ("ln_1.bias", False),
    "self_attn.qkv.weight": ("attn.c_attn.weight", True), "self_attn.qkv.bias": ("attn.c_attn.bias", False),
    "self_attn.out_proj.weight": ("attn.c_proj.weight", True), "self_attn.out_proj.bias": ("attn.c_proj.bias", False),
    "final_layer_norm.weight": ("ln_2.weight", False), "final_layer_norm.bias": ("ln_2.bias", False),
    "ffn.fc1.weight": ("mlp.c_fc.weight", True), "ffn.fc1.bias": ("mlp.c_fc.bias", False),
    "ffn.fc2.weight": ("mlp.c_proj.weight", True), "ffn.fc2.bias": ("mlp.c_proj.bias", False),
}
_LN_EPS = 1e-5  # nn.LayerNorm's default, which every lmtie LayerNorm uses


def _refusals(cfg: TransformerLMConfig) -> list[str]:
    d = cfg.decoder_embed_dim
    flags = []
    if cfg.decoder_input_dim != d:
        flags.append(f"--decoder-input-dim {cfg.decoder_input_dim} != --decoder-embed-dim {d} (an input projection)")
    if cfg.decoder_output_dim != d:
        flags.append(f"--decoder-output-dim {cfg.decoder_output_dim} != --decoder-embed-dim {d} (an output projection)")
    if cfg.no_decoder_final_norm:
        flags.append("--no-decoder-final-norm (GPT-2 always applies ln_f)")
    if cfg.layernorm_embedding:
        flags.append("--layernorm-embedding (GPT-2 has no norm on its embeddings)")
    return flags


def to_hf(cfg: TransformerLMConfig, state: Tensors) -> tuple[dict, Tensors]:
    refuse(_refusals(cfg), "GPT2LMHeadModel")
    d = cfg.decoder_embed_dim
    out: Tensors = {}
    for i in range(cfg.decoder_layers):
        for ours, (theirs, transposed) in _BLOCK.items():
            t = state[f"decoder.layers.{i}.{ours}"]
            out[f"transformer.h.{i}.{theirs}"] = t.t().contiguous() if transposed else t
    scale = 1.0 if cfg.no_scale_embedding else math.sqrt(d)  # folded into wte (and ln_f when tied)
    wte = state["decoder.embed_tokens.weight"]
    out["transformer.wte.weight"] = wte if scale == 1.0 else wte * scale
    gain, bias = state["decoder.layer_norm.weight"], state["decoder.layer_norm.bias"]
    fold_head = scale != 1.0 and cfg.share_decoder_input_output_embed
    out["transformer.ln_f.weight"] = gain / scale if fold_head else gain
    out["transformer.ln_f.bias"] = bias / scale if fold_head else bias
    pos = state.get("decoder.embed_positions")
    if cfg.no_token_positional_embeddings:  # a zero table adds nothing: exactly no positions
        pos = torch.zeros(cfg.max_target_positions, d)
    out["transformer.wpe.weight"] = pos if pos is not None else sinusoidal_table(cfg.max_target_positions, d)
    if not cfg.share_decoder_input_output_embed:
        out["lm_head.weight"] = state["decoder.embed_out"]
    config = dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_embd=d, n_layer=cfg.decoder_layers,
                  n_head=cfg.decoder_attention_heads, n_inner=cfg.decoder_ffn_embed_dim,
                  n_positions=cfg.max_target_positions, activation_function=_TO_HF_ACT[cfg.activation_fn],
                  layer_norm_epsilon=_LN_EPS, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
                  attn_pdrop=cfg.attention_dropout, scale_attn_weights=True)
    return config, out


def _check_importable(config: dict) -> None:
    act = config.get("activation_function", "gelu_new")
    bad = []
    if act not in _FROM_HF_ACT:
        bad.append(f"activation_function={act!r} (lmtie has {', '.join(sorted(_FROM_HF_ACT))})")
    if not math.isclose(config.get("layer_norm_epsilon", _LN_EPS), _LN_EPS):
        bad.append(f"layer_norm_epsilon={config['layer_norm_epsilon']} (lmtie's LayerNorm uses {_LN_EPS})")
    for key, ok in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                    ("add_cross_attention", False)):
        if bool(config.get(key, ok)) != ok:
            bad.append(f"{key}={config[key]}")
    if bad:
        raise UserError(f"this GPT-2 config has no exact lmtie equivalent: {'; '.join(bad)}")


def from_hf(config: dict, state: Tensors) -> tuple[dict, Tensors]:
    _check_importable(config)
    d, layers = need(config, "n_embd"), need(config, "n_layer")
    fields = dict(decoder_embed_dim=d, decoder_ffn_embed_dim=int(config.get("n_inner") or 4 * d),
                  decoder_layers=layers, decoder_attention_heads=need(config, "n_head"),
                  decoder_learned_pos=True, no_scale_embedding=True,
                  activation_fn=_FROM_HF_ACT[config.get("activation_function", "gelu_new")],
                  max_target_positions=need(config, "n_positions"),
                  dropout=float(config.get("resid_pdrop", 0.1)), attention_dropout=float(config.get("attn_pdrop", 0.1)))
    out: Tensors = {}
    for i in range(layers):
        for ours, (theirs, transposed) in _BLOCK.items():
            t = take(state, f"transformer.h.{i}.{theirs}")
            out[f"decoder.layers.{i}.{ours}"] = t.t().contiguous() if transposed else t
    out["decoder.embed_tokens.weight"] = take(state, "transformer.wte.weight")
    out["decoder.embed_positions"] = take(state, "transformer.wpe.weight")
    out["decoder.layer_norm.weight"] = take(state, "transformer.ln_f.weight")
    out["decoder.layer_norm.bias"] = take(state, "transformer.ln_f.bias")
    if "lm_head.weight" in state:
        out["decoder.embed_out"] = state["lm_head.weight"]
    return fields, out


register_hf_converter(HFConverter("transformer_lm", ("gpt2",), "transformer.wte.weight", to_hf, from_hf,
                                  tie_default=True))
