"""fairseq's translation Transformer (Vaswani et al. 2017): an encoder, a decoder with cross-attention, and
up to three embedding matrices that may be one.

Reads top to bottom: config, encoder, decoder, model, named sizes (``--arch``); the layers are
lmtie/modules'. Post-norm by default, as fairseq and the paper; ``--encoder-normalize-before`` /
``--decoder-normalize-before`` switch a side to pre-norm, with a final LayerNorm.

The ties are structural, each in one place: ``share_decoder_input_output_embed`` makes the
decoder's ``embed_out`` its ``embed_tokens.weight`` (Press & Wolf 2017; Inan et al. 2017);
``share_all_embeddings`` also gives the encoder no embedding of its own (``encoder_embedding`` is
the decoder's), so the one matrix is one Parameter and one state_dict key,
``decoder.embed_tokens.weight`` (Vaswani et al. 2017, sec. 3.4, with a joined BPE vocabulary).
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
from lmtie.models.registry import register_arch, register_model
from lmtie.models.seq2seq import EncoderDecoderCache, EncoderDecoderModel, EncoderOut
from lmtie.modules.embedding import Embedding, TiedOutput, register_positions
from lmtie.modules.init import xavier_linears_
from lmtie.modules.transformer_layer import TransformerDecoderLayer, TransformerLayer


@dataclass
class TransformerConfig:
    """Model hyper-parameters; field names and defaults are fairseq's ``transformer`` (base)."""

    src_vocab_size: int = field(0, "source vocabulary size (set from the source dictionary)", cli=False, min=0,
                                max=MAX_VOCAB)
    tgt_vocab_size: int = field(0, "target vocabulary size (set from the target dictionary)", cli=False, min=0,
                                max=MAX_VOCAB)
    padding_idx: int = field(1, "index of <pad> in both dictionaries; its logit is masked and its embedding rows "
                                "stay zero", cli=False, min=0)
    encoder_embed_dim: int = field(512, "width of the encoder's embeddings and residual stream", min=1, max=MAX_WIDTH)
    encoder_ffn_embed_dim: int = field(2048, "inner width of the encoder's feed-forward layers", min=1, max=MAX_WIDTH)
    encoder_layers: int = field(6, "number of encoder layers", min=1, max=MAX_LAYERS)
    encoder_attention_heads: int = field(8, "attention heads per encoder layer", min=1, max=MAX_WIDTH)
    encoder_normalize_before: bool = field(False, "pre-norm encoder layers and a final LayerNorm (default post-norm)")
    encoder_learned_pos: bool = field(False, "learned source positions instead of sinusoidal ones")
    decoder_embed_dim: int = field(512, "width of the decoder's embeddings and residual stream", min=1, max=MAX_WIDTH)
    decoder_ffn_embed_dim: int = field(2048, "inner width of the decoder's feed-forward layers", min=1, max=MAX_WIDTH)
    decoder_layers: int = field(6, "number of decoder layers", min=1, max=MAX_LAYERS)
    decoder_attention_heads: int = field(8, "attention heads per decoder layer (self and cross)", min=1,
                                         max=MAX_WIDTH)
    decoder_normalize_before: bool = field(False, "pre-norm decoder layers and a final LayerNorm (default post-norm)")
    decoder_learned_pos: bool = field(False, "learned target positions instead of sinusoidal ones")
    decoder_output_dim: Optional[int] = field(None, "width fed to the output projection (default: "
                                                    "decoder_embed_dim)", min=1, max=MAX_WIDTH)
    share_decoder_input_output_embed: bool = field(
        False, "use the decoder's embed_tokens.weight as the output projection (Press & Wolf 2017)")
    share_all_embeddings: bool = field(
        False, "one matrix embeds the source, the target and projects the output (needs a joined dictionary: "
               "lmtie-preprocess --joined-dictionary); implies --share-decoder-input-output-embed")
    dropout: float = field(0.1, "dropout on embeddings and residual branches", min=0, lt=1)
    attention_dropout: float = field(0.0, "dropout on attention weights", min=0, lt=1)
    activation_dropout: float = field(0.0, "dropout after the feed-forward activation", min=0, lt=1,
                                      aliases=("--relu-dropout",))
    activation_fn: Literal["relu", "gelu", "gelu_accurate", "silu"] = field("relu", "feed-forward activation")
    no_scale_embedding: bool = field(False, "do not multiply token embeddings by sqrt(embed_dim)")
    max_source_positions: int = field(1024, "longest source sentence the positions support", min=1,
                                      max=MAX_POSITIONS)
    max_target_positions: int = field(1024, "longest target sentence the positions support", min=1,
                                      max=MAX_POSITIONS)

    def __post_init__(self) -> None:
        validate_ranges(self)
        if self.decoder_output_dim is None:
            self.decoder_output_dim = self.decoder_embed_dim
        if self.share_all_embeddings:
            self.share_decoder_input_output_embed = True  # as fairseq: one matrix is also the output
        self.validate()

    def validate(self) -> None:
        """Refuse settings that cannot build, with the flag to change."""
        for side in ("encoder", "decoder"):
            d, h = getattr(self, f"{side}_embed_dim"), getattr(self, f"{side}_attention_heads")
            if d % h:
                raise UserError(f"--{side}-embed-dim {d} is not divisible by --{side}-attention-heads {h}")
        if self.share_all_embeddings:
            self._validate_share_all()
        if self.share_decoder_input_output_embed and self.decoder_output_dim != self.decoder_embed_dim:
            flag = "--share-all-embeddings" if self.share_all_embeddings else "--share-decoder-input-output-embed"
            raise UserError(f"{flag} needs --decoder-output-dim ({self.decoder_output_dim}) equal to "
                            f"--decoder-embed-dim ({self.decoder_embed_dim}), the width of the output matrix; set "
                            f"them equal or drop {flag}")
        for side, v in (("source", self.src_vocab_size), ("target", self.tgt_vocab_size)):
            if v and not 0 <= self.padding_idx < v:
                raise UserError(f"padding_idx {self.padding_idx} is outside the {side} vocabulary of {v}")

    def _validate_share_all(self) -> None:
        if self.encoder_embed_dim != self.decoder_embed_dim:
            raise UserError(f"--share-all-embeddings needs --encoder-embed-dim ({self.encoder_embed_dim}) equal to "
                            f"--decoder-embed-dim ({self.decoder_embed_dim}): one matrix embeds both sides")
        if self.src_vocab_size and self.tgt_vocab_size and self.src_vocab_size != self.tgt_vocab_size:
            raise UserError(f"--share-all-embeddings needs one dictionary for both sides, but the source has "
                            f"{self.src_vocab_size} symbols and the target {self.tgt_vocab_size}; preprocess with "
                            "lmtie-preprocess --joined-dictionary, or drop --share-all-embeddings")

    def replace(self, **changes) -> "TransformerConfig":
        return dataclasses.replace(self, **changes)

    def with_positions(self, n: int) -> "TransformerConfig":
        """A config serving ``n`` positions on each side: sinusoidal positions extend freely, learned ones do not."""
        changes = {}
        for side, flag in (("source", "encoder"), ("target", "decoder")):
            if n > getattr(self, f"max_{side}_positions"):
                if getattr(self, f"{flag}_learned_pos"):
                    raise UserError(f"{n} {side} positions exceed --max-{side}-positions "
                                    f"{getattr(self, f'max_{side}_positions')} with --{flag}-learned-pos; raise "
                                    f"--max-{side}-positions or shorten the sentences")
                changes[f"max_{side}_positions"] = n
        return self.replace(**changes) if changes else self

    def widths(self) -> range:
        """Decoder widths the parameter-matched ablation arm may pick: multiples of its head count (and of the
        encoder's when the encoder follows, see :meth:`at_width`)."""
        step = self.decoder_attention_heads
        if self.encoder_embed_dim == self.decoder_embed_dim:
            step = math.lcm(step, self.encoder_attention_heads)
        return range(step, self.decoder_embed_dim + 1, step)

    def at_width(self, width: int) -> "TransformerConfig":
        """This model at decoder width ``width``, FFNs scaled with it; the encoder and the output width follow
        when they equalled the old width (with --share-all-embeddings they must)."""
        d = self.decoder_embed_dim
        scale = lambda n: max(1, round(n * width / d))  # noqa: E731
        changes = dict(decoder_embed_dim=width, decoder_ffn_embed_dim=scale(self.decoder_ffn_embed_dim),
                       decoder_output_dim=width if self.decoder_output_dim == d else self.decoder_output_dim)
        if self.encoder_embed_dim == d:
            changes.update(encoder_embed_dim=width, encoder_ffn_embed_dim=scale(self.encoder_ffn_embed_dim))
        return self.replace(**changes)


def _layer_sizes(cfg: TransformerConfig, side: str) -> dict:
    """TransformerLayer's arguments for the ``encoder`` or ``decoder`` side."""
    get = lambda name: getattr(cfg, f"{side}_{name}")  # noqa: E731
    return dict(dim=get("embed_dim"), heads=get("attention_heads"), ffn_dim=get("ffn_embed_dim"),
                activation_fn=cfg.activation_fn, dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
                activation_dropout=cfg.activation_dropout, normalize_before=get("normalize_before"))


class _Embedder(nn.Module):
    """Token embedding times sqrt(d) (Vaswani et al. 2017, sec. 3.4), plus positions, then dropout."""

    def __init__(self, cfg: TransformerConfig, dim: int, max_positions: int, learned_pos: bool, flag: str):
        super().__init__()
        self.embed_scale = 1.0 if cfg.no_scale_embedding else math.sqrt(dim)
        self.max_positions, self.flag = max_positions, flag
        register_positions(self, max_positions, dim, learned_pos)
        self.dropout = nn.Dropout(cfg.dropout)

    def embed(self, tokens: torch.Tensor, embed_tokens: nn.Embedding, start: int = 0) -> torch.Tensor:
        """(B, T) ids at positions start.. -> (B, T, d)."""
        T = tokens.size(1)
        if start + T > self.max_positions:
            raise UserError(f"a sentence of {start + T} tokens exceeds {self.flag} {self.max_positions}")
        x = self.embed_scale * embed_tokens(tokens)  # (B, T, d)
        x = x + self.embed_positions[start:start + T].to(x.dtype)
        return self.dropout(x)


class TransformerEncoder(_Embedder):
    """Source ids -> :class:`EncoderOut`. Its ``embed_tokens`` is registered by the model, and not at all
    under share_all_embeddings: ``forward`` takes the embedding to use."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__(cfg, cfg.encoder_embed_dim, cfg.max_source_positions, cfg.encoder_learned_pos,
                         "--max-source-positions")
        self.padding_idx = cfg.padding_idx
        self.embed_tokens: nn.Embedding | None = None
        self.layers = nn.ModuleList(TransformerLayer(**_layer_sizes(cfg, "encoder"), causal=False)
                                    for _ in range(cfg.encoder_layers))
        self.layer_norm = nn.LayerNorm(cfg.encoder_embed_dim) if cfg.encoder_normalize_before else None

    def forward(self, src_tokens: torch.Tensor, embed_tokens: nn.Embedding) -> EncoderOut:
        padding_mask = src_tokens.eq(self.padding_idx)  # (B, S): no query reads a <pad> key
        x = self.embed(src_tokens, embed_tokens)  # (B, S, d_enc)
        for layer in self.layers:
            x = layer(x, key_padding_mask=padding_mask)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return EncoderOut(x, padding_mask)


class TransformerDecoder(TiedOutput, _Embedder):
    """Previous target ids and an EncoderOut -> features for the output projection ``embed_out``."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__(cfg, cfg.decoder_embed_dim, cfg.max_target_positions, cfg.decoder_learned_pos,
                         "--max-target-positions")
        d, d_out = cfg.decoder_embed_dim, cfg.decoder_output_dim
        self.cfg = cfg  # TiedOutput reads the decoder tie (either mode) from it
        self.embed_tokens = Embedding(cfg.tgt_vocab_size, d, cfg.padding_idx)
        self.layers = nn.ModuleList(TransformerDecoderLayer(**_layer_sizes(cfg, "decoder"),
                                                            encoder_dim=cfg.encoder_embed_dim)
                                    for _ in range(cfg.decoder_layers))
        self.layer_norm = nn.LayerNorm(d) if cfg.decoder_normalize_before else None
        self.project_out_dim = nn.Linear(d, d_out, bias=False) if d_out != d else None

    def forward(self, prev_output_tokens: torch.Tensor, enc: EncoderOut,
                cache: EncoderDecoderCache | None = None) -> torch.Tensor:
        start = cache.length if cache is not None else 0
        x = self.embed(prev_output_tokens, self.embed_tokens, start)  # (B, T, d)
        memory, padding_mask = self._memory(enc, cache)
        for i, layer in enumerate(self.layers):
            x = layer(x, i, cache, encoder_out=enc.out, padding_mask=padding_mask,
                      memory=None if memory is None else memory[i])
        if cache is not None:
            cache.length += prev_output_tokens.size(1)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return x if self.project_out_dim is None else self.project_out_dim(x)  # (B, T, d_out)

    def _memory(self, enc: EncoderOut, cache: EncoderDecoderCache | None):
        """With a cache, each layer's cross-attention keys/values of ``enc``, projected once per sentence and
        kept there, with the source padding mask; without one (training, teacher forcing) None: each layer
        projects its own."""
        if cache is None:
            return None, enc.padding_mask
        if cache.memory is None:
            cache.memory, cache.padding_mask = [layer.encoder_attn.memory(enc.out) for layer in self.layers], \
                enc.padding_mask
        return cache.memory, cache.padding_mask


@register_model("transformer", task="translation")
class TransformerModel(EncoderDecoderModel):
    """fairseq's ``transformer``: ``forward(src_tokens, prev_output_tokens)`` -> (B, T, V_tgt) logits."""

    config_class = TransformerConfig

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        if cfg.src_vocab_size <= 0 or cfg.tgt_vocab_size <= 0:
            raise UserError("src_vocab_size and tgt_vocab_size must be set (build the model from the dictionaries)")
        self.cfg = cfg
        self.encoder = TransformerEncoder(cfg)
        self.decoder = TransformerDecoder(cfg)  # its embed_tokens is the shared matrix under share_all_embeddings
        xavier_linears_(self)
        # drawn last, in this order, so the three tie modes at one seed share every tensor they have in common
        if self.tie_mode != "all":
            self.encoder.embed_tokens = Embedding(cfg.src_vocab_size, cfg.encoder_embed_dim, cfg.padding_idx)
        self.decoder.add_output_matrix(cfg.tgt_vocab_size, cfg.decoder_output_dim)
        self._register_output_mask(cfg.tgt_vocab_size, cfg.padding_idx)
        self.check_tie()

    def encode(self, src_tokens: torch.Tensor) -> EncoderOut:
        return self.encoder(src_tokens, self.encoder_embedding)

    def features(self, prev_output_tokens: torch.Tensor, enc: EncoderOut,
                 cache: EncoderDecoderCache | None = None) -> torch.Tensor:
        return self.decoder(prev_output_tokens, enc, cache)

    @property
    def encoder_embedding(self) -> nn.Embedding:
        return self.decoder.embed_tokens if self.tie_mode == "all" else self.encoder.embed_tokens

    @property
    def decoder_embedding(self) -> nn.Embedding:
        return self.decoder.embed_tokens

    @property
    def output_weight(self) -> torch.Tensor:
        return self.decoder.embed_out

    def embedding_parameters(self) -> list[torch.Tensor]:
        learned = [p for p in (self.encoder.embed_positions, self.decoder.embed_positions)
                   if isinstance(p, nn.Parameter)]
        return super().embedding_parameters() + learned

    def shard_units(self) -> list[nn.Module]:
        return [*self.encoder.layers, *self.decoder.layers]

    def new_cache(self, batch_size: int, max_len: int) -> EncoderDecoderCache:
        device, dtype = self._cache_dtype()
        c = self.cfg
        return EncoderDecoderCache(c.decoder_layers, batch_size, c.decoder_attention_heads,
                                   min(max_len, c.max_target_positions),
                                   c.decoder_embed_dim // c.decoder_attention_heads, device, dtype)


# --- named sizes (fairseq's architecture functions of the same names) --------------------------------------------
@register_arch("transformer", "transformer")
def transformer() -> dict:
    return {}  # the config defaults are fairseq's base_architecture


@register_arch("transformer_tiny", "transformer")
def transformer_tiny() -> dict:
    """lmtie's own: trains in minutes on two CPU cores."""
    return dict(encoder_embed_dim=64, encoder_ffn_embed_dim=256, encoder_layers=2, encoder_attention_heads=2,
                decoder_embed_dim=64, decoder_ffn_embed_dim=256, decoder_layers=2, decoder_attention_heads=2)


@register_arch("transformer_iwslt_de_en", "transformer")
def transformer_iwslt_de_en() -> dict:
    sizes = dict(embed_dim=512, ffn_embed_dim=1024, attention_heads=4, layers=6)
    return {f"{side}_{k}": v for side in ("encoder", "decoder") for k, v in sizes.items()}


@register_arch("transformer_wmt_en_de", "transformer")
def transformer_wmt_en_de() -> dict:
    return transformer()


@register_arch("transformer_vaswani_wmt_en_de_big", "transformer")
def transformer_vaswani_wmt_en_de_big() -> dict:
    """"Transformer (big)" of Vaswani et al. 2017, table 3."""
    sizes = dict(embed_dim=1024, ffn_embed_dim=4096, attention_heads=16)
    return {**{f"{side}_{k}": v for side in ("encoder", "decoder") for k, v in sizes.items()}, "dropout": 0.3}


@register_arch("transformer_vaswani_wmt_en_fr_big", "transformer")
def transformer_vaswani_wmt_en_fr_big() -> dict:
    return dict(transformer_vaswani_wmt_en_de_big(), dropout=0.1)


@register_arch("transformer_wmt_en_de_big", "transformer")
def transformer_wmt_en_de_big() -> dict:
    return dict(transformer_vaswani_wmt_en_de_big(), attention_dropout=0.1)


@register_arch("transformer_wmt_en_de_big_t2t", "transformer")
def transformer_wmt_en_de_big_t2t() -> dict:
    """tensor2tensor's big model: pre-norm on both sides."""
    return dict(transformer_vaswani_wmt_en_de_big(), encoder_normalize_before=True, decoder_normalize_before=True,
                attention_dropout=0.1, activation_dropout=0.1)
