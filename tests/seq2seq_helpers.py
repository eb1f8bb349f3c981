"""A tiny real encoder-decoder obeying the issue-14 interface (encode / decode with a cache / logits),
for testing the sequence generator without the ``transformer`` family: one attention layer each side."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from lmtie.data import Dictionary
from lmtie.modules.kv_cache import KVCache


class EncoderOut(NamedTuple):
    out: torch.Tensor           # (B, S, d)
    padding_mask: torch.Tensor  # (B, S) True at <pad>

    def reorder(self, order: torch.Tensor) -> "EncoderOut":
        return EncoderOut(self.out.index_select(0, order), self.padding_mask.index_select(0, order))


class Seq2SeqCache:
    """Self-attention keys/values in a KVCache plus the cross-attention keys/values of the first call."""

    def __init__(self, batch_size: int, heads: int, max_len: int, head_dim: int, device: torch.device):
        self.self_kv = KVCache(1, batch_size, heads, max_len, head_dim, device, torch.float)
        self.cross: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def length(self) -> int:
        return self.self_kv.length

    def reorder(self, order: torch.Tensor) -> None:
        self.self_kv.kv = self.self_kv.kv.index_select(2, order)
        if self.cross is not None:
            self.cross = (self.cross[0].index_select(0, order), self.cross[1].index_select(0, order))


class TinySeq2Seq(nn.Module):
    """Embeddings + learned positions, one self-attention layer over the source, one causal
    self-attention + cross-attention layer over the target, untied output matrix."""

    def __init__(self, src_vocab: int, tgt_vocab: int, d: int = 16, heads: int = 2, max_positions: int = 32,
                 pad: int = 1, output_scale: float = 1.0):
        super().__init__()
        self.heads, self.pad, self.max_pos = heads, pad, max_positions
        self.src_embed, self.tgt_embed = nn.Embedding(src_vocab, d), nn.Embedding(tgt_vocab, d)
        self.src_pos, self.tgt_pos = nn.Embedding(max_positions, d), nn.Embedding(max_positions, d)
        self.enc_qkv, self.enc_out, self.enc_norm = nn.Linear(d, 3 * d), nn.Linear(d, d), nn.LayerNorm(d)
        self.self_qkv, self.self_out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.cross_q, self.cross_kv, self.cross_out = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)
        self.dec_norm = nn.LayerNorm(d)
        with torch.no_grad():  # random weights: make the source matter as much as the target prefix
            self.cross_out.weight.mul_(4.0)
        self.output_weight = nn.Parameter(torch.randn(tgt_vocab, d) * output_scale)
        bias = torch.zeros(tgt_vocab)
        bias[pad] = float("-inf")
        self.register_buffer("output_bias", bias)

    @property
    def max_positions(self) -> tuple[int, int]:
        return self.max_pos, self.max_pos

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        return x.view(B, T, self.heads, d // self.heads).transpose(1, 2)  # (B, h, T, hd)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        B, h, T, hd = x.shape
        return x.transpose(1, 2).reshape(B, T, h * hd)

    def encode(self, src_tokens: torch.Tensor) -> EncoderOut:
        mask = src_tokens.eq(self.pad)
        x = self.src_embed(src_tokens) + self.src_pos(torch.arange(src_tokens.size(1), device=src_tokens.device))
        q, k, v = (self._split(t) for t in self.enc_qkv(x).chunk(3, dim=-1))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=~mask[:, None, None, :])
        return EncoderOut(self.enc_norm(x + self.enc_out(self._merge(a))), mask)

    def decode(self, prev_output_tokens, enc: EncoderOut, cache: Seq2SeqCache | None = None, features_only=False):
        start = cache.length if cache is not None else 0
        T = prev_output_tokens.size(1)
        x = self.tgt_embed(prev_output_tokens)
        x = x + self.tgt_pos(torch.arange(start, start + T, device=x.device))
        q, k, v = (self._split(t) for t in self.self_qkv(x).chunk(3, dim=-1))
        if cache is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            k, v, mask, causal = cache.self_kv.attend(0, k, v)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        x = x + self.self_out(self._merge(a))
        if cache is not None and cache.cross is not None:
            ck, cv = cache.cross
        else:
            ck, cv = (self._split(t) for t in self.cross_kv(enc.out).chunk(2, dim=-1))
            if cache is not None:
                cache.cross = (ck, cv)
        a = F.scaled_dot_product_attention(self._split(self.cross_q(x)), ck, cv,
                                           attn_mask=~enc.padding_mask[:, None, None, :])
        x = self.dec_norm(x + self.cross_out(self._merge(a)))
        if cache is not None:
            cache.self_kv.length += T
        return x if features_only else self.logits(x)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.output_weight.t() + self.output_bias

    def forward(self, src_tokens, prev_output_tokens, features_only=False):
        return self.decode(prev_output_tokens, self.encode(src_tokens), features_only=features_only)

    def new_cache(self, batch_size: int, max_len: int) -> Seq2SeqCache:
        d = self.output_weight.size(1)
        return Seq2SeqCache(batch_size, self.heads, max_len, d // self.heads, self.output_weight.device)


def tiny_dict(words: int) -> Dictionary:
    """fairseq's four special symbols (<s> 0, <pad> 1, </s> 2, <unk> 3) then ``words`` words."""
    d = Dictionary()
    for i in range(words):
        d.add_symbol(f"w{i}")
    return d


def tiny_seq2seq(tgt_dict: Dictionary, src_vocab: int = 12, seed: int = 0, **kw) -> TinySeq2Seq:
    torch.manual_seed(seed)
    return TinySeq2Seq(src_vocab, len(tgt_dict), pad=tgt_dict.pad(), **kw).eval()


def pad_batch(sentences: list[list[int]], pad: int = 1) -> torch.Tensor:
    """Right-pad id lists into (B, S)."""
    S = max(len(s) for s in sentences)
    return torch.tensor([s + [pad] * (S - len(s)) for s in sentences])
