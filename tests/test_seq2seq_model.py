"""The encoder-decoder family ``transformer`` (fairseq's translation Transformer): ties, padding, causality,
the incremental cache and beam reordering, teacher-forced NLL, refusals, checkpoints and the meta device."""

import pytest
import torch
import torch.nn.functional as F

from safetensors import safe_open
from safetensors.torch import load_file

from lmtie import checkpoint as ckpt_io
from lmtie.config import to_dict
from lmtie.data import Dictionary
from lmtie.errors import UserError
from lmtie.models import TransformerConfig, build_model, families_for, get_family

V_SRC, V_TGT, PAD, EOS = 23, 29, 1, 2
D_ENC, D_DEC, FFN = 16, 24, 32
MODES = ("none", "decoder", "all")


def config(tie: str = "none", **kw) -> TransformerConfig:
    """Unequal widths and vocabularies unless the tie is ``all`` (which needs them equal)."""
    shared = tie == "all"
    values = dict(src_vocab_size=V_TGT if shared else V_SRC, tgt_vocab_size=V_TGT, padding_idx=PAD,
                  encoder_embed_dim=D_DEC if shared else D_ENC, encoder_ffn_embed_dim=FFN, encoder_layers=2,
                  encoder_attention_heads=2, decoder_embed_dim=D_DEC, decoder_ffn_embed_dim=FFN, decoder_layers=2,
                  decoder_attention_heads=2, dropout=0.0, max_source_positions=64, max_target_positions=64,
                  share_decoder_input_output_embed=tie == "decoder", share_all_embeddings=shared)
    return TransformerConfig(**{**values, **kw})


def model(tie: str = "none", seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_model("transformer", config(tie, **kw))


def sentences(seed: int, n: int, vocab: int, lengths) -> list[torch.Tensor]:
    """n sentences of the given lengths, each ending with </s>."""
    g = torch.Generator().manual_seed(seed)
    return [torch.cat([torch.randint(4, vocab, (lengths[i] - 1,), generator=g), torch.tensor([EOS])])
            for i in range(n)]


def right_pad(rows: list[torch.Tensor], width: int | None = None) -> torch.Tensor:
    width = width or max(len(r) for r in rows)
    return torch.stack([F.pad(r, (0, width - len(r)), value=PAD) for r in rows])


def pairs(vocab_src: int = V_SRC, seed: int = 0):
    """(src, prev_output_tokens, target, the unpadded rows) for 3 pairs of unequal lengths."""
    src = sentences(seed, 3, vocab_src, [7, 4, 9])
    tgt = sentences(seed + 1, 3, V_TGT, [5, 8, 3])
    prev = [torch.cat([torch.tensor([EOS]), t[:-1]]) for t in tgt]  # fairseq's teacher forcing
    return right_pad(src), right_pad(prev), right_pad(tgt), (src, prev, tgt)


def vocab_src(tie: str) -> int:
    return V_TGT if tie == "all" else V_SRC


def test_the_family_is_registered_for_translation_only():
    assert families_for("translation") == ["transformer"]
    assert "transformer" not in families_for("language_modeling")
    assert get_family("transformer").task == "translation" == get_family("transformer").model_class.task


def expected_parameters(tie: str, normalize_before: bool = False) -> int:
    """Counted by hand from the dims: layers, then the 3, 2 or 1 embedding matrices."""
    de = D_DEC if tie == "all" else D_ENC
    d, f = D_DEC, FFN
    self_attn = lambda w: 3 * w * w + 3 * w + w * w + w  # noqa: E731  qkv and out_proj
    ffn = lambda w: w * f + f + f * w + w  # noqa: E731
    encoder_layer = self_attn(de) + ffn(de) + 2 * 2 * de
    cross = d * d + d + 2 * d * de + 2 * d + d * d + d  # q_proj, kv_proj (from the encoder width), out_proj
    decoder_layer = self_attn(d) + cross + ffn(d) + 3 * 2 * d
    final_norms = 2 * de + 2 * d if normalize_before else 0
    embeddings = {"none": V_SRC * de + 2 * V_TGT * d, "decoder": V_SRC * de + V_TGT * d, "all": V_TGT * d}[tie]
    return 2 * encoder_layer + 2 * decoder_layer + final_norms + embeddings


@pytest.mark.parametrize("normalize_before", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize("tie,distinct", [("none", 3), ("decoder", 2), ("all", 1)])
def test_tie_modes_hold_three_two_or_one_matrices_and_the_hand_counted_parameters(tie, distinct, normalize_before):
    m = model(tie, encoder_normalize_before=normalize_before, decoder_normalize_before=normalize_before)
    assert m.tie_mode == tie and m.tied == (tie != "none")
    mats = (m.encoder_embedding.weight, m.decoder_embedding.weight, m.output_weight)
    assert len({t.data_ptr() for t in mats}) == distinct
    counts = m.num_parameters()
    assert counts["total"] == expected_parameters(tie, normalize_before) == sum(p.numel() for p in m.parameters())
    assert counts["embedding"] == sum({t.data_ptr(): t.numel() for t in mats}.values())
    keys = set(m.state_dict())
    assert ("encoder.embed_tokens.weight" in keys) == (tie != "all")
    assert ("decoder.embed_out" in keys) == (tie == "none") == (m.separate_head() is not None)
    assert "decoder.embed_tokens.weight" in keys
    assert sum(t.data_ptr() == mats[1].data_ptr() for t in m.state_dict().values()) == 1
    assert (m.decoder.layer_norm is not None) == (m.encoder.layer_norm is not None) == normalize_before


def test_the_tie_modes_start_from_the_same_shared_values():
    """Separate embeddings and the head are drawn last, so at one seed the modes share what they have in common."""
    none, dec = model("none", seed=3).state_dict(), model("decoder", seed=3).state_dict()
    assert all(torch.equal(dec[k], none[k]) for k in dec)
    head = none["decoder.embed_out"]
    assert abs(head.std().item() - D_DEC ** -0.5) < 0.2 * D_DEC ** -0.5  # the tied matrix's scale


@pytest.mark.parametrize("tie", MODES)
def test_pad_rows_stay_zero_after_a_step(tie):
    m = model(tie).train()
    src, prev, tgt, _ = pairs(vocab_src(tie))
    head_pad = m.output_weight[PAD].detach().clone()
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    logits = m(src, prev)
    F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=PAD, reduction="sum").backward()
    opt.step()
    assert m.decoder_embedding.weight.grad is not None
    for emb in (m.encoder_embedding, m.decoder_embedding):
        assert torch.count_nonzero(emb.weight[PAD]) == 0
    assert torch.equal(m.output_weight[PAD], head_pad)  # the -inf pad logit sends it no gradient
    m.check_tie()


@pytest.mark.parametrize("tie", MODES)
def test_source_padding_changes_no_other_row(tie):
    m = model(tie).eval()
    src, prev, _, (src_rows, prev_rows, _) = pairs(vocab_src(tie))
    with torch.no_grad():
        batch = m(src, prev)
        more = m(right_pad(list(src), src.size(1) + 5), prev)  # every sentence padded 5 more
        alone = [m(s[None], p[None])[0] for s, p in zip(src_rows, prev_rows)]  # no padding at all
    torch.testing.assert_close(more, batch, rtol=0, atol=1e-6)
    for i, row in enumerate(alone):
        torch.testing.assert_close(batch[i, :len(row)], row, rtol=0, atol=1e-5)


def test_decoder_logits_at_t_ignore_later_tokens():
    m = model().eval()
    src, prev, _, _ = pairs()
    changed = prev.clone()
    changed[:, 4:] = torch.randint(4, V_TGT, changed[:, 4:].shape)
    with torch.no_grad():
        a, b = m(src, prev), m(src, changed)
    assert torch.equal(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


@pytest.mark.parametrize("normalize_before", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize("tie", MODES)
def test_incremental_decoding_equals_teacher_forcing_also_after_reorder(tie, normalize_before):
    m = model(tie, encoder_normalize_before=normalize_before, decoder_normalize_before=normalize_before).eval()
    src, prev, _, _ = pairs(vocab_src(tie))
    T = prev.size(1)
    with torch.no_grad():
        enc = m.encode(src)
        full = m.decode(prev, enc)
        cache = m.new_cache(src.size(0), T)
        steps = [m.decode(prev[:, :3], enc, cache)] + [m.decode(prev[:, t:t + 1], enc, cache) for t in range(3, 5)]
        assert cache.length == 5 and len(cache.memory) == 2
        torch.testing.assert_close(torch.cat(steps, dim=1), full[:, :5], rtol=0, atol=1e-5)
        order = torch.tensor([2, 0, 0, 1])  # beams: a sentence dropped, one repeated
        cache.reorder(order)
        suffix = torch.randint(4, V_TGT, (4, T - 5), generator=torch.Generator().manual_seed(9))
        enc4 = enc.reorder(order)
        later = [m.decode(suffix[:, i:i + 1], enc4, cache) for i in range(T - 5)]
        reference = m.decode(torch.cat([prev[order, :5], suffix], dim=1), m.encode(src[order]))
    assert cache.length == T
    torch.testing.assert_close(torch.cat(later, dim=1), reference[:, 5:], rtol=0, atol=1e-5)
    torch.testing.assert_close(reference[:, :5], full[order, :5], rtol=0, atol=1e-5)


def test_teacher_forced_nll_equals_a_per_sentence_per_position_loop():
    m = model("decoder").eval()
    src, prev, tgt, (src_rows, prev_rows, tgt_rows) = pairs()
    with torch.no_grad():
        logits = m(src, prev)
        nll = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=PAD, reduction="sum")
        brute = 0.0
        for s, p, t in zip(src_rows, prev_rows, tgt_rows):
            for j in range(len(t)):
                lp = torch.log_softmax(m(s[None], p[None, :j + 1])[0, j].double(), dim=-1)
                brute -= lp[t[j]].item()
    assert nll.item() == pytest.approx(brute, rel=1e-5)


def test_share_all_embeddings_refuses_unequal_widths_or_vocabularies():
    with pytest.raises(UserError, match="--share-all-embeddings needs --encoder-embed-dim"):
        config("none", share_all_embeddings=True)  # encoder 16, decoder 24
    with pytest.raises(UserError, match="--share-all-embeddings.*--joined-dictionary"):
        config("all", src_vocab_size=V_SRC)
    src, tgt = Dictionary(), Dictionary()
    for i in range(10):
        src.add_symbol(f"s{i}")
    for i in range(12):
        tgt.add_symbol(f"t{i}")
    with pytest.raises(UserError, match="--share-all-embeddings.*--joined-dictionary"):
        get_family("transformer").model_class.build(config("all"), src, tgt)
    with pytest.raises(UserError, match="--share-decoder-input-output-embed needs --decoder-output-dim"):
        config("decoder", decoder_output_dim=8)
    with pytest.raises(UserError, match="--share-all-embeddings needs --decoder-output-dim"):
        config("all", decoder_output_dim=8)
    assert config("all").share_decoder_input_output_embed  # as fairseq: one matrix is also the output


def test_build_sizes_the_model_to_both_dictionaries():
    src, tgt = Dictionary(), Dictionary()
    for i in range(10):
        src.add_symbol(f"s{i}")
    for i in range(12):
        tgt.add_symbol(f"t{i}")
    m = build_model("transformer", config("none"), tgt, src_dictionary=src)
    assert m.encoder_embedding.num_embeddings == len(src) and m.output_weight.shape[0] == len(tgt)
    assert m.cfg.padding_idx == tgt.pad()


@pytest.mark.parametrize("tie", MODES)
def test_meta_device_construction_counts_the_same_parameters(tie):
    with torch.device("meta"):
        shell = model(tie)
    assert shell.output_weight.device.type == "meta"
    shell.check_tie()
    assert shell.num_parameters() == model(tie).num_parameters()
@pytest.mark.parametrize("tie", MODES)
def test_checkpoint_round_trip_re_ties_and_keeps_the_outputs(tmp_path, tie):
    m = model(tie).eval()
    with torch.no_grad():
        m.decoder_embedding.weight[5:].add_(1.0)  # not the initial values
    src_d, tgt_d = Dictionary(), Dictionary()
    for i in range(vocab_src(tie) - len(src_d)):
        src_d.add_symbol(f"s{i}")
    for i in range(V_TGT - len(tgt_d)):
        tgt_d.add_symbol(f"t{i}")
    config_dict = {"model_family": "transformer", "model": to_dict(m.cfg)}
    path = ckpt_io.save(tmp_path / "c.safetensors",
                        ckpt_io.Checkpoint(m.state_dict(), config_dict, tgt_d, src_dictionary=src_d))
    stored = [k for k in load_file(str(path)) if k.endswith("embed_tokens.weight")]
    assert sorted(stored) == (["model.decoder.embed_tokens.weight"] if tie == "all" else
                              ["model.decoder.embed_tokens.weight", "model.encoder.embed_tokens.weight"])
    loaded, ckpt = ckpt_io.load_model(path)
    assert ckpt.src_dictionary.to_text() == src_d.to_text() and ckpt.dictionary.to_text() == tgt_d.to_text()
    loaded.check_tie()
    assert type(loaded) is type(m) and loaded.tie_mode == tie
    assert set(loaded.state_dict()) == set(m.state_dict())
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in loaded.state_dict().items())
    src, prev, _, _ = pairs(vocab_src(tie))
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(src, prev), m(src, prev), rtol=0, atol=0)


def dictionary(size: int, prefix: str) -> Dictionary:
    d = Dictionary()
    for i in range(size - len(d)):
        d.add_symbol(f"{prefix}{i}")
    return d


def test_a_joined_dictionary_checkpoint_needs_no_source_dictionary_and_a_wrong_one_is_refused(tmp_path):
    m = model("all")
    config_dict = {"model_family": "transformer", "model": to_dict(m.cfg)}
    joined = ckpt_io.save(tmp_path / "j.safetensors",
                          ckpt_io.Checkpoint(m.state_dict(), config_dict, dictionary(V_TGT, "w")))
    with safe_open(str(joined), framework="pt") as f:
        assert "src_dictionary" not in f.metadata()
    loaded, ckpt = ckpt_io.load_model(joined)
    assert ckpt.src_dictionary is None and loaded.tie_mode == "all"
    wrong = ckpt_io.save(tmp_path / "w.safetensors", ckpt_io.Checkpoint(
        m.state_dict(), config_dict, dictionary(V_TGT, "w"), src_dictionary=dictionary(V_TGT + 1, "s")))
    with pytest.raises(UserError, match=f"model source vocabulary {V_TGT} != its source dictionary's {V_TGT + 1}"):
        ckpt_io.load_model(wrong)


def test_a_family_registered_for_another_task_than_its_class_is_refused():
    from lmtie.models import register_model

    with pytest.raises(ValueError, match="task is 'translation', registered for 'language_modeling'"):
        register_model("translation_as_lm")(get_family("transformer").model_class)


def test_positions_extend_when_sinusoidal_and_are_refused_when_learned():
    c = config().with_positions(100)
    assert (c.max_source_positions, c.max_target_positions) == (100, 100)
    assert config().with_positions(10) == config()
    with pytest.raises(UserError, match="--max-target-positions 64 with --decoder-learned-pos"):
        config(decoder_learned_pos=True).with_positions(100)
    m = model(encoder_learned_pos=True, decoder_learned_pos=True)
    assert m.num_parameters()["embedding"] == V_SRC * D_ENC + 2 * V_TGT * D_DEC + 64 * (D_ENC + D_DEC)
    with pytest.raises(UserError, match="exceeds --max-source-positions 64"):
        m.encode(torch.full((1, 65), 5))


def test_at_width_moves_the_encoder_with_the_decoder_when_they_are_equal():
    c = config("all")
    assert list(c.widths()) == list(range(2, D_DEC + 1, 2))
    small = c.at_width(12)
    assert (small.encoder_embed_dim, small.decoder_embed_dim, small.decoder_ffn_embed_dim) == (12, 12, 16)
    assert build_model("transformer", small).num_parameters()["total"] < model("all").num_parameters()["total"]
    assert config("none").at_width(12).encoder_embed_dim == D_ENC  # a different width stays


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    import copy

    from lmtie.training.activations import checkpoint_activations

    plain = model("decoder", dropout=0.2).train()
    recomputing = copy.deepcopy(plain)
    checkpoint_activations(recomputing)
    recomputing.check_tie()
    src, prev, tgt, _ = pairs()
    results = []
    for m in (plain, recomputing):
        torch.manual_seed(1)  # the same dropout masks: the recomputation replays them
        loss = F.cross_entropy(m(src, prev).flatten(0, 1), tgt.flatten(), ignore_index=PAD, reduction="sum")
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in m.named_parameters()}))
    assert torch.equal(results[0][0], results[1][0])
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, rtol=0, atol=1e-5, msg=name)


def test_transformer_tiny_learns_to_copy_in_a_few_seconds():
    """The tiny size trains on a CPU: 120 Adam steps on a copy task take the loss from ~ln V to under a tenth."""
    from lmtie.models import build_config

    torch.manual_seed(0)
    V = 20
    m = build_model("transformer", build_config("transformer_tiny", src_vocab_size=V, tgt_vocab_size=V, dropout=0.0,
                                                share_all_embeddings=True))
    src = right_pad(sentences(3, 16, V, [3 + i % 5 for i in range(16)]))
    prev = torch.cat([torch.full((16, 1), EOS), src[:, :-1]], dim=1).masked_fill(src.eq(PAD), PAD)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(120):
        loss = F.cross_entropy(m(src, prev).flatten(0, 1), src.flatten(), ignore_index=PAD)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses[::20]


def test_transformer_iwslt_de_en_has_fairseqs_parameter_count():
    """39,469,056 is the "num. model params" fairseq-train logs for IWSLT'14 de-en (dictionaries of 8,848 and
    6,632 symbols) with --arch transformer_iwslt_de_en --share-decoder-input-output-embed."""
    from lmtie.models import build_config

    with torch.device("meta"):
        m = build_model("transformer", build_config("transformer_iwslt_de_en", src_vocab_size=8848,
                                                    tgt_vocab_size=6632, share_decoder_input_output_embed=True))
    assert m.num_parameters()["total"] == 39_469_056


@pytest.mark.parametrize("tie", MODES)
def test_beam_search_with_the_cache_finds_what_it_finds_without(tie):
    """The sequence generator's reorders (beams followed, finished sentences dropped) keep the cache exact."""
    from lmtie.evaluation.sequence_generator import SequenceGenerator

    m = model(tie, seed=4)
    tgt_dict = dictionary(V_TGT, "t")
    src, _, _, _ = pairs(vocab_src(tie), seed=2)
    runs = [SequenceGenerator(m, tgt_dict, beam=3, max_len_a=1, max_len_b=2, use_cache=c).generate(src)
            for c in (True, False)]
    assert [len(hyps[0]["tokens"]) for hyps in runs[0]] == [10, 7, 12]  # each sentence ends at its own limit
    for cached, plain in zip(*runs):
        assert [h["tokens"].tolist() for h in cached] == [h["tokens"].tolist() for h in plain]
        for a, b in zip(cached, plain):
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)
