"""The Llama family: its layers against their formulas, the cache, the tie, the named sizes."""

import argparse
import math

import pytest
import torch
import torch.nn.functional as F

from lmtie.config import add_dataclass_args, from_args
from lmtie.errors import UserError
from lmtie.models import build_config, get_family
from lmtie.models import llama as L
from lmtie.models.llama import LlamaConfig, LlamaLanguageModel
from lmtie.models.registry import archs_of
from lmtie.modules import RMSNorm, SwiGLU, apply_rotary, rotary_tables

V, PAD = 48, 1


def cfg(**kw) -> LlamaConfig:
    base = dict(vocab_size=V, padding_idx=PAD, decoder_embed_dim=32, decoder_ffn_embed_dim=48, decoder_layers=2,
                decoder_attention_heads=4, decoder_kv_heads=2, max_target_positions=64)
    return LlamaConfig(**{**base, **kw})


def tiny(seed=0, **kw) -> LlamaLanguageModel:
    torch.manual_seed(seed)
    return LlamaLanguageModel(cfg(**kw))


def rotate(x: torch.Tensor, positions: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """RoPE written as complex multiplication: channel i and i + hd/2 are one complex number."""
    half = x.size(-1) // 2
    freq = theta ** (-torch.arange(half, dtype=torch.float64) * 2 / x.size(-1))
    z = torch.complex(x[..., :half], x[..., half:]) * torch.polar(torch.ones_like(freq), positions[:, None] * freq)
    return torch.cat([z.real, z.imag], dim=-1)


# --- rotary positions ------------------------------------------------------------------------------
def test_rotary_scores_depend_only_on_the_position_difference():
    torch.manual_seed(0)
    q, k = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)

    def score(m, n):
        cos, sin = rotary_tables(0, max(m, n) + 1, 16, 10000.0, dtype=torch.float64)
        return apply_rotary(q, cos[m], sin[m]) @ apply_rotary(k, cos[n], sin[n])

    for m, n in [(5, 2), (2, 5), (7, 7), (40, 1)]:
        for shift in (1, 13, 1000):
            assert score(m + shift, n + shift).item() == pytest.approx(score(m, n).item(), rel=1e-10, abs=1e-12)


def test_rotary_pairs_channel_i_with_i_plus_half_at_hf_frequencies():
    """The "rotate half" layout of HF's LlamaForCausalLM: a weight copy needs no permutation."""
    hd, theta, pos = 8, 500000.0, 3
    cos, sin = rotary_tables(pos, 1, hd, theta, dtype=torch.float64)
    for i in range(hd // 2):
        x = torch.zeros(hd, dtype=torch.float64)
        x[i] = 1.0
        y = apply_rotary(x, cos[0], sin[0])
        angle = pos * theta ** (-2 * i / hd)
        expected = torch.zeros(hd, dtype=torch.float64)
        expected[i], expected[i + hd // 2] = math.cos(angle), math.sin(angle)
        torch.testing.assert_close(y, expected)
    x = torch.randn(2, 3, 5, hd, dtype=torch.float64)
    cos, sin = rotary_tables(4, 5, hd, theta, dtype=torch.float64)
    torch.testing.assert_close(apply_rotary(x, cos, sin), rotate(x, torch.arange(4, 9.0, dtype=torch.float64), theta))


def test_rotary_tables_are_float32_under_autocast():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cos, sin = rotary_tables(100000, 4, 64, 10000.0)
    assert cos.dtype == sin.dtype == torch.float32
    assert cos[0, 0].item() == pytest.approx(math.cos(100000.0), abs=1e-3)


# --- layers against their formulas ----------------------------------------------------------------
def test_rmsnorm_matches_the_formula():
    torch.manual_seed(0)
    norm = RMSNorm(12, eps=1e-5).double()
    torch.nn.init.normal_(norm.weight)
    x = torch.randn(3, 5, 12, dtype=torch.float64)
    expected = norm.weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
    torch.testing.assert_close(norm(x), expected)


def test_swiglu_matches_the_formula():
    torch.manual_seed(0)
    mlp = SwiGLU(12, 20).double()
    x = torch.randn(3, 5, 12, dtype=torch.float64)
    w = mlp.gate_up_proj.weight
    gate, up = x @ w[:20].T, x @ w[20:].T  # gate rows first, as HF's gate_proj then up_proj
    expected = (gate * torch.sigmoid(gate) * up) @ mlp.down_proj.weight.T
    torch.testing.assert_close(mlp(x), expected)


def reference_attention(attn: L.LlamaAttention, x: torch.Tensor) -> torch.Tensor:
    """Causal softmax attention written out, k/v heads repeated explicitly for each query group."""
    B, T, _ = x.shape
    h, kv, hd = attn.num_heads, attn.kv_heads, attn.head_dim
    w = attn.qkv_proj.weight
    q = (x @ w[:h * hd].T).view(B, T, h, hd).transpose(1, 2)
    k = (x @ w[h * hd:(h + kv) * hd].T).view(B, T, kv, hd).transpose(1, 2)
    v = (x @ w[(h + kv) * hd:].T).view(B, T, kv, hd).transpose(1, 2)
    pos = torch.arange(T, dtype=torch.float64)
    q, k = rotate(q, pos), rotate(k, pos)
    k, v = k.repeat_interleave(h // kv, dim=1), v.repeat_interleave(h // kv, dim=1)  # head j uses kv head j // g
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    y = scores.softmax(-1) @ v  # (B, h, T, hd)
    return y.transpose(1, 2).reshape(B, T, h * hd) @ attn.o_proj.weight.T


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
@pytest.mark.parametrize("sdpa_gqa", [True, False])
def test_attention_equals_written_out_attention(kv_heads, sdpa_gqa, monkeypatch):
    monkeypatch.setattr(L, "_SDPA_HAS_GQA", sdpa_gqa and L._SDPA_HAS_GQA)  # also the torch 2.4 fallback
    torch.manual_seed(0)
    c = cfg(decoder_kv_heads=kv_heads)
    attn = L.LlamaAttention(c).double()
    x = torch.randn(2, 7, 32, dtype=torch.float64)
    rope = rotary_tables(0, 7, c.head_dim, c.rope_theta, dtype=torch.float64)
    torch.testing.assert_close(attn(x, rope), reference_attention(attn, x))


# --- incremental decoding -------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(decoder_kv_heads=2), dict(decoder_kv_heads=None, qk_norm=True),
                                dict(decoder_kv_heads=1, qk_norm=True)])
def test_cached_decoding_equals_the_full_forward(kw):
    model = tiny(**kw).double().eval()
    tokens = torch.randint(2, V, (2, 12))
    full = model(tokens)
    cache = model.new_cache(2, 12)
    assert cache.kv.shape == (2, 2, 2, model.cfg.kv_heads, 12, 8)  # only the kv heads are stored
    steps = [model(tokens[:, :5], cache)]  # the prompt
    steps += [model(tokens[:, 5:8], cache)]  # a chunk after a prefix: the masked path
    steps += [model(tokens[:, t:t + 1], cache) for t in range(8, 12)]  # one token at a time
    torch.testing.assert_close(torch.cat(steps, dim=1), full)
    assert cache.length == 12


def test_positions_beyond_max_target_positions_are_refused():
    model = tiny(max_target_positions=8)
    with pytest.raises(UserError, match="--max-target-positions 8"):
        model(torch.randint(2, V, (1, 9)))


# --- the tie ------------------------------------------------------------------------------------------
def test_tied_and_untied_start_identical_except_the_head():
    tied, untied = tiny(share_decoder_input_output_embed=True), tiny(share_decoder_input_output_embed=False)
    t_state, u_state = tied.state_dict(), untied.state_dict()
    assert set(u_state) - set(t_state) == {"lm_head.weight"}
    for name, value in t_state.items():
        assert torch.equal(value, u_state[name]), name


def test_tied_model_holds_the_matrix_once():
    tied, untied = tiny(share_decoder_input_output_embed=True), tiny(share_decoder_input_output_embed=False)
    assert tied.output_weight is tied.model.embed_tokens.weight
    assert [n for n, p in tied.named_parameters() if p.shape == (V, 32)] == ["model.embed_tokens.weight"]
    assert [k for k, t in tied.state_dict().items() if t.shape == (V, 32)] == ["model.embed_tokens.weight"]
    assert tied.separate_head() is None and untied.separate_head() is untied.lm_head.weight
    t, u = tied.num_parameters(), untied.num_parameters()
    assert u["total"] - t["total"] == V * 32 and u["embedding"] - t["embedding"] == V * 32
    assert u["non_embedding"] == t["non_embedding"]


def test_pad_row_is_zero_and_its_logit_masked():
    model = tiny(share_decoder_input_output_embed=True)
    assert torch.count_nonzero(model.model.embed_tokens.weight[PAD]) == 0
    assert torch.isneginf(model(torch.randint(2, V, (1, 4)))[..., PAD]).all()


def test_initial_scales_follow_the_docstring():
    torch.manual_seed(0)
    c = cfg(vocab_size=4000, decoder_embed_dim=128, decoder_ffn_embed_dim=256, decoder_layers=8)
    model = LlamaLanguageModel(c)
    block = model.model.layers[3]
    checks = {"embed_tokens": (model.model.embed_tokens.weight[2:], 128 ** -0.5),
              "lm_head": (model.lm_head.weight, 128 ** -0.5),
              "qkv_proj": (block.self_attn.qkv_proj.weight, 0.02),
              "gate_up_proj": (block.mlp.gate_up_proj.weight, 0.02),
              "o_proj": (block.self_attn.o_proj.weight, 0.02 / math.sqrt(16)),
              "down_proj": (block.mlp.down_proj.weight, 0.02 / math.sqrt(16))}
    for name, (w, std) in checks.items():
        assert w.std().item() == pytest.approx(std, rel=0.05), name
    assert all(torch.equal(n.weight, torch.ones(128)) for n in (block.input_layernorm, model.model.norm))


def test_every_linear_layer_is_bias_free():
    model = tiny(qk_norm=True)
    assert not [n for n, _ in model.named_parameters() if n.endswith("bias")]


# --- named sizes --------------------------------------------------------------------------------------
REAL_VOCAB = {"smollm_135m": 49152, "llama3_2_1b": 128256}
# From the architecture: embedding V*d, per layer q,o d*d + k,v 2*d*(d*kv/h) + 3*d*ffn + 2*d, a final d.
# SmolLM-135M: 28,311,552 + 30 * 3,540,096 + 576; Llama-3.2-1B: 262,668,288 + 16 * 60,821,504 + 2048.
REAL_TOTAL = {"smollm_135m": 134_515_008, "llama3_2_1b": 1_235_814_400}


@pytest.mark.parametrize("arch", archs_of("llama"))
def test_every_preset_builds_on_the_meta_device(arch):
    c = build_config(arch, vocab_size=REAL_VOCAB.get(arch, 32000))
    with torch.device("meta"):
        model = get_family("llama").model_class(c)
    counts = model.num_parameters()
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    if arch in REAL_TOTAL:
        assert model.tied
        assert abs(counts["total"] - REAL_TOTAL[arch]) <= 0.01 * REAL_TOTAL[arch]
        assert counts["total"] == REAL_TOTAL[arch]  # the shape is exact, so the count is too


def test_llama_tiny_feed_forward_matches_transformer_lm_tiny():
    swiglu, fairseq = 3 * 128 * build_config("llama_tiny").decoder_ffn_embed_dim, 2 * 128 * 512
    assert abs(swiglu - fairseq) / fairseq < 0.05


# --- training and the config -------------------------------------------------------------------------
def test_tiny_model_overfits_one_batch():
    model = tiny(dropout=0.0, share_decoder_input_output_embed=True)
    tokens = torch.randint(2, V, (4, 17))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)

    def loss():
        return F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())

    start = loss().item()
    for _ in range(50):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < 0.2 * start
    assert torch.count_nonzero(model.model.embed_tokens.weight[PAD]) == 0  # no gradient reached <pad>


@pytest.mark.parametrize("bad, flag", [(dict(decoder_embed_dim=30), "--decoder-attention-heads"),
                                       (dict(decoder_kv_heads=3), "--decoder-kv-heads"),
                                       (dict(decoder_embed_dim=12), "odd head width"),
                                       (dict(padding_idx=V), "padding_idx")])
def test_validate_refuses_bad_configs(bad, flag):
    with pytest.raises(UserError, match=flag):
        cfg(**bad)


def test_positions_widths_and_width_scaling():
    c = cfg()
    assert c.with_positions(32) is c and c.with_positions(4096).max_target_positions == 4096
    assert list(c.widths()) == [8, 16, 24, 32]
    for w in c.widths():
        assert c.at_width(w).head_dim % 2 == 0
    assert c.at_width(32) == c
    assert c.at_width(16).decoder_ffn_embed_dim == 24


def test_config_fields_are_command_line_flags():
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, LlamaConfig)
    args = parser.parse_args(["--decoder-kv-heads", "2", "--qk-norm", "--rope-theta", "500000",
                              "--share-decoder-input-output-embed"])
    c = from_args(LlamaConfig, args)
    assert (c.decoder_kv_heads, c.qk_norm, c.rope_theta, c.share_decoder_input_output_embed) == (2, True, 5e5, True)
    with pytest.raises(SystemExit):
        parser.parse_args(["--vocab-size", "10"])  # set from the dictionary only


# --- parity with Hugging Face -------------------------------------------------------------------------
def test_logits_equal_hugging_face_llama_after_a_weight_copy():
    transformers = pytest.importorskip("transformers")
    model = tiny(share_decoder_input_output_embed=False).double().eval()
    c = model.cfg
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=c.rms_norm_eps, rope_theta=c.rope_theta,
        tie_word_embeddings=False, attn_implementation="eager")).double().eval()
    state = {}
    q, kv = 32, 2 * c.head_dim
    for name, t in model.state_dict().items():
        if name.endswith("qkv_proj.weight"):
            stem = name[:-len("qkv_proj.weight")]
            state.update({stem + "q_proj.weight": t[:q], stem + "k_proj.weight": t[q:q + kv],
                          stem + "v_proj.weight": t[q + kv:]})
        elif name.endswith("gate_up_proj.weight"):
            stem = name[:-len("gate_up_proj.weight")]
            state.update({stem + "gate_proj.weight": t[:48], stem + "up_proj.weight": t[48:]})
        else:
            state[name] = t
    hf.load_state_dict(state, strict=True)
    tokens = torch.randint(2, V, (2, 10))
    expected = hf(tokens).logits
    expected[..., PAD] = float("-inf")
    torch.testing.assert_close(model(tokens), expected)
