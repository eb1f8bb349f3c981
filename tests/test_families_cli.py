"""Every registered family through the commands a user runs: train, resume, bf16, eval-lm, generate,
``lmtie.load`` and the ablation with every built-in arm (compile: ``pytest -m slow``)."""

import json

import pytest
import torch
from safetensors.torch import load_file

import lmtie
from lmtie.ablation.arms import ARM_PARAMS, arms_for
from lmtie.cli.eval_lm import main as eval_main
from lmtie.cli.generate import main as generate_main
from lmtie.cli.train import main as train_main
from lmtie.models import archs_of, families_for
from test_ablate import TINY as ABLATE_TINY
from test_ablate import ablate
from test_ablate import make_corpus as make_ablation_corpus
from train_helpers import TINY, make_corpus

FAMILY_NAMES = families_for("language_modeling")  # lmtie-train/eval-lm/generate are language-model commands


def arch(family: str) -> str:
    return min(archs_of(family), key=len)  # any of its sizes: TINY's flags set the dims


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), lines=120)


def train(corpus, save, family, *flags):
    argv = [str(corpus), "--arch", arch(family), *TINY, "--dropout", "0.1", "--seed", "4", "--save-dir", str(save),
            "--share-decoder-input-output-embed", *flags]
    assert train_main(argv) == 0


def _weights(path):
    return {k: v for k, v in load_file(str(path)).items() if k.startswith(("model.", "optim."))}


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_resume_is_bit_identical_and_the_checkpoint_serves_eval_generate_and_load(corpus, tmp_path, family, capsys):
    train(corpus, tmp_path / "straight", family, "--max-update", "6")
    train(corpus, tmp_path / "resumed", family, "--max-update", "3")
    train(corpus, tmp_path / "resumed", family, "--max-update", "6")
    a = _weights(tmp_path / "straight" / "checkpoint_last.safetensors")
    b = _weights(tmp_path / "resumed" / "checkpoint_last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "straight" / "config.json").read_text())["model_family"] == family

    best = str(tmp_path / "straight" / "checkpoint_best.safetensors")
    capsys.readouterr()
    assert eval_main([str(corpus), "--path", best, "--gen-subset", "valid", "--context-window", "8"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["ppl"] > 1 and metrics["word_ppl"] > 1 and metrics["bits_per_byte"] > 0
    assert generate_main(["--path", best, "--prompt", "the cat", "--max-new-tokens", "5", "--seed", "2"]) == 0
    assert "=== sample 0 ===" in capsys.readouterr().out

    lm = lmtie.load(best, device="cpu")
    assert lm.model.family == family and lm.model.tied
    assert lm.score("the cat sat on a mat\n")["ppl"] > 1
    cached = lm.generate("the dog", max_new_tokens=6, greedy=True)
    assert cached == lm.generate("the dog", max_new_tokens=6, greedy=True, use_cache=False)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_bf16_training_runs(corpus, tmp_path, family):
    train(corpus, tmp_path, family, "--max-update", "2", "--bf16")
    ck = lmtie.checkpoint.load(tmp_path / "checkpoint_last.safetensors")
    assert ck.train_state["step"] == 2
    assert all(torch.isfinite(v).all() for v in ck.model_state.values())


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_compiled_training_gives_the_eager_losses(corpus, tmp_path, family):
    train(corpus, tmp_path / "eager", family, "--max-update", "3", "--dropout", "0", "--log-interval", "1",
          "--log-format", "json")
    train(corpus, tmp_path / "compiled", family, "--max-update", "3", "--dropout", "0", "--log-interval", "1",
          "--log-format", "json", "--compile")
    losses = [[r["loss"] for r in map(json.loads, (tmp_path / d / "metrics.jsonl").read_text().splitlines())
               if r["type"] == "train"] for d in ("eager", "compiled")]
    assert len(losses[0]) == 3 and losses[0] == pytest.approx(losses[1], rel=1e-4)


@pytest.mark.parametrize("family", [f for f in FAMILY_NAMES if f != "transformer_lm"])  # it has tests/test_ablate.py
def test_ablation_runs_every_builtin_arm(tmp_path, family):
    data = make_ablation_corpus(tmp_path)
    names = [f"{a}:2" if a in ARM_PARAMS else a for a in arms_for("language_modeling")]  # untie-at:2: before the end
    arms = ",".join(names)
    # one head: widths in steps of 2, fine enough for this small vocabulary's matched width
    proc = ablate(tmp_path, str(data), "--arch", arch(family), *ABLATE_TINY, "--decoder-attention-heads", "1",
                  "--arms", arms, "--seeds", "1", "--max-update", "3", "--output", "out", "--no-plot")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["runs"]
    assert {r["arm"] for r in rows} == set(names)
    by_arm = {r["arm"]: r for r in rows}
    assert by_arm["tied"]["params_unique"] < by_arm["untied"]["params_unique"]
    assert by_arm["untied-matched"]["decoder_embed_dim"] < by_arm["untied"]["decoder_embed_dim"]
