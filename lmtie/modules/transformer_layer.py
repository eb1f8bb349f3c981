"""fairseq's Transformer layer: self-attention then a feed-forward layer, each a residual branch,
normalised before the branch (pre-norm) or after the sum (post-norm, Vaswani et al. 2017)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from lmtie.modules.attention import CrossAttention, SelfAttention
from lmtie.modules.feedforward import FeedForward
from lmtie.modules.kv_cache import KVCache


class TransformerLayer(nn.Module):
    """One layer of width ``dim``; ``causal`` for a decoder (with an optional cache), else an encoder
    layer that takes a key padding mask. Module names are fairseq's where it has them."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, *, activation_fn: str = "relu", dropout: float = 0.0,
                 attention_dropout: float = 0.0, activation_dropout: float = 0.0, normalize_before: bool = True,
                 causal: bool = True):
        super().__init__()
        self.normalize_before = normalize_before
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.self_attn = SelfAttention(dim, heads, attention_dropout, causal=causal)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, activation_fn, activation_dropout)
        self.dropout = nn.Dropout(dropout)

    def residual(self, x: torch.Tensor, norm: nn.LayerNorm, branch: Callable[[torch.Tensor], torch.Tensor]):
        """x + branch(norm(x)) pre-norm, norm(x + branch(x)) post-norm; dropout on the branch either way."""
        if self.normalize_before:
            return x + self.dropout(branch(norm(x)))
        return norm(x + self.dropout(branch(x)))

    def forward(self, x: torch.Tensor, layer: int = 0, cache: KVCache | None = None,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.residual(x, self.self_attn_layer_norm, lambda h: self.self_attn(h, layer, cache, key_padding_mask))
        return self.residual(x, self.final_layer_norm, self.ffn)


class TransformerDecoderLayer(TransformerLayer):
    """A causal layer with cross-attention between self-attention and the feed-forward layer (Vaswani et al.
    2017, sec. 3.1). The keys and values of the encoder output are projected here, inside the layer's own
    forward (so FSDP has gathered its weights and activation checkpointing recomputes them), unless the
    caller passes them already projected (``memory``: a decoding loop's cache)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, *, encoder_dim: int, **kwargs):
        super().__init__(dim, heads, ffn_dim, causal=True, **kwargs)
        self.encoder_attn = CrossAttention(dim, heads, encoder_dim, self.self_attn.attention_dropout)
        self.encoder_attn_layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, layer: int = 0, cache: KVCache | None = None, *, encoder_out: torch.Tensor,
                padding_mask: torch.Tensor, memory: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        if memory is None:
            memory = self.encoder_attn.memory(encoder_out)
        x = self.residual(x, self.self_attn_layer_norm, lambda h: self.self_attn(h, layer, cache))
        x = self.residual(x, self.encoder_attn_layer_norm, lambda h: self.encoder_attn(h, *memory, padding_mask))
        return self.residual(x, self.final_layer_norm, self.ffn)
