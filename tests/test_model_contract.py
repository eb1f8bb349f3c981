"""The model protocol's contract, run for every registered family: a new family is tested by being registered.

Each family is built at one tiny size through the fields every language-model family shares
(fairseq's names); two-process DDP/FSDP2 runs for every family are in tests/test_distributed.py.
"""

import pytest
import torch

from lmtie import checkpoint as ckpt_io
from lmtie.config import to_dict
from lmtie.data import Dictionary
from lmtie.models import FAMILIES, build_model, check_tie, families_for
from lmtie.training.config import OptimizationConfig
from lmtie.training.criterion import lm_loss
from lmtie.training.optim import build_optimizer

V, PAD = 40, 1
FAMILY_NAMES = families_for("language_modeling")  # the encoder-decoder ones: tests/test_seq2seq_model.py


def tiny_config(family: str, tied: bool, **kw):
    values = dict(vocab_size=V, padding_idx=PAD, decoder_embed_dim=16, decoder_ffn_embed_dim=32, decoder_layers=2,
                  decoder_attention_heads=2, dropout=0.0, max_target_positions=64,
                  share_decoder_input_output_embed=tied)
    return FAMILIES[family].config_class(**{**values, **kw})


def tiny(family: str, tied: bool, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_model(family, tiny_config(family, tied, **kw))


def padded_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(source, target) of 4 rows, the last two right-padded with <pad>."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, V, (4, 13), generator=g)
    tokens[2, 8:] = PAD
    tokens[3, 5:] = PAD
    return tokens[:, :-1], tokens[:, 1:]


def test_every_family_is_under_test():
    assert {"transformer_lm", "llama"} <= set(FAMILY_NAMES)
    assert set(FAMILIES) == set(FAMILY_NAMES) | set(families_for("translation"))


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_the_tie_is_one_parameter_and_one_state_dict_key(family):
    tied, untied = tiny(family, True), tiny(family, False)
    emb = tied.input_embedding.weight
    assert tied.output_weight is emb and tied.separate_head() is None
    assert sum(p is emb for p in tied.parameters()) == 1
    assert untied.output_weight is not untied.input_embedding.weight
    head = untied.output_head_key
    assert head in untied.state_dict() and head not in tied.state_dict()
    assert set(untied.state_dict()) - set(tied.state_dict()) == {head}
    assert sum(t.data_ptr() == emb.data_ptr() for t in tied.state_dict().values()) == 1


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_tied_and_untied_counts_differ_by_v_times_d_out(family):
    t, u = tiny(family, True), tiny(family, False)
    d_out = u.output_weight.shape[1]
    assert u.num_parameters()["total"] - t.num_parameters()["total"] == V * d_out
    assert u.num_parameters()["non_embedding"] == t.num_parameters()["non_embedding"]
    assert t.num_parameters()["total"] == sum(p.numel() for p in t.parameters())


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_tied_and_untied_start_from_the_same_shared_values(family):
    """The untied head is drawn last, so at one seed the arms of an ablation share every other tensor."""
    t, u = tiny(family, True, seed=5).state_dict(), tiny(family, False, seed=5).state_dict()
    assert all(torch.equal(t[k], u[k]) for k in t)
    head = tiny(family, False).output_weight
    scale = head.shape[1] ** -0.5  # the tied matrix's scale (the Embedding factory's)
    assert abs(head.std().item() - scale) < 0.2 * scale


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_pad_row_stays_zero_and_a_batch_is_overfit(family, tied):
    model = tiny(family, tied)
    assert torch.count_nonzero(model.input_embedding.weight[PAD]) == 0
    opt = build_optimizer(model, OptimizationConfig(lr=1e-2, weight_decay=0.1, embedding_weight_decay=0.1))
    source, target = padded_batch()
    losses = []
    for _ in range(60):
        loss, n = lm_loss(model, source, target, PAD)
        (loss / n).backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item() / n)
    assert torch.count_nonzero(model.input_embedding.weight[PAD]) == 0
    assert losses[-1] < 0.25 * losses[0], losses[::10]
    check_tie(model)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_cached_decoding_equals_the_full_forward(family):
    model = tiny(family, True).double().eval()
    tokens = torch.randint(4, V, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(tokens)
        cache = model.new_cache(2, 12)
        steps = [model(tokens[:, :5], cache)] + [model(tokens[:, i:i + 1], cache) for i in range(5, 12)]
    assert cache.length == 12
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_checkpoint_round_trip_keeps_the_tie_and_the_weights(tmp_path, family, tied):
    model = tiny(family, tied)
    with torch.no_grad():
        model.input_embedding.weight[5:].add_(1.0)  # not the initial values
    d = Dictionary()
    for i in range(V - len(d)):
        d.add_symbol(f"w{i}")
    config = {"model_family": family, "model": to_dict(model.cfg)}
    path = ckpt_io.save(tmp_path / "c.safetensors", ckpt_io.Checkpoint(model.state_dict(), config, d))
    loaded, _ = ckpt_io.load_model(path)
    assert type(loaded) is type(model) and loaded.tied == tied
    assert (loaded.output_weight is loaded.input_embedding.weight) == tied
    ref = model.state_dict()
    assert set(loaded.state_dict()) == set(ref)
    assert all(torch.equal(v, ref[k]) for k, v in loaded.state_dict().items())
    tokens = torch.randint(4, V, (1, 9))
    torch.testing.assert_close(loaded.eval()(tokens), model.eval()(tokens))


def test_a_checkpoint_without_model_family_loads_as_transformer_lm(tmp_path):
    """lmtie 0.1 wrote no ``model_family``: its checkpoints still load, as the fairseq family."""
    model = tiny("transformer_lm", True)
    d = Dictionary()
    for i in range(V - len(d)):
        d.add_symbol(f"w{i}")
    path = ckpt_io.save(tmp_path / "old.safetensors",
                        ckpt_io.Checkpoint(model.state_dict(), {"model": to_dict(model.cfg)}, d))
    loaded, _ = ckpt_io.load_model(path)
    assert loaded.family == "transformer_lm" and loaded.tied
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
