"""The encoder-decoder protocol (issue 14): what beam search, the translation task and checkpoint I/O may use.

A family subclasses :class:`EncoderDecoderModel` and registers with ``task="translation"``:

- ``build(cfg, src_dict, tgt_dict)``: sized to both vocabularies (one <pad> index for both);
- ``encode(src_tokens)``: (B, S) right-padded ids, each row ending with </s> -> :class:`EncoderOut`;
- ``decode(prev_output_tokens, enc, cache=None, features_only=False)``: (B, T) -> (B, T, V) logits
  (<pad> at -inf) or (B, T, d_out) features. With a cache only the new positions are passed; the
  cache keeps the self-attention keys/values and, from its first call, the cross-attention
  keys/values of ``enc`` (one projection per sentence, not per step);
- ``forward(src_tokens, prev_output_tokens, features_only=False)`` = ``decode(prev, encode(src))``;
- ``new_cache(batch_size, max_len)``: ``length`` and ``reorder(order)`` (in place, for beam search);
- ``tie_mode``: "none" (three matrices), "decoder" (decoder input = output,
  ``share_decoder_input_output_embed``) or "all" (one matrix for encoder input, decoder input and
  output, ``share_all_embeddings``: a joined dictionary); ``check_tie()`` checks the three.

Teacher forcing as fairseq: target = sentence + </s>, prev_output_tokens = [</s>] + target[:-1].
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
from torch import nn

from lmtie.errors import UserError
from lmtie.models.base import TokenModel
from lmtie.modules.kv_cache import KVCache


class EncoderOut(NamedTuple):
    out: torch.Tensor  # (B, S, d_enc)
    padding_mask: torch.Tensor  # (B, S) bool, True at <pad>

    def reorder(self, order: torch.Tensor) -> "EncoderOut":
        """The rows ``order`` names (beam search repeats each sentence beam times, then follows the beams)."""
        return EncoderOut(self.out.index_select(0, order), self.padding_mask.index_select(0, order))


class EncoderDecoderCache(KVCache):
    """A decoder's self-attention :class:`KVCache` plus the cross-attention keys/values of each layer,
    (B, H, S, hd) each, and the source padding mask; the model fills ``memory`` on the first call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.memory: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.padding_mask: torch.Tensor | None = None

    def reorder(self, order: torch.Tensor) -> None:
        super().reorder(order)
        if self.memory is not None:
            self.memory = [(k.index_select(0, order), v.index_select(0, order)) for k, v in self.memory]
            self.padding_mask = self.padding_mask.index_select(0, order)


class EncoderDecoderModel(TokenModel):
    """Base of every encoder-decoder family; subclasses implement ``encode``, ``features`` and the
    embedding properties, registering the shared matrix once (``decoder.embed_tokens``)."""

    task: ClassVar[str] = "translation"
    # the auto recipe's peak lr x width: post-norm encoder-decoders need a lower lr than pre-norm decoders
    # (lmtie/training/recipe.py says what was measured)
    auto_lr_times_width: ClassVar[float] = 0.125
    output_head_key: ClassVar[str] = "decoder.embed_out"

    @classmethod
    def build(cls, cfg, src_dict=None, tgt_dict=None) -> "EncoderDecoderModel":
        """Build from a config, sized to the dictionaries given (a missing one is the other: a joined dictionary)."""
        src_dict = tgt_dict if src_dict is None else src_dict
        tgt_dict = src_dict if tgt_dict is None else tgt_dict
        if tgt_dict is not None:
            if src_dict.pad() != tgt_dict.pad():
                raise UserError(f"the source dictionary's <pad> is {src_dict.pad()}, the target's {tgt_dict.pad()}; "
                                "preprocess both sides with lmtie-preprocess (the same special symbols)")
            cfg = cfg.replace(src_vocab_size=len(src_dict), tgt_vocab_size=len(tgt_dict), padding_idx=tgt_dict.pad())
        return cls(cfg)

    # --- what each family implements ---------------------------------------------------------
    def encode(self, src_tokens: torch.Tensor) -> EncoderOut:
        raise NotImplementedError

    def features(self, prev_output_tokens: torch.Tensor, enc: EncoderOut, cache=None) -> torch.Tensor:
        """(B, T) ids -> (B, T, d_out) features for the output projection."""
        raise NotImplementedError

    @property
    def encoder_embedding(self) -> nn.Embedding:
        raise NotImplementedError

    @property
    def decoder_embedding(self) -> nn.Embedding:
        raise NotImplementedError

    def new_cache(self, batch_size: int, max_len: int) -> EncoderDecoderCache:
        raise NotImplementedError

    def shard_units(self) -> list[nn.Module]:
        raise NotImplementedError

    def embedding_parameters(self) -> list[torch.Tensor]:
        """Token embeddings of both sides and the output matrix (``num_parameters`` counts a shared one once)."""
        return [self.encoder_embedding.weight, self.decoder_embedding.weight, self.output_weight]

    # --- shared behaviour ------------------------------------------------------------------------
    @property
    def tie_mode(self) -> str:
        if self.cfg.share_all_embeddings:
            return "all"
        return "decoder" if self.cfg.share_decoder_input_output_embed else "none"

    @property
    def tied(self) -> bool:
        """The decoder's output matrix is its input embedding (either tie mode)."""
        return self.tie_mode != "none"

    @property
    def max_positions(self) -> tuple[int, int]:
        return int(self.cfg.max_source_positions), int(self.cfg.max_target_positions)

    def decode(self, prev_output_tokens: torch.Tensor, enc: EncoderOut, cache=None,
               features_only: bool = False) -> torch.Tensor:
        features = self.features(prev_output_tokens, enc, cache)
        return features if features_only else self.logits(features)

    def forward(self, src_tokens: torch.Tensor, prev_output_tokens: torch.Tensor,
                features_only: bool = False) -> torch.Tensor:
        return self.decode(prev_output_tokens, self.encode(src_tokens), features_only=features_only)

    def check_tie(self) -> None:
        """Raise if ``tie_mode`` and the actual parameters disagree (call after build/load/move/wrap)."""
        enc, dec, head = self.encoder_embedding.weight, self.decoder_embedding.weight, self.separate_head()
        registrations = sum(p is dec for p in dict(self.named_parameters(remove_duplicate=False)).values())
        shared_input = enc is dec and registrations == 1
        separate_input = not _same(enc, dec)
        tied_output = head is None and self.output_weight is dec
        separate_output = head is not None and self.output_weight is head and not _same(head, dec)
        ok = {"all": shared_input and tied_output, "decoder": separate_input and tied_output,
              "none": separate_input and separate_output}[self.tie_mode]
        if not ok:
            raise RuntimeError(
                f"tie broken: tie mode {self.tie_mode!r} (share_all_embeddings={self.cfg.share_all_embeddings}, "
                f"share_decoder_input_output_embed={self.cfg.share_decoder_input_output_embed}) but the encoder "
                f"embedding {'is' if enc is dec else 'is not'} the decoder's ({registrations} registration(s)) and "
                f"the output is {self.output_head_key if head is not None else 'the decoder embedding'}")


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """One matrix: the same Parameter, or (off the meta device, where every pointer is 0) the same storage."""
    return a is b or (a.device.type != "meta" and a.data_ptr() == b.data_ptr())
