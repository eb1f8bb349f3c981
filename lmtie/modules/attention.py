"""Multi-head attention through ``F.scaled_dot_product_attention``: self-attention (causal or with a
key padding mask) and cross-attention over an encoder's output."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lmtie.modules.kv_cache import KVCache


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, C) -> (B, heads, T, C / heads)."""
    B, T, C = x.shape
    return x.view(B, T, heads, C // heads).transpose(1, 2)


def merge_heads(y: torch.Tensor) -> torch.Tensor:
    """(B, heads, T, hd) -> (B, T, heads * hd)."""
    B, H, T, hd = y.shape
    return y.transpose(1, 2).reshape(B, T, H * hd)


def keep_mask(padding_mask: torch.Tensor) -> torch.Tensor:
    """(B, S) True at <pad> -> (B, 1, 1, S) True where a query may attend (SDPA's boolean convention)."""
    return ~padding_mask[:, None, None, :]


class SelfAttention(nn.Module):
    """Multi-head self-attention, q/k/v projected by one fused Linear (``qkv``: rows q, k, v).

    ``causal`` attention (a decoder) may use a :class:`KVCache`; non-causal attention (an encoder)
    takes a key padding mask instead, so no query reads a <pad> key.
    """

    def __init__(self, dim: int, heads: int, attention_dropout: float = 0.0, causal: bool = True):
        super().__init__()
        self.num_heads = heads
        self.causal = causal
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.attention_dropout = attention_dropout

    def forward(self, x: torch.Tensor, layer: int = 0, cache: KVCache | None = None,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).split(x.size(-1), dim=2))  # (B, H, T, hd)
        mask, causal = None, self.causal
        if cache is not None:
            k, v, mask, causal = cache.attend(layer, k, v)  # (B, H, past + T, hd)
        elif key_padding_mask is not None:
            if causal:
                raise ValueError("a key padding mask is for non-causal attention; right padding needs none")
            mask = keep_mask(key_padding_mask)
        p = self.attention_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)
        return self.out_proj(merge_heads(y))  # (B, T, C)


class CrossAttention(nn.Module):
    """Queries from the decoder, keys and values from an encoder's output (``memory``, width ``memory_dim``).

    :meth:`memory` projects the encoder output once per sentence; a decoding loop keeps its result
    and calls ``forward`` with it at every step.
    """

    def __init__(self, dim: int, heads: int, memory_dim: int, attention_dropout: float = 0.0):
        super().__init__()
        self.num_heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(memory_dim, 2 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.attention_dropout = attention_dropout

    def memory(self, encoder_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, memory_dim) -> keys and values, each (B, H, S, hd)."""
        k, v = self.kv_proj(encoder_out).chunk(2, dim=-1)
        return split_heads(k, self.num_heads), split_heads(v, self.num_heads)

    def forward(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                padding_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C) queries over (B, H, S, hd) keys/values; ``padding_mask`` (B, S) is True at source <pad>."""
        q = split_heads(self.q_proj(x), self.num_heads)  # (B, H, T, hd)
        p = self.attention_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=keep_mask(padding_mask), dropout_p=p)
        return self.out_proj(merge_heads(y))  # (B, T, C)
