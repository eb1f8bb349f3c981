import copy

import pytest
import torch
import torch.nn.functional as F

from lmtie import Embedding, TransformerLanguageModel, TransformerLMConfig, check_tie
from lmtie.errors import UserError

V, PAD = 48, 1


def tiny(tied=True, **kw):
    cfg = dict(vocab_size=V, padding_idx=PAD, decoder_embed_dim=32, decoder_ffn_embed_dim=64, decoder_layers=2,
               decoder_attention_heads=4, dropout=0.0, max_target_positions=64,
               share_decoder_input_output_embed=tied)
    cfg.update(kw)
    torch.manual_seed(0)
    return TransformerLanguageModel(TransformerLMConfig(**cfg))


# --- the Embedding factory -------------------------------------------------------------------
def test_embedding_has_normal_scale_and_zero_padding_row():
    torch.manual_seed(0)
    m = Embedding(4000, 64, padding_idx=1)
    assert torch.count_nonzero(m.weight[1]) == 0
    assert abs(m.weight[2:].std().item() - 64 ** -0.5) < 0.02 * 64 ** -0.5


def test_embedding_without_padding_zeroes_nothing():
    m = Embedding(100, 16, padding_idx=None)
    assert torch.count_nonzero(m.weight) == m.weight.numel()


# --- the tie -------------------------------------------------------------------------------------
def test_tied_head_is_the_embedding_parameter_and_untied_is_separate():
    tied, untied = tiny(True), tiny(False)
    assert tied.decoder.embed_out is tied.decoder.embed_tokens.weight
    assert untied.decoder.embed_out is not untied.decoder.embed_tokens.weight
    names = [n for n, _ in tied.named_parameters()]
    assert "decoder.embed_tokens.weight" in names and "decoder.embed_out" not in names
    assert "decoder.embed_out" not in tied.state_dict()  # the tied matrix is stored once
    assert "decoder.embed_out" in untied.state_dict()


def test_parameter_counts_differ_by_exactly_v_times_output_dim():
    t, u = tiny(True).num_parameters(), tiny(False).num_parameters()
    assert u["total"] - t["total"] == V * 32
    assert u["embedding"] - t["embedding"] == V * 32
    assert u["non_embedding"] == t["non_embedding"]
    assert t["total"] == sum(p.numel() for p in tiny(True).parameters())


def test_untied_head_is_normal_with_output_dim_scale():
    torch.manual_seed(0)
    m = TransformerLanguageModel(TransformerLMConfig(vocab_size=5000, decoder_embed_dim=64, decoder_layers=1,
                                                     decoder_attention_heads=4, decoder_ffn_embed_dim=64))
    std = m.decoder.embed_out.std().item()
    assert abs(std - 64 ** -0.5) < 0.05 * 64 ** -0.5


def test_tie_survives_dtype_move_deepcopy_and_state_dict_round_trip(tmp_path):
    m = tiny(True).to(torch.float64)
    check_tie(m)
    assert m.decoder.embed_out.dtype == torch.float64
    check_tie(copy.deepcopy(m))
    torch.save(m.state_dict(), tmp_path / "m.pt")
    fresh = tiny(True).to(torch.float64)
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    check_tie(fresh)
    assert torch.equal(fresh.decoder.embed_out, m.decoder.embed_tokens.weight)


def test_check_tie_detects_a_broken_tie():
    m = tiny(True)
    m.decoder._parameters["embed_out"] = torch.nn.Parameter(m.decoder.embed_tokens.weight.detach().clone())
    with pytest.raises(RuntimeError, match="tie broken"):
        check_tie(m)
    u = tiny(False)
    u.decoder.embed_out.data = u.decoder.embed_tokens.weight.data  # same storage: secretly tied
    with pytest.raises(RuntimeError, match="tie broken"):
        check_tie(u)


def test_output_dim_projection_keeps_the_tie_and_mismatch_is_refused():
    m = tiny(True, decoder_input_dim=16, decoder_output_dim=16)
    check_tie(m)
    assert m(torch.randint(4, V, (2, 5))).shape == (2, 5, V)
    with pytest.raises(UserError, match="--decoder-output-dim"):
        TransformerLMConfig(vocab_size=V, decoder_embed_dim=32, decoder_output_dim=16,
                            decoder_attention_heads=4, share_decoder_input_output_embed=True)
    untied = tiny(False, decoder_output_dim=16)
    assert untied.decoder.embed_out.shape == (V, 16)


def test_heads_must_divide_width():
    with pytest.raises(UserError, match="divisible"):
        TransformerLMConfig(vocab_size=V, decoder_embed_dim=30, decoder_attention_heads=4)


# --- forward -------------------------------------------------------------------------------------
@pytest.mark.parametrize("learned", [False, True])
def test_forward_returns_logits_for_every_position_and_is_causal(learned):
    m = tiny(decoder_learned_pos=learned).eval()
    x = torch.randint(4, V, (3, 12))
    logits = m(x)
    assert logits.shape == (3, 12, V)
    y = x.clone()
    y[:, 7:] = torch.randint(4, V, (3, 5))  # changing the future must not change the past
    assert torch.allclose(m(y)[:, :7], logits[:, :7], atol=1e-6)


def test_pad_is_never_predicted():
    logp = F.log_softmax(tiny()(torch.randint(4, V, (2, 6))), dim=-1)
    assert torch.isneginf(logp[..., PAD]).all()
    assert torch.allclose(logp.exp().sum(-1), torch.ones(2, 6))


def test_incremental_decoding_matches_the_full_forward():
    m = tiny().eval()
    x = torch.randint(4, V, (2, 10))
    cache = m.new_cache(2, 10)
    steps = [m(x[:, :4], cache)] + [m(x[:, i:i + 1], cache) for i in range(4, 10)]
    inc, full = torch.cat(steps, dim=1), m(x)
    keep = torch.arange(V) != PAD
    assert torch.allclose(inc[..., keep], full[..., keep], atol=1e-5)


def test_sequence_longer_than_positions_is_refused():
    with pytest.raises(UserError, match="max-target-positions"):
        tiny()(torch.randint(4, V, (1, 65)))


# --- training behaviour -------------------------------------------------------------------------
def _train(m, src, tgt, steps, lr=3e-3):
    opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=0.01)
    for _ in range(steps):
        loss = F.cross_entropy(m(src).flatten(0, 1), tgt.flatten(), ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


def test_tied_model_overfits_one_small_batch():
    m = tiny(True)
    torch.manual_seed(1)
    tgt = torch.randint(4, V, (4, 16))
    src = torch.cat([torch.full((4, 1), 2), tgt[:, :-1]], dim=1)
    assert _train(m, src, tgt, steps=300) < 0.1


@pytest.mark.parametrize("tied", [True, False])
def test_pad_row_stays_exactly_zero_through_training_on_padded_batches(tied):
    m = tiny(tied)
    torch.manual_seed(2)
    tgt = torch.randint(4, V, (4, 16))
    tgt[:, 10:] = PAD
    src = torch.cat([torch.full((4, 1), 2), tgt[:, :-1]], dim=1)
    _train(m, src, tgt, steps=10)
    assert torch.count_nonzero(m.decoder.embed_tokens.weight[PAD]) == 0
    if tied:
        check_tie(m)
