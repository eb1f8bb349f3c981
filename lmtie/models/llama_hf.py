"""``llama`` <-> Hugging Face ``LlamaForCausalLM`` (``Qwen3ForCausalLM`` with ``--qk-norm``).

The module names are HF's already (see ``llama.py``): an export splits the fused ``qkv_proj``
rows into ``q_proj``, ``k_proj``, ``v_proj`` and ``gate_up_proj`` into ``gate_proj``, ``up_proj``;
an import concatenates them back. Rotary positions use HF's rotate-half layout, so no weight is
permuted. QK-norm (RMSNorm over head_dim on queries and keys before RoPE) is exactly Qwen3's
``q_norm`` / ``k_norm``; Llama has none. Refused on import: biases (Qwen2's q/k/v, ``attention_bias``,
``mlp_bias``), a head_dim other than hidden_size / heads, rope scaling, sliding windows.
"""

from __future__ import annotations

import torch

from lmtie.errors import UserError
from lmtie.models.hf_registry import HFConverter, Tensors, need, register_hf_converter, take
from lmtie.models.llama import LlamaConfig

_SAME = ("input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.o_proj.weight",
         "mlp.down_proj.weight")  # the same name and layout in both
_QK_NORMS = ("self_attn.q_norm.weight", "self_attn.k_norm.weight")  # Qwen3's, and lmtie's with --qk-norm


def to_hf(cfg: LlamaConfig, state: Tensors) -> tuple[dict, Tensors]:
    q_dim, kv_dim = cfg.decoder_attention_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    out: Tensors = {"model.embed_tokens.weight": state["model.embed_tokens.weight"],
                    "model.norm.weight": state["model.norm.weight"]}
    for i in range(cfg.decoder_layers):
        p = f"model.layers.{i}."  # the same prefix in both
        q, k, v = state[p + "self_attn.qkv_proj.weight"].split((q_dim, kv_dim, kv_dim), dim=0)  # rows
        gate, up = state[p + "mlp.gate_up_proj.weight"].chunk(2, dim=0)
        split = {"self_attn.q_proj": q, "self_attn.k_proj": k, "self_attn.v_proj": v, "mlp.gate_proj": gate,
                 "mlp.up_proj": up}
        out.update({p + name + ".weight": t.contiguous() for name, t in split.items()})
        out.update({p + n: state[p + n] for n in _SAME + (_QK_NORMS if cfg.qk_norm else ())})
    if not cfg.share_decoder_input_output_embed:
        out["lm_head.weight"] = state["lm_head.weight"]
    model_type, arch = ("qwen3", "Qwen3ForCausalLM") if cfg.qk_norm else ("llama", "LlamaForCausalLM")
    config = dict(model_type=model_type, architectures=[arch], hidden_size=cfg.decoder_embed_dim,
                  intermediate_size=cfg.decoder_ffn_embed_dim, num_hidden_layers=cfg.decoder_layers,
                  num_attention_heads=cfg.decoder_attention_heads, num_key_value_heads=cfg.kv_heads,
                  head_dim=cfg.head_dim, hidden_act="silu", max_position_embeddings=cfg.max_target_positions,
                  rms_norm_eps=cfg.rms_norm_eps, rope_theta=cfg.rope_theta,
                  rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
                  attention_bias=False, mlp_bias=False, attention_dropout=cfg.attention_dropout,
                  initializer_range=cfg.init_std)
    if cfg.qk_norm:
        config.update(use_sliding_window=False, sliding_window=None,
                      layer_types=["full_attention"] * cfg.decoder_layers)
    return config, out


def _rope_theta(config: dict) -> float:
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        raise UserError(f"rope_type {kind!r} (rope scaling) has no lmtie equivalent; lmtie implements plain RoPE")
    return float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))


def _check_importable(config: dict) -> None:
    bad = []
    d, h = need(config, "hidden_size"), need(config, "num_attention_heads")
    if config.get("hidden_act", "silu") != "silu":
        bad.append(f"hidden_act={config['hidden_act']!r} (lmtie's SwiGLU uses silu)")
    if config.get("model_type") == "qwen2" or config.get("attention_bias") or config.get("mlp_bias"):
        bad.append("biases on q/k/v or the MLP (Qwen2, attention_bias, mlp_bias); lmtie's llama has none")
    if config.get("head_dim") not in (None, d // h):
        bad.append(f"head_dim={config['head_dim']} != hidden_size / num_attention_heads = {d // h}")
    if config.get("use_sliding_window") or (config.get("model_type") != "qwen3" and config.get("sliding_window")):
        bad.append("a sliding attention window")
    if bad:
        raise UserError(f"this {config.get('model_type')} config has no exact lmtie equivalent: {'; '.join(bad)}")


def from_hf(config: dict, state: Tensors) -> tuple[dict, Tensors]:
    _check_importable(config)
    layers, qk_norm = need(config, "num_hidden_layers"), config.get("model_type") == "qwen3"
    heads = need(config, "num_attention_heads")
    fields = dict(decoder_embed_dim=need(config, "hidden_size"),
                  decoder_ffn_embed_dim=need(config, "intermediate_size"), decoder_layers=layers,
                  decoder_attention_heads=heads, decoder_kv_heads=int(config.get("num_key_value_heads") or heads),
                  rope_theta=_rope_theta(config), rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
                  qk_norm=qk_norm, dropout=0.0, attention_dropout=float(config.get("attention_dropout", 0.0)),
                  max_target_positions=need(config, "max_position_embeddings"),
                  init_std=float(config.get("initializer_range", 0.02)))
    out: Tensors = {"model.embed_tokens.weight": take(state, "model.embed_tokens.weight"),
                    "model.norm.weight": take(state, "model.norm.weight")}
    for i in range(layers):
        p = f"model.layers.{i}."
        qkv = [take(state, p + f"self_attn.{n}_proj.weight") for n in "qkv"]
        out[p + "self_attn.qkv_proj.weight"] = torch.cat(qkv, dim=0)
        out[p + "mlp.gate_up_proj.weight"] = torch.cat([take(state, p + "mlp.gate_proj.weight"),
                                                        take(state, p + "mlp.up_proj.weight")], dim=0)
        out.update({p + n: take(state, p + n) for n in _SAME + (_QK_NORMS if qk_norm else ())})
    if "lm_head.weight" in state:
        out["lm_head.weight"] = state["lm_head.weight"]
    return fields, out


register_hf_converter(HFConverter("llama", ("llama", "qwen3", "qwen2"), "model.embed_tokens.weight", to_hf, from_hf))
