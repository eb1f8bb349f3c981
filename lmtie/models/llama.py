"""A Llama-style decoder (Touvron et al. 2023): RMSNorm, rotary positions, SwiGLU, grouped-query attention.

Reads top to bottom: config, attention, block, decoder, model, named sizes.
Module names mirror Hugging Face's ``LlamaForCausalLM`` (``model.layers.{i}.self_attn`` ...), so
an export is a weight copy: split ``qkv_proj`` into q, k, v rows and ``gate_up_proj`` into gate,
up halves. The tie is one property in :class:`LlamaLanguageModel` (Press & Wolf 2017).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from lmtie.config import MAX_LAYERS, MAX_POSITIONS, MAX_VOCAB, MAX_WIDTH, field, validate_ranges
from lmtie.errors import UserError
from lmtie.models.base import LanguageModel, TyingOptions
from lmtie.models.registry import register_arch, register_model
from lmtie.modules.embedding import Embedding
from lmtie.modules.feedforward import SwiGLU
from lmtie.modules.kv_cache import KVCache
from lmtie.modules.norms import RMSNorm
from lmtie.modules.rotary import apply_rotary, rotary_tables

_SDPA_HAS_GQA = torch.__version__ >= "2.5"  # enable_gqa appeared in torch 2.5; setup.cfg allows 2.4


@dataclass
class LlamaConfig(TyingOptions):
    """Model hyper-parameters; names shared with ``transformer_lm`` are fairseq's, so ablation flags read alike."""

    vocab_size: int = field(0, "vocabulary size (set from the dictionary)", cli=False, min=0, max=MAX_VOCAB)
    padding_idx: int = field(1, "index of <pad>; its logit is masked and its embedding row stays zero", cli=False,
                             min=0)
    decoder_embed_dim: int = field(512, "width of the residual stream", min=1, max=MAX_WIDTH)
    decoder_ffn_embed_dim: int = field(1408, "hidden width of the SwiGLU feed-forward layers", min=1, max=MAX_WIDTH)
    decoder_layers: int = field(6, "number of Transformer blocks", min=1, max=MAX_LAYERS)
    decoder_attention_heads: int = field(8, "query heads per block", min=1, max=MAX_WIDTH)
    decoder_kv_heads: Optional[int] = field(
        None, "key/value heads per block (grouped-query attention; default: as many as query heads)",
        min=1, max=MAX_WIDTH)
    rope_theta: float = field(10000.0, "base of the rotary position frequencies", gt=0)
    rms_norm_eps: float = field(1e-5, "epsilon of every RMSNorm", min=0)
    qk_norm: bool = field(False, "RMSNorm over head_dim on queries and keys before RoPE (as Qwen3, OLMo-2)")
    dropout: float = field(0.0, "dropout on embeddings and residual branches", min=0, lt=1)
    attention_dropout: float = field(0.0, "dropout on attention weights", min=0, lt=1)
    max_target_positions: int = field(2048, "longest sequence served (RoPE extends freely)", min=1, max=MAX_POSITIONS)
    share_decoder_input_output_embed: bool = field(
        False, "use embed_tokens.weight as the output projection (Press & Wolf 2017)")
    init_std: float = field(0.02, "std of the q/k/v/gate/up weights (HF LlamaConfig.initializer_range)", gt=0)

    def __post_init__(self) -> None:
        validate_ranges(self)
        self.validate()

    @property
    def kv_heads(self) -> int:
        return self.decoder_kv_heads or self.decoder_attention_heads

    @property
    def head_dim(self) -> int:
        return self.decoder_embed_dim // self.decoder_attention_heads

    def validate(self) -> None:
        """Refuse settings that cannot build, with the flag to change (a tie needs nothing: one width)."""
        d, h, kv = self.decoder_embed_dim, self.decoder_attention_heads, self.decoder_kv_heads
        if h < 1 or d % h:
            raise UserError(f"--decoder-embed-dim {d} is not divisible by --decoder-attention-heads {h}")
        if kv is not None and (kv < 1 or h % kv):
            raise UserError(f"--decoder-attention-heads {h} is not a multiple of --decoder-kv-heads {kv}")
        if (d // h) % 2:
            raise UserError(f"--decoder-embed-dim {d} / --decoder-attention-heads {h} gives an odd head width "
                            f"{d // h}; RoPE rotates channel pairs, so pick an even one")
        if self.vocab_size and not 0 <= self.padding_idx < self.vocab_size:
            raise UserError(f"padding_idx {self.padding_idx} is outside the vocabulary of {self.vocab_size}")
        self.validate_tying()

    def replace(self, **changes) -> "LlamaConfig":
        return dataclasses.replace(self, **changes)

    def with_positions(self, n: int) -> "LlamaConfig":
        """A config serving ``n`` positions: rotary angles exist at every position, so any n is fine."""
        return self if n <= self.max_target_positions else self.replace(max_target_positions=n)

    def widths(self) -> range:
        """Residual widths the parameter-matched ablation arm may pick: multiples of the head count
        whose head width is even (RoPE)."""
        step = 2 * self.decoder_attention_heads
        return range(step, self.decoder_embed_dim + 1, step)

    def at_width(self, width: int) -> "LlamaConfig":
        """This model at residual width ``width``, the SwiGLU width scaled with it to a multiple of 8."""
        d, ffn = self.decoder_embed_dim, self.decoder_ffn_embed_dim
        if width != d:
            ffn = max(8, 8 * round(ffn * width / d / 8))
        return self.replace(decoder_embed_dim=width, decoder_ffn_embed_dim=ffn)


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                      causal: bool, dropout_p: float) -> torch.Tensor:
    """SDPA of (B, H, T, hd) queries on (B, kv, S, hd) keys/values, each kv head serving H / kv query heads.

    SDPA's own ``enable_gqa`` when there is no explicit mask (training, prefill, one-token steps):
    on torch 2.13 CPU it matched or beat repeating k/v at the tiny and small shapes, without the
    copy. With a mask, or on torch 2.4, the heads are repeated instead: fused CUDA kernels refuse
    enable_gqa with a mask and fall back to the O(T^2) math kernel (Hugging Face's
    ``use_gqa_in_sdpa`` draws the same line).
    """
    groups = q.size(1) // k.size(1)
    if groups > 1 and _SDPA_HAS_GQA and mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal, enable_gqa=True)
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # (B, H, S, hd)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal)


class LlamaAttention(nn.Module):
    """Causal grouped-query self-attention (Ainslie et al. 2023) with rotary positions; no biases."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.num_heads, self.kv_heads, self.head_dim = cfg.decoder_attention_heads, cfg.kv_heads, cfg.head_dim
        q_dim, kv_dim = self.num_heads * self.head_dim, self.kv_heads * self.head_dim
        self.split = (q_dim, kv_dim, kv_dim)
        self.qkv_proj = nn.Linear(cfg.decoder_embed_dim, sum(self.split), bias=False)  # rows: q, then k, then v
        self.o_proj = nn.Linear(q_dim, cfg.decoder_embed_dim, bias=False)
        norm = lambda: RMSNorm(self.head_dim, cfg.rms_norm_eps)  # noqa: E731
        self.q_norm, self.k_norm = (norm(), norm()) if cfg.qk_norm else (None, None)  # Qwen3, OLMo-2
        self.attention_dropout = cfg.attention_dropout

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], layer: int = 0,
                cache: KVCache | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv_proj(x).split(self.split, dim=-1)
        q = q.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, kv, T, hd)
        v = v.view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, kv, T, hd)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        mask, causal = None, True
        if cache is not None:
            k, v, mask, causal = cache.attend(layer, k, v)  # (B, kv, past + T, hd): only the kv heads are cached
        p = self.attention_dropout if self.training else 0.0
        y = grouped_attention(q, k, v, mask, causal, p)  # (B, H, T, hd)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, d)


class LlamaBlock(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.decoder_embed_dim, cfg.rms_norm_eps)
        self.self_attn = LlamaAttention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.decoder_embed_dim, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg.decoder_embed_dim, cfg.decoder_ffn_embed_dim)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], layer: int = 0,
                cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.input_layernorm(x), rope, layer, cache))
        return x + self.dropout(self.mlp(self.post_attention_layernorm(x)))


class LlamaModel(nn.Module):
    """Token embedding, blocks and the final norm (HF's ``LlamaModel``); no position table, no embedding scale."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise UserError("vocab_size must be set (build the model from a Dictionary or pass vocab_size)")
        self.cfg = cfg
        self.embed_tokens = Embedding(cfg.vocab_size, cfg.decoder_embed_dim, cfg.padding_idx)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(LlamaBlock(cfg) for _ in range(cfg.decoder_layers))
        self.norm = RMSNorm(cfg.decoder_embed_dim, cfg.rms_norm_eps)
        self._init_linear_layers()

    def _init_linear_layers(self) -> None:
        """Inputs of a branch N(0, init_std); its outputs (o_proj, down_proj) smaller by sqrt(2 * layers),
        so the residual stream's variance does not grow with depth (GPT-2, Radford et al. 2019, sec. 2.3)."""
        std = self.cfg.init_std
        residual_std = std / math.sqrt(2 * self.cfg.decoder_layers)
        for block in self.layers:
            nn.init.normal_(block.self_attn.qkv_proj.weight, mean=0.0, std=std)
            nn.init.normal_(block.self_attn.o_proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.mlp.gate_up_proj.weight, mean=0.0, std=std)
            nn.init.normal_(block.mlp.down_proj.weight, mean=0.0, std=residual_std)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """(B, T) token ids -> (B, T, d) normalised features."""
        start = cache.length if cache is not None else 0
        T = tokens.size(1)
        if start + T > self.cfg.max_target_positions:
            raise UserError(f"sequence of {start + T} tokens exceeds --max-target-positions "
                            f"{self.cfg.max_target_positions}")
        x = self.dropout(self.embed_tokens(tokens))  # (B, T, d)
        rope = rotary_tables(start, T, self.cfg.head_dim, self.cfg.rope_theta, device=x.device)  # (T, hd) x 2
        for i, layer in enumerate(self.layers):
            x = layer(x, rope, i, cache)
        if cache is not None:
            cache.length += T
        return self.norm(x)


@register_model("llama")
class LlamaLanguageModel(LanguageModel):
    """A Llama-style LM: ``forward(tokens)`` returns logits for every position, (B, T) -> (B, T, V).

    Initialisation:

    ==========================  =============================  ==========================================
    tensor                      distribution                   source
    ==========================  =============================  ==========================================
    model.embed_tokens          N(0, d^-0.5), <pad> row 0      Vaswani et al. 2017 sec. 3.4 (lmtie's
                                                               Embedding factory, as in transformer_lm)
    lm_head (untied only)       N(0, d^-0.5), drawn last       the tied matrix's scale, so the ablation
                                                               compares like with like
    qkv_proj, gate_up_proj      N(0, init_std=0.02)            HF LlamaConfig.initializer_range
    o_proj, down_proj           N(0, 0.02 / sqrt(2 * layers))  GPT-2 (Radford et al. 2019 sec. 2.3), as
                                                               in nanoGPT
    RMSNorm weights             1                              Zhang & Sennrich 2019
    ==========================  =============================  ==========================================

    The untied head is drawn after every other tensor, so a tied and an untied model built from the
    same seed start with identical values everywhere else.
    """

    config_class = LlamaConfig
    output_head_key = "lm_head.weight"

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        self.model = LlamaModel(cfg)
        if not cfg.share_decoder_input_output_embed:
            self.lm_head = nn.Linear(cfg.decoder_embed_dim, cfg.vocab_size, bias=False)
            nn.init.normal_(self.lm_head.weight, mean=0.0, std=cfg.decoder_embed_dim ** -0.5)
        self._finish_build()

    @property
    def output_weight(self) -> torch.Tensor:
        """The (V, d) output matrix; when tied it *is* ``model.embed_tokens.weight`` (Press & Wolf 2017;
        Inan et al. 2017): no second Parameter exists, so no load, move or re-init can split the two."""
        return self.model.embed_tokens.weight if self.tied else self.lm_head.weight

    @property
    def input_embedding(self) -> nn.Embedding:
        return self.model.embed_tokens

    def features(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        return self.model(tokens, cache)

    def shard_units(self) -> list[nn.Module]:
        return list(self.model.layers)

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        device, dtype = self._cache_dtype()
        c = self.cfg
        return KVCache(c.decoder_layers, batch_size, c.kv_heads, min(max_len, c.max_target_positions), c.head_dim,
                       device, dtype)


# --- named sizes (--arch) ---------------------------------------------------------------------------
@register_arch("llama", "llama")
def llama() -> dict:
    return {}  # the config defaults


@register_arch("llama_tiny", "llama")
def llama_tiny() -> dict:
    """transformer_lm_tiny's budget: SwiGLU's three 128 x 352 matrices ~ the fairseq FFN's two 128 x 512."""
    return dict(decoder_embed_dim=128, decoder_ffn_embed_dim=352, decoder_layers=2, decoder_attention_heads=4,
                decoder_kv_heads=2, dropout=0.1, max_target_positions=512)


@register_arch("llama_small", "llama")
def llama_small() -> dict:
    """transformer_lm_small's budget (d 256, 4 layers; 3 x 704 ~ 2 x 1024 FFN columns)."""
    return dict(decoder_embed_dim=256, decoder_ffn_embed_dim=704, decoder_layers=4, decoder_attention_heads=4,
                decoder_kv_heads=2, dropout=0.1, max_target_positions=1024)


@register_arch("smollm_135m", "llama")
def smollm_135m() -> dict:
    """HuggingFaceTB/SmolLM-135M's shape (134,515,008 parameters at its 49152 vocabulary).

    SmolLM2-135M has the same shape but rope_theta 100000 and 8192 positions.
    """
    return dict(decoder_embed_dim=576, decoder_ffn_embed_dim=1536, decoder_layers=30, decoder_attention_heads=9,
                decoder_kv_heads=3, rope_theta=10000.0, max_target_positions=2048,
                share_decoder_input_output_embed=True)


@register_arch("llama3_2_1b", "llama")
def llama3_2_1b() -> dict:
    """meta-llama/Llama-3.2-1B's shape (1,235,814,400 parameters at its 128256 vocabulary).

    Its "llama3" rope scaling is not implemented: Meta slows the low-frequency bands (wavelengths
    beyond 8192 positions) by a factor up to 32, at every position; here every band is plain RoPE.
    Right for training from scratch; Meta's weights would need that scaling to load exactly.
    """
    return dict(decoder_embed_dim=2048, decoder_ffn_embed_dim=8192, decoder_layers=16, decoder_attention_heads=32,
                decoder_kv_heads=8, rope_theta=500000.0, max_target_positions=131072,
                share_decoder_input_output_embed=True)
