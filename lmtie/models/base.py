"""The model protocol: what the trainer, evaluator, checkpoint I/O, FSDP plan and ablation may use.

Every language-model family subclasses :class:`LanguageModel` and registers itself (``registry.py``);
encoder-decoder families subclass ``seq2seq.EncoderDecoderModel`` (its own protocol, in seq2seq.py);
both share :class:`TokenModel`. Nothing outside ``lmtie/models`` names a concrete family. The
language-model protocol, in one place:

- ``build(cfg, dictionary)``: the model of a config, sized to a dictionary (vocabulary, <pad>);
- ``features(tokens, cache=None)``: (B, T) ids -> (B, T, d_out), the input of the output layer;
- ``output_weight``: the (V, d_out) matrix the fused loss projects with (the input embedding
  itself when tied); ``output_bias``: a (V,) buffer of zeros and -inf at the masked classes
  (<pad>, never a target); ``logits(features)``: (..., d_out) -> (..., V) with those at -inf;
- ``forward(tokens, cache=None, features_only=False)``: logits, or the features (so a loss that
  fuses the projection still calls through DDP/FSDP wrappers);
- ``new_cache(batch_size, max_len)``: a key/value cache object with a ``length`` attribute;
- ``num_parameters()``, ``check_tie()``, ``shard_units()`` (FSDP2 groups: the blocks; the root
  group keeps the embedding and a tied head together), ``max_positions``, ``tied``,
  ``input_embedding``, ``output_head_key`` (the state_dict key of an untied head);
- the tying strategies of :class:`TyingOptions`, the same for every family: ``head_input``
  (Press & Wolf's projection P, when configured), ``regularization()`` (its penalty),
  ``untie_due(step)`` / ``untie_()`` (the split of ``--untie-at-update``).

A family's config dataclass derives from :class:`TyingOptions` and has at least ``vocab_size``,
``padding_idx``, ``share_decoder_input_output_embed`` and ``max_target_positions``, plus
``replace(**changes)``, ``with_positions(n)`` (a config that serves n positions, or a UserError)
and, for the ablation's parameter-matched arm, ``widths()`` and ``at_width(width)``. Its
constructor ends with ``self._finish_build()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from lmtie.config import field
from lmtie.errors import UserError


@dataclass
class TyingOptions:
    """Tying strategies beyond on/off, fields of every family's config (the ablation's arms set them).

    Press & Wolf's penalty: their paper writes lambda * ||P||_2 with lambda = 0.15, their code
    (ofirpress/UsingTheOutputEmbedding, ptb_word_lm_WT_PR.py) adds tf.nn.l2_loss(P) / (20 * 6.5),
    half the squared Frobenius norm, to a loss summed over 20-token sequences: ||P||_F^2 / 5200
    per token. Here the penalty is lambda * ||P||_F^2 per target token, lambda 2e-4 by default.
    """

    untie_at_update: int = field(
        0, "tied until update N, then two matrices that start equal, each with the tied matrix's Adam state "
           "(tied early, untied late); 0: never. A saved config with --no-share-decoder-input-output-embed and "
           "this set is a model that has split", min=0)
    init_output_from_embedding: bool = field(
        False, "untied, but the output matrix starts as an exact copy of embed_tokens (then trains separately)")
    output_projection: bool = field(
        False, "a bias-free d x d projection P (starting as the identity) before the output layer, penalised by "
               "--output-projection-reg (Press & Wolf 2017's projection regularisation)")
    output_projection_reg: float = field(
        2e-4, "lambda of the training penalty lambda * ||P||_F^2 per target token (with --output-projection)", min=0)

    def validate_tying(self) -> None:
        """Refuse combinations that contradict themselves, with the flag to change."""
        tied = self.share_decoder_input_output_embed  # type: ignore[attr-defined]
        if self.init_output_from_embedding and tied:
            raise UserError("--init-output-from-embedding needs an untied model: pass "
                            "--no-share-decoder-input-output-embed (a tied model has one matrix to start with)")
        if self.init_output_from_embedding and self.untie_at_update:
            raise UserError("--init-output-from-embedding and --untie-at-update both set the head from the "
                            "embedding; pass one")


class TokenModel(nn.Module):
    """What every family shares, decoder-only or encoder-decoder: an output matrix over a vocabulary whose
    <pad> logit is masked, unique-parameter counts (a shared matrix once) and the separate head's lookup."""

    task: ClassVar[str] = ""  # the task the family serves: "language_modeling" or "translation"
    family: ClassVar[str] = ""  # set by registry.register_model
    config_class: ClassVar[type]
    output_head_key: ClassVar[str]  # state_dict key of the separate output matrix when untied
    cfg: Any

    @property
    def output_weight(self) -> torch.Tensor:
        raise NotImplementedError

    def embedding_parameters(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def head_input(self, features: torch.Tensor) -> torch.Tensor:
        """What the output matrix multiplies: the features (a language model may project them first)."""
        return features

    def _register_output_mask(self, vocab_size: int, padding_idx: int) -> None:
        """<pad> is never a target: a -inf logit gives it probability 0, so the output never sends
        gradient to its row and a tied pad row stays exactly zero (fairseq issue 4633)."""
        bias = torch.zeros(vocab_size)
        bias[padding_idx] = float("-inf")
        self.register_buffer("output_bias", bias, persistent=False)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(..., d_out) features -> (..., V) logits, with <pad> at -inf.

        Filling the one <pad> column equals adding ``output_bias`` (zeros and that -inf) but skips
        a pass over the whole (..., V) output; the fill also stops gradient into the pad row.
        """
        logits = nn.functional.linear(self.head_input(features), self.output_weight)
        pad = torch.tensor([self.cfg.padding_idx], device=logits.device)
        return logits.index_fill_(-1, pad, float("-inf"))

    def _cache_dtype(self) -> tuple[torch.device, torch.dtype]:
        """Where a cache lives and its dtype: the autocast dtype under autocast, else the weights'."""
        p = self.output_weight
        autocast = torch.is_autocast_enabled(p.device.type)
        return p.device, (torch.get_autocast_dtype(p.device.type) if autocast else p.dtype)

    def num_parameters(self) -> dict[str, int]:
        """Unique parameters, a tied matrix counted once.

        ``embedding`` is the token embedding(s), a separate output matrix and learned positions
        (Kaplan et al. 2020 leave all three out of the "non-embedding" count).
        """
        unique = {id(p): p for p in self.parameters()}
        emb = sum(p.numel() for p in {id(p): p for p in self.embedding_parameters()}.values())
        total = sum(p.numel() for p in unique.values())
        return {"total": total, "embedding": emb, "non_embedding": total - emb}

    def separate_head(self) -> nn.Parameter | None:
        """The registered output Parameter (None when tied: the embedding is the head)."""
        return dict(self.named_parameters(remove_duplicate=False)).get(self.output_head_key)


class LanguageModel(TokenModel):
    """Base of every decoder-only family; subclasses set ``config_class`` and implement the abstract parts."""

    task: ClassVar[str] = "language_modeling"
    auto_lr_times_width: ClassVar[float] = 0.5  # the auto recipe's peak lr x width (lmtie/training/recipe.py)

    @classmethod
    def build(cls, cfg, dictionary=None) -> "LanguageModel":
        """Build from a config, taking the vocabulary size and pad index from ``dictionary`` if given."""
        if dictionary is not None:
            cfg = cfg.replace(vocab_size=len(dictionary), padding_idx=dictionary.pad())
        return cls(cfg)

    # --- what each family implements ---------------------------------------------------------
    def features(self, tokens: torch.Tensor, cache=None) -> torch.Tensor:
        raise NotImplementedError

    @property
    def input_embedding(self) -> nn.Embedding:
        raise NotImplementedError

    def new_cache(self, batch_size: int, max_len: int):
        raise NotImplementedError

    def shard_units(self) -> list[nn.Module]:
        raise NotImplementedError

    def embedding_parameters(self) -> list[torch.Tensor]:
        """What ``num_parameters`` counts as embedding: token embedding, output matrix, learned positions."""
        return [self.input_embedding.weight, self.output_weight]

    # --- shared behaviour ------------------------------------------------------------------------
    @property
    def tied(self) -> bool:
        return bool(self.cfg.share_decoder_input_output_embed)

    @property
    def max_positions(self) -> int:
        return int(self.cfg.max_target_positions)

    def _register_output_mask(self) -> None:
        super()._register_output_mask(self.cfg.vocab_size, self.cfg.padding_idx)

    def forward(self, tokens: torch.Tensor, cache=None, features_only: bool = False) -> torch.Tensor:
        features = self.features(tokens, cache)
        return features if features_only else self.logits(features)

    # --- tying strategies (TyingOptions), one implementation for every family ------------------
    def _finish_build(self) -> None:
        """What every family's constructor ends with: the output mask, the tying options, the tie check.

        P is created last, as the identity (no random draw), so every other tensor starts as in the
        plain tied model of the same seed, and so does the function the model computes.
        """
        self._register_output_mask()
        if getattr(self.cfg, "init_output_from_embedding", False):
            head, emb = self.separate_head(), self.input_embedding.weight
            if head is None or head.shape != emb.shape:
                raise UserError(f"--init-output-from-embedding: the output matrix "
                                f"{list(self.output_weight.shape)} cannot copy embed_tokens {list(emb.shape)}; "
                                "give them one width")
            with torch.no_grad():
                head.copy_(emb)  # keras-hub's "start equal, train separately"
        if getattr(self.cfg, "output_projection", False):
            d = self.output_weight.size(1)
            self.output_projection = nn.Parameter(torch.eye(d))  # (d_out, d_out), applied as x P^T
        self.check_tie()

    def head_input(self, features: torch.Tensor) -> torch.Tensor:
        """What the output matrix multiplies: the features, through Press & Wolf's P when configured."""
        P = getattr(self, "output_projection", None)
        return features if P is None else nn.functional.linear(features, P)  # (..., d_out) @ P^T

    def regularization(self) -> torch.Tensor | None:
        """The training penalty per target token, lambda * ||P||_F^2 (see TyingOptions); None without P."""
        P = getattr(self, "output_projection", None)
        return None if P is None else self.cfg.output_projection_reg * P.pow(2).sum()

    def untie_due(self, step: int) -> bool:
        """Whether ``--untie-at-update`` asks for the split now, ``step`` updates done."""
        k = getattr(self.cfg, "untie_at_update", 0)
        return self.tied and 0 < k <= step

    def untie_(self) -> nn.Parameter:
        """Split the tied matrix: register a separate head Parameter under ``output_head_key``
        holding a copy of the embedding, and return it. From then on the config says untied (and
        still records ``untie_at_update``), so every checkpoint written after it loads as untied."""
        if not self.tied:
            raise RuntimeError("untie_() of a model that is not tied")
        emb = self.input_embedding.weight
        head = nn.Parameter(emb.detach().clone(), requires_grad=emb.requires_grad)
        old, new = self.cfg, self.cfg.replace(share_decoder_input_output_embed=False)
        for m in self.modules():  # the family's submodules that read the same config object
            if getattr(m, "cfg", None) is old:
                m.cfg = new
        path, _, name = self.output_head_key.rpartition(".")
        owner = self
        for part in path.split(".") if path else ():
            if not hasattr(owner, part):
                owner.add_module(part, nn.Module())  # e.g. a tied Llama has no lm_head module at all
            owner = getattr(owner, part)
        owner.register_parameter(name, head)
        self.check_tie()
        return head

    def check_tie(self) -> None:
        """Raise if the tie flag and the actual parameters disagree (call after build/load/move/wrap)."""
        separate, emb = self.separate_head(), self.input_embedding.weight
        if self.tied and (separate is not None or self.output_weight is not emb):
            raise RuntimeError(f"tie broken: share_decoder_input_output_embed=True but the model holds a separate "
                               f"{self.output_head_key} Parameter")
        shares = separate is not None and separate.data_ptr() == emb.data_ptr() and emb.device.type != "meta"
        if not self.tied and (separate is None or shares):
            raise RuntimeError(f"tie broken: share_decoder_input_output_embed=False but {self.output_head_key} is "
                               "missing or shares storage with the input embedding")


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP/FSDP (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


def check_tie(model: nn.Module) -> None:
    """``check_tie`` of the model inside any wrapper."""
    unwrap(model).check_tie()
