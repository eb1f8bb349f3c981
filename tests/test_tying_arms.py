"""The tying strategies beyond on/off (tied-init, untie-at:K, tied-pr), on every family.

untie-at:K must be one continuous run: the split at K equals a split made by hand in the
checkpoint (weights, loss and both Adam moments), and resuming on either side of K is exact.
"""

import json

import pytest
import torch
from safetensors.torch import load_file

from lmtie import checkpoint as ckpt_io
from lmtie.ablation import ARMS, resolve_arms, unique_parameters
from lmtie.ablation.arms import ARM_PARAMS
from lmtie.cli.train import main as train_main
from lmtie.errors import UserError
from lmtie.models import LlamaConfig, TransformerLMConfig, archs_of, build_model
from lmtie.training.criterion import lm_loss
from train_helpers import TINY, kill_after_checkpoint, make_corpus, metrics, run_train

FAMILY_NAMES = ["llama", "transformer_lm"]  # the decoder-only families (the head keys below are theirs)
HEAD = {"transformer_lm": "decoder.embed_out", "llama": "lm_head.weight"}
EMB = {"transformer_lm": "decoder.embed_tokens.weight", "llama": "model.embed_tokens.weight"}
V, D, FFN, LAYERS, HEADS = 23, 16, 24, 2, 2


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), lines=120)


def arch(family: str) -> str:
    return min(archs_of(family), key=len)  # TINY's flags set the dims


def train(corpus, save, family, *flags):
    argv = [str(corpus), "--arch", arch(family), *TINY, "--dropout", "0.1", "--seed", "3", "--save-dir", str(save),
            "--log-interval", "1", "--log-format", "json", *flags]
    assert train_main(argv) == 0


def _state(path):
    """Weights and optimiser state of a checkpoint file, every tensor by name."""
    return {k: v for k, v in load_file(str(path)).items() if k.startswith(("model.", "optim."))}


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def base_cfg(family: str, **changes):
    cls = TransformerLMConfig if family == "transformer_lm" else LlamaConfig
    extra = {"decoder_kv_heads": 1} if family == "llama" else {}
    return cls(vocab_size=V, padding_idx=1, decoder_embed_dim=D, decoder_ffn_embed_dim=FFN, decoder_layers=LAYERS,
               decoder_attention_heads=HEADS, dropout=0.0, **extra, **changes)


# --- untie-at:K ------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_untie_at_k_equals_a_split_made_by_hand_in_the_checkpoint(corpus, tmp_path, family):
    k = 6
    train(corpus, tmp_path / "auto", family, "--share-decoder-input-output-embed", "--untie-at-update", str(k),
          "--max-update", str(k + 1))
    train(corpus, tmp_path / "hand", family, "--share-decoder-input-output-embed", "--max-update", str(k))
    path = tmp_path / "hand" / "checkpoint_last.safetensors"
    ck = ckpt_io.load(path)
    emb, head = EMB[family], HEAD[family]
    ck.model_state[head] = ck.model_state[emb].clone()
    ck.optim_state[head] = {slot: t.clone() for slot, t in ck.optim_state[emb].items()}  # both moments, the step
    ck.config["model"].update(share_decoder_input_output_embed=False, untie_at_update=k)
    ckpt_io.save(path, ck)
    train(corpus, tmp_path / "hand", family, "--share-decoder-input-output-embed", "--untie-at-update", str(k),
          "--max-update", str(k + 1))

    auto, hand = (_state(tmp_path / d / "checkpoint_last.safetensors") for d in ("auto", "hand"))
    _assert_same(auto, hand)
    assert {f"optim.{head}.exp_avg", f"optim.{head}.exp_avg_sq", f"model.{head}"} <= auto.keys()
    assert not torch.equal(auto[f"model.{head}"], auto[f"model.{emb}"])  # update k+1 moved them apart
    loss = {d: [r["loss"] for r in metrics(tmp_path / d) if r["step"] == k + 1] for d in ("auto", "hand")}
    assert loss["auto"] and loss["auto"][-1] == loss["hand"][-1]
    saved = ckpt_io.load(tmp_path / "auto" / "checkpoint_last.safetensors")
    assert saved.config["model"]["share_decoder_input_output_embed"] is False  # loads as the untied model it is
    assert saved.config["model"]["untie_at_update"] == k


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_resume_before_and_after_the_split_is_bit_identical(corpus, tmp_path, family):
    flags = ["--share-decoder-input-output-embed", "--untie-at-update", "15", "--max-update", "30"]
    straight = tmp_path / "straight"
    train(corpus, straight, family, *flags, "--save-interval-updates", "10", "--keep-interval-updates", "-1")
    before, after = (next(straight.glob(f"checkpoint_*_{n}.safetensors")) for n in (10, 20))
    assert f"model.{HEAD[family]}" not in _state(before) and f"model.{HEAD[family]}" in _state(after)
    assert ckpt_io.load(before).config["model"]["share_decoder_input_output_embed"] is True
    for start in (before, after):
        resumed = tmp_path / f"from-{start.stem}"
        train(corpus, resumed, family, *flags, "--restore-file", str(start))
        _assert_same(_state(straight / "checkpoint_last.safetensors"), _state(resumed / "checkpoint_last.safetensors"))
        assert metrics(resumed)[0]["step"] == int(start.stem.split("_")[-1]) + 1  # it did resume there
        again = [r["loss"] for r in metrics(resumed)]
        assert again == [r["loss"] for r in metrics(straight)][-len(again):]


def test_sigkill_after_the_split_then_resume_is_bit_identical(corpus, tmp_path):
    common = [str(corpus), *TINY, "--share-decoder-input-output-embed", "--untie-at-update", "15",
              "--max-update", "150", "--seed", "7", "--save-interval-updates", "10"]
    run_train(*common, "--save-dir", str(tmp_path / "straight"))
    killed = tmp_path / "killed"
    kill_after_checkpoint([*common, "--save-dir", str(killed)], killed)
    assert 20 <= ckpt_io.load(killed / "checkpoint_last.safetensors").train_state["step"] < 150
    run_train(*common, "--save-dir", str(killed))
    _assert_same(_state(tmp_path / "straight" / "checkpoint_last.safetensors"),
                 _state(killed / "checkpoint_last.safetensors"))


def test_split_model_loads_for_inference_as_untied(corpus, tmp_path):
    train(corpus, tmp_path, "transformer_lm", "--share-decoder-input-output-embed", "--untie-at-update", "2",
          "--max-update", "3")
    model, _ = ckpt_io.load_model(tmp_path / "checkpoint_last.safetensors")
    assert not model.tied and model.separate_head() is not None
    model.check_tie()


def test_untie_registers_a_copy_and_counts_both_matrices():
    for family in FAMILY_NAMES:
        model = build_model(family, base_cfg(family, share_decoder_input_output_embed=True, untie_at_update=4))
        tied_total = model.num_parameters()["total"]
        assert not model.untie_due(3) and model.untie_due(4)
        head = model.untie_()
        emb = model.input_embedding.weight
        assert torch.equal(head, emb) and head.data_ptr() != emb.data_ptr()
        assert model.output_weight is head and not model.tied and not model.untie_due(5)
        assert model.num_parameters()["total"] == tied_total + V * D
        assert HEAD[family] in model.state_dict()
        fresh = build_model(family, model.cfg)  # the config after the split builds the same structure
        assert list(fresh.state_dict()) == list(model.state_dict())
        assert [n for n, _ in fresh.named_parameters()] == [n for n, _ in model.named_parameters()]


# --- tied-init ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_tied_init_starts_with_equal_matrices_that_then_diverge(family):
    torch.manual_seed(0)
    model = build_model(family, ARMS["tied-init"](base_cfg(family)))
    emb, head = model.input_embedding.weight, model.output_weight
    assert head is not emb and torch.equal(head, emb)
    torch.manual_seed(0)
    untied = build_model(family, ARMS["untied"](base_cfg(family)))  # same draws: only the head's values differ
    assert all(torch.equal(a, b) for (n, a), (_, b) in zip(model.named_parameters(), untied.named_parameters())
               if n != HEAD[family])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    tokens = torch.randint(2, V, (3, 9))
    for _ in range(2):
        loss, n = lm_loss(model, tokens[:, :-1], tokens[:, 1:], pad=1)
        (loss / n).backward()
        opt.step()
        opt.zero_grad()
    assert not torch.equal(model.output_weight, model.input_embedding.weight)


def test_tied_init_refuses_a_tied_model_or_other_widths():
    with pytest.raises(UserError, match="needs an untied model"):
        base_cfg("llama", share_decoder_input_output_embed=True, init_output_from_embedding=True)
    cfg = base_cfg("transformer_lm", decoder_output_dim=8, init_output_from_embedding=True)
    with pytest.raises(UserError, match="cannot copy embed_tokens"):
        build_model("transformer_lm", cfg)


# --- tied-pr ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_tied_pr_penalty_equals_its_formula(family):
    torch.manual_seed(1)
    model = build_model(family, ARMS["tied-pr"](base_cfg(family)).replace(output_projection_reg=0.01))
    P = model.output_projection
    assert torch.equal(P, torch.eye(D))  # starts as the plain tied model's function
    with torch.no_grad():
        P.normal_()
    tokens = torch.randint(2, V, (2, 7))
    tokens[1, 4:] = 1  # some pad targets: the penalty counts only real targets
    source, target = tokens[:, :-1], tokens[:, 1:]
    model.train()
    train_loss, n = lm_loss(model, source, target, pad=1)
    model.eval()
    nll, _ = lm_loss(model, source, target, pad=1)
    assert n == int((target != 1).sum())
    by_hand = 0.01 * sum(float(P.detach()[i, j]) ** 2 for i in range(D) for j in range(D))  # lambda * ||P||_F^2
    assert float((train_loss - nll).detach()) == pytest.approx(n * by_hand, rel=1e-5)
    # the logits go through P, then the tied matrix (Press & Wolf: h P E^T)
    features = model(source, features_only=True)
    expected = features @ P.T @ model.input_embedding.weight.T
    expected[..., 1] = float("-inf")
    assert torch.allclose(model(source), expected, atol=1e-5)
    nll_by_hand = torch.nn.functional.cross_entropy(expected.flatten(0, 1), target.flatten(), ignore_index=1,
                                                    reduction="sum")
    assert float(nll.detach()) == pytest.approx(float(nll_by_hand.detach()), rel=1e-5)


def test_tied_pr_model_cannot_be_exported_to_hugging_face(tmp_path):
    from lmtie.interop.hf_export import hf_model_files
    from lmtie.data import Dictionary

    d = Dictionary()
    for w in "a b c".split():
        d.add_symbol(w)
    model = build_model("llama", ARMS["tied-pr"](base_cfg("llama").replace(vocab_size=len(d))))
    with pytest.raises(UserError, match="--output-projection"):
        hf_model_files(model, d)


# --- parameter counts and arm names -----------------------------------------------------------------
def _by_hand(family: str, d: int, tied: bool, projection: bool = False) -> int:
    """Unique parameters from the dims, one formula per family (a tied matrix once)."""
    if family == "transformer_lm":
        ffn = round(FFN * d / D)
        block = (3 * d * d + 3 * d) + (d * d + d) + 2 * 2 * d + (d * ffn + ffn) + (ffn * d + d)
        final_norm = 2 * d
    else:
        ffn = FFN if d == D else max(8, 8 * round(FFN * d / D / 8))
        hd, kv = d // HEADS, 1
        block = d * (HEADS * hd + 2 * kv * hd) + HEADS * hd * d + 2 * d + d * 2 * ffn + ffn * d
        final_norm = d
    return V * d * (1 if tied else 2) + LAYERS * block + final_norm + (d * d if projection else 0)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_arm_counts_its_parameters(family):
    base = base_cfg(family)
    arms = resolve_arms("tied,untied,untied-matched,tied-init,untie-at:5,tied-pr")
    counts = {name: unique_parameters(fn(base)) for name, fn in arms.items()}
    assert counts["tied"] == _by_hand(family, D, tied=True)
    assert counts["untied"] == counts["tied-init"] == _by_hand(family, D, tied=False)
    assert counts["untie-at:5"] == counts["tied"]  # before the split; after it, the untied count:
    split = build_model(family, arms["untie-at:5"](base))
    split.untie_()
    assert split.num_parameters()["total"] == counts["untied"]
    assert counts["tied-pr"] == _by_hand(family, D, tied=True, projection=True)
    matched = arms["untied-matched"](base)
    w = matched.decoder_embed_dim
    assert counts["untied-matched"] == _by_hand(family, w, tied=False)
    others = [abs(_by_hand(family, x, tied=False) - counts["tied"]) for x in base.widths()]
    assert abs(counts["untied-matched"] - counts["tied"]) == min(others)


def test_arm_names_with_a_parameter():
    fn = resolve_arms("tied,untie-at:500")["untie-at:500"]
    cfg = fn(base_cfg("transformer_lm"))
    assert cfg.share_decoder_input_output_embed and cfg.untie_at_update == 500 and fn.__name__ == "untie_at"
    assert "untie-at" in ARM_PARAMS
    for bad, why in (("untie-at", "takes a value"), ("untie-at:x", "not an integer"), ("untie-at:0", ">= 1"),
                     ("tied:3", "takes no value"), ("wide", "unknown arm wide")):
        with pytest.raises(UserError, match=why):
            resolve_arms(f"tied,{bad}")


def test_ablation_runs_the_new_arms_and_reports_them(tmp_path):
    from test_ablate import TINY as ABLATE_TINY
    from test_ablate import ablate
    from test_ablate import make_corpus as make_ablation_corpus

    data = make_ablation_corpus(tmp_path)
    arms = "tied,tied-init,untie-at:2,tied-pr"
    proc = ablate(tmp_path, str(data), *ABLATE_TINY, "--arms", arms, "--seeds", "1", "--max-update", "3",
                  "--output", "out", "--no-plot")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    rows = {r["arm"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    assert set(rows) == set(arms.split(","))
    d, tied = rows["tied"]["decoder_embed_dim"], rows["tied"]["params_unique"]
    assert rows["tied-pr"]["params_unique"] == tied + d * d
    assert rows["untie-at:2"]["params_unique"] == rows["tied-init"]["params_unique"] > tied  # split by the end
    assert (out / "runs" / "untie-at-2-seed1" / "checkpoint_last.safetensors").exists()
    report = (out / "report.md").read_text()
    assert "tied minus untie-at:2" in report and "tied minus tied-pr" in report
    changes = json.loads((out / "results.json").read_text())["settings"]["arm_changes"]
    assert "untie_at_update=2" in changes["untie-at:2"] and "output_projection=True" in changes["tied-pr"]
    assert "init_output_from_embedding=True" in changes["tied-init"]
