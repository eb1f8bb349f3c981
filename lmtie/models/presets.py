"""Named sizes (``--arch``) of the ``transformer_lm`` family, each a small function of field overrides.

Sizes follow fairseq's architecture functions of the same names; ``transformer_lm_tiny`` is
lmtie's own, small enough to train in minutes on two CPU cores.
"""

from __future__ import annotations

from lmtie.models.registry import register_arch


@register_arch("transformer_lm", "transformer_lm")
def transformer_lm() -> dict:
    return {}  # the config defaults are fairseq's transformer_lm


@register_arch("transformer_lm_tiny", "transformer_lm")
def transformer_lm_tiny() -> dict:
    return dict(decoder_embed_dim=128, decoder_ffn_embed_dim=512, decoder_layers=2,
                decoder_attention_heads=4, dropout=0.1, max_target_positions=512)


@register_arch("transformer_lm_small", "transformer_lm")
def transformer_lm_small() -> dict:
    return dict(decoder_embed_dim=256, decoder_ffn_embed_dim=1024, decoder_layers=4,
                decoder_attention_heads=4, dropout=0.1, max_target_positions=1024)


@register_arch("transformer_lm_big", "transformer_lm")
def transformer_lm_big() -> dict:
    return dict(decoder_layers=12, decoder_embed_dim=1024, decoder_ffn_embed_dim=4096, decoder_attention_heads=16)


@register_arch("transformer_lm_gpt2_small", "transformer_lm")
def transformer_lm_gpt2_small() -> dict:
    return dict(decoder_embed_dim=1024, decoder_ffn_embed_dim=4096, decoder_layers=24,
                decoder_attention_heads=16, dropout=0.1, attention_dropout=0.1, activation_fn="gelu")


@register_arch("transformer_lm_gpt", "transformer_lm")
def transformer_lm_gpt() -> dict:
    """GPT-1/GPT-2-small shape: 12 layers, d=768 (fairseq's ``transformer_lm_gpt``)."""
    return dict(decoder_embed_dim=768, decoder_ffn_embed_dim=3072, decoder_layers=12,
                decoder_attention_heads=12, dropout=0.1, attention_dropout=0.1, activation_fn="gelu")


@register_arch("transformer_lm_wiki103", "transformer_lm")
def transformer_lm_wiki103() -> dict:
    """fairseq's ``transformer_lm_wiki103`` (Baevski & Auli 2019) without its adaptive input and softmax, which
    lmtie does not have: a full softmax over the vocabulary at the same depth, width and dropouts."""
    return dict(transformer_lm_big(), decoder_layers=16, decoder_attention_heads=8, dropout=0.3,  # d=1024, FFN 4096
                attention_dropout=0.1, activation_dropout=0.1, no_decoder_final_norm=True)


@register_arch("transformer_lm_baevski_wiki103", "transformer_lm")
def transformer_lm_baevski_wiki103() -> dict:
    return transformer_lm_wiki103()  # fairseq's other name for it


@register_arch("transformer_lm_gbw", "transformer_lm")
def transformer_lm_gbw() -> dict:
    """fairseq's ``transformer_lm_gbw`` (Google Billion Words): 12 layers of width 512, FFN 4096, 16 heads,
    dropout and attention dropout 0.1, no final norm."""
    return dict(transformer_lm_big(), decoder_layers=12, decoder_embed_dim=512, dropout=0.1, attention_dropout=0.1,
                no_decoder_final_norm=True)
