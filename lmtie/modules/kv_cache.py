"""Pre-allocated keys and values for incremental decoding: one new token costs O(context), not O(context^2)."""

from __future__ import annotations

import torch


class KVCache:
    """(layers, 2, B, heads, max_len, head_dim) keys and values; ``length`` positions are filled.

    ``heads`` is the number of key/value heads: with grouped-query attention the cache shrinks by
    query heads / key-value heads. The model advances ``length`` once per forward, after its last layer.
    """

    def __init__(self, layers: int, batch_size: int, heads: int, max_len: int, head_dim: int,
                 device: torch.device, dtype: torch.dtype):
        self.kv = torch.zeros((layers, 2, batch_size, heads, max_len, head_dim), device=device, dtype=dtype)
        self.length = 0
        self.max_len = max_len

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new (B, heads, t, hd) keys/values after the filled part; return all of them."""
        end = self.length + k.size(2)
        self.kv[layer, 0, :, :, self.length:end] = k
        self.kv[layer, 1, :, :, self.length:end] = v
        return self.kv[layer, 0, :, :, :end], self.kv[layer, 1, :, :, :end]

    def attend(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """``update``, plus the SDPA mask arguments for the new queries: (keys, values, attn_mask, is_causal).

        New queries see every cached key and the new keys up to themselves; one new query (each
        decoding step) sees all keys, so it needs no mask at all.
        """
        past, T = self.length, k.size(2)
        k, v = self.update(layer, k, v)
        if past == 0:
            return k, v, None, True
        mask = None if T == 1 else torch.ones(T, past + T, dtype=torch.bool, device=k.device).tril(past)
        return k, v, mask, False

    def reorder(self, order: torch.Tensor) -> None:
        """Keep, in place, the batch rows ``order`` names (beam search: the hypotheses that survive a step)."""
        self.kv = self.kv.index_select(2, order)
