"""A decoder-only Transformer language model whose input embedding can double as its output layer.

Reads top to bottom: config, decoder, model; the layers are lmtie/modules' (attention, feed-forward, block).
The tie is one line in :class:`TransformerDecoder` (Press & Wolf 2017; Inan et al. 2017).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import nn

from lmtie.config import MAX_LAYERS, MAX_POSITIONS, MAX_VOCAB, MAX_WIDTH, field, validate_ranges
from lmtie.errors import UserError
from lmtie.models.base import LanguageModel, TyingOptions
from lmtie.models.registry import register_model
from lmtie.modules.embedding import Embedding, TiedOutput, register_positions
from lmtie.modules.init import xavier_linears_
from lmtie.modules.kv_cache import KVCache
from lmtie.modules.transformer_layer import TransformerLayer


@dataclass
class TransformerLMConfig(TyingOptions):
    """Model hyper-parameters; field names follow fairseq's ``transformer_lm``."""

    vocab_size: int = field(0, "vocabulary size (set from the dictionary)", cli=False, min=0, max=MAX_VOCAB)
    padding_idx: int = field(1, "index of <pad>; its logit is masked and its embedding row stays zero", cli=False,
                             min=0)
    decoder_embed_dim: int = field(512, "width of the residual stream", min=1, max=MAX_WIDTH)
    decoder_input_dim: Optional[int] = field(None, "width of embed_tokens (default: decoder_embed_dim)",
                                            min=1, max=MAX_WIDTH)
    decoder_output_dim: Optional[int] = field(None, "width fed to the output projection (default: decoder_input_dim)",
                                             min=1, max=MAX_WIDTH)
    decoder_ffn_embed_dim: int = field(2048, "inner width of the feed-forward layers", min=1, max=MAX_WIDTH)
    decoder_layers: int = field(6, "number of Transformer blocks", min=1, max=MAX_LAYERS)
    decoder_attention_heads: int = field(8, "attention heads per block", min=1, max=MAX_WIDTH)
    decoder_learned_pos: bool = field(False, "learned positions instead of sinusoidal ones")
    no_scale_embedding: bool = field(False, "do not multiply token embeddings by sqrt(decoder_input_dim)")
    no_decoder_final_norm: bool = field(False, "skip the LayerNorm after the last block")
    no_token_positional_embeddings: bool = field(False, "no positional embeddings at all (order only from the "
                                                        "causal mask)")
    layernorm_embedding: bool = field(False, "LayerNorm on the embeddings (after the positions are added)")
    dropout: float = field(0.1, "dropout on embeddings and residual branches", min=0, lt=1)
    attention_dropout: float = field(0.0, "dropout on attention weights", min=0, lt=1)
    activation_dropout: float = field(0.0, "dropout after the feed-forward activation", min=0, lt=1,
                                     aliases=("--relu-dropout",))
    activation_fn: Literal["relu", "gelu", "gelu_accurate", "silu"] = field("relu", "feed-forward activation")
    max_target_positions: int = field(1024, "longest sequence the positions support", min=1, max=MAX_POSITIONS)
    share_decoder_input_output_embed: bool = field(
        False, "use embed_tokens.weight as the output projection (Press & Wolf 2017)")

    def __post_init__(self) -> None:
        validate_ranges(self)
        if self.decoder_input_dim is None:
            self.decoder_input_dim = self.decoder_embed_dim
        if self.decoder_output_dim is None:
            self.decoder_output_dim = self.decoder_input_dim
        self.validate()

    def validate(self) -> None:
        """Refuse settings that cannot build, with the flag to change."""
        if self.decoder_embed_dim % self.decoder_attention_heads:
            raise UserError(f"--decoder-embed-dim {self.decoder_embed_dim} is not divisible by "
                            f"--decoder-attention-heads {self.decoder_attention_heads}")
        if self.share_decoder_input_output_embed and self.decoder_output_dim != self.decoder_input_dim:
            raise UserError(
                f"--share-decoder-input-output-embed needs --decoder-output-dim ({self.decoder_output_dim}) equal "
                f"to --decoder-input-dim ({self.decoder_input_dim}), the width of embed_tokens; set them equal "
                "or pass --no-share-decoder-input-output-embed")
        if self.vocab_size and not 0 <= self.padding_idx < self.vocab_size:
            raise UserError(f"padding_idx {self.padding_idx} is outside the vocabulary of {self.vocab_size}")
        self.validate_tying()

    def replace(self, **changes) -> "TransformerLMConfig":
        return dataclasses.replace(self, **changes)

    def with_positions(self, n: int) -> "TransformerLMConfig":
        """A config serving ``n`` positions: sinusoidal positions extend freely, learned ones do not."""
        if n <= self.max_target_positions:
            return self
        if self.decoder_learned_pos:
            raise UserError(f"--tokens-per-sample {n} exceeds --max-target-positions {self.max_target_positions} "
                            "with --decoder-learned-pos; raise --max-target-positions or shorten the samples")
        return self.replace(max_target_positions=n)

    def widths(self) -> range:
        """Residual widths the parameter-matched ablation arm may pick: multiples of the head count."""
        h = self.decoder_attention_heads
        return range(h, self.decoder_embed_dim + 1, h)

    def at_width(self, width: int) -> "TransformerLMConfig":
        """This model at residual width ``width``: the FFN scaled with it; input/output widths follow
        when they equalled the old width."""
        d = self.decoder_embed_dim
        follow = lambda dim: width if dim == d else dim  # noqa: E731
        ffn = max(1, round(self.decoder_ffn_embed_dim * width / d))
        return self.replace(decoder_embed_dim=width, decoder_ffn_embed_dim=ffn,
                            decoder_input_dim=follow(self.decoder_input_dim),
                            decoder_output_dim=follow(self.decoder_output_dim))


class TransformerDecoder(TiedOutput, nn.Module):
    """Embeddings, blocks and the output projection; ``embed_out`` is the output weight, the
    embedding itself when tied (TiedOutput: the tie is the config's flag, read at each access)."""

    def __init__(self, cfg: TransformerLMConfig):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise UserError("vocab_size must be set (build the model from a Dictionary or pass vocab_size)")
        self.cfg = cfg
        d, d_in, d_out = cfg.decoder_embed_dim, cfg.decoder_input_dim, cfg.decoder_output_dim
        self.embed_tokens = Embedding(cfg.vocab_size, d_in, cfg.padding_idx)
        self.embed_scale = 1.0 if cfg.no_scale_embedding else math.sqrt(d_in)  # Vaswani et al. 2017, sec. 3.4
        self.project_in_dim = nn.Linear(d_in, d, bias=False) if d_in != d else None
        if cfg.no_token_positional_embeddings:
            self.embed_positions = None
        else:
            register_positions(self, cfg.max_target_positions, d, cfg.decoder_learned_pos)
        self.layernorm_embedding = nn.LayerNorm(d) if cfg.layernorm_embedding else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(TransformerLayer(  # pre-norm: fairseq forces it for LMs ("not stable without")
            d, cfg.decoder_attention_heads, cfg.decoder_ffn_embed_dim, activation_fn=cfg.activation_fn,
            dropout=cfg.dropout, attention_dropout=cfg.attention_dropout, activation_dropout=cfg.activation_dropout,
            normalize_before=True) for _ in range(cfg.decoder_layers))
        self.layer_norm = None if cfg.no_decoder_final_norm else nn.LayerNorm(d)
        self.project_out_dim = nn.Linear(d, d_out, bias=False) if d_out != d else None
        xavier_linears_(self)
        self.add_output_matrix(cfg.vocab_size, d_out)

    def features(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """(B, T) token ids -> (B, T, decoder_output_dim) features for the output projection."""
        start = cache.length if cache is not None else 0
        T = tokens.size(1)
        if start + T > self.cfg.max_target_positions:
            raise UserError(f"sequence of {start + T} tokens exceeds --max-target-positions "
                            f"{self.cfg.max_target_positions}")
        x = self.embed_scale * self.embed_tokens(tokens)  # (B, T, d_in)
        if self.project_in_dim is not None:
            x = self.project_in_dim(x)
        if self.embed_positions is not None:
            x = x + self.embed_positions[start:start + T].to(x.dtype)
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        x = self.dropout(x)
        for i, layer in enumerate(self.layers):
            x = layer(x, i, cache)
        if cache is not None:
            cache.length += T
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return x if self.project_out_dim is None else self.project_out_dim(x)


@register_model("transformer_lm")
class TransformerLanguageModel(LanguageModel):
    """fairseq's ``transformer_lm``: ``forward(tokens)`` returns logits for every position, (B, T) -> (B, T, V)."""

    config_class = TransformerLMConfig
    output_head_key = "decoder.embed_out"

    def __init__(self, cfg: TransformerLMConfig):
        super().__init__()
        self.cfg = cfg
        self.decoder = TransformerDecoder(cfg)
        self._finish_build()

    def features(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        return self.decoder.features(tokens, cache)

    @property
    def input_embedding(self) -> nn.Embedding:
        return self.decoder.embed_tokens

    @property
    def output_weight(self) -> torch.Tensor:
        return self.decoder.embed_out

    def embedding_parameters(self) -> list[torch.Tensor]:
        pos = self.decoder.embed_positions
        return super().embedding_parameters() + ([pos] if isinstance(pos, nn.Parameter) else [])

    def shard_units(self) -> list[nn.Module]:
        return list(self.decoder.layers)

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        device, dtype = self._cache_dtype()
        c = self.cfg
        return KVCache(c.decoder_layers, batch_size, c.decoder_attention_heads, min(max_len, c.max_target_positions),
                       c.decoder_embed_dim // c.decoder_attention_heads, device, dtype)
