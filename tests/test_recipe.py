"""The auto recipe (issue 12): chosen only without optimiser flags, fitted to --max-update and the width,
printed once and saved; any optimiser flag gives fairseq's defaults for the rest, as before."""

from __future__ import annotations

import json
import math

import pytest

from lmtie import checkpoint as ckpt_io
from lmtie.cli.train import build_parser
from lmtie.config import from_args
from lmtie.training.config import FAIRSEQ_RECIPE, OptimizationConfig
from lmtie.training.optim import lr_at
from lmtie.training.recipe import resolve
from train_helpers import make_corpus, metrics, run_train

# one value per recipe field, none of them the fairseq default
GIVEN = {"--optimizer": "adam", "--lr": "1e-3", "--adam-betas": "(0.8, 0.9)", "--adam-eps": "1e-6",
         "--weight-decay": "0.2", "--embedding-weight-decay": "0.3", "--clip-norm": "0.5",
         "--lr-scheduler": "fixed", "--warmup-updates": "7", "--warmup-init-lr": "1e-5", "--min-lr": "1e-6"}
MODEL = ["--decoder-layers", "1", "--decoder-embed-dim", "32", "--decoder-ffn-embed-dim", "64",
         "--decoder-attention-heads", "2", "--tokens-per-sample", "16", "--batch-size", "4", "--log-format", "none"]


def _optim(*argv: str) -> OptimizationConfig:
    return from_args(OptimizationConfig, build_parser(list(argv)).parse_args(list(argv)))


def test_fairseq_recipe_is_fairseqs_defaults():
    """The values lmtie had as dataclass defaults before the auto recipe (fairseq's, weight decay 0.01)."""
    assert FAIRSEQ_RECIPE == dict(optimizer="adamw", lr=5e-4, adam_betas=(0.9, 0.98), adam_eps=1e-8,
                                  weight_decay=0.01, embedding_weight_decay=0.0, clip_norm=0.0,
                                  lr_scheduler="inverse_sqrt", warmup_updates=0, warmup_init_lr=1e-7, min_lr=0.0)
    assert set(GIVEN) == {"--" + k.replace("_", "-") for k in FAIRSEQ_RECIPE}


def test_no_optimiser_flag_gives_the_auto_recipe():
    o = resolve(_optim("--max-update", "2000"), width=128)
    assert o.recipe == "auto"
    assert (o.lr, o.warmup_updates, o.lr_scheduler, o.min_lr) == (0.5 / 128, 100, "cosine", 0.05 / 128)
    assert (o.adam_betas, o.weight_decay, o.clip_norm) == ((0.9, 0.99), 0.1, 1.0)
    assert resolve(_optim("--max-update", "2000"), width=256).lr == 0.5 / 256  # lr ~ 1/width


@pytest.mark.parametrize("flag", sorted(GIVEN))
def test_any_optimiser_flag_gives_fairseq_defaults_for_the_rest(flag):
    o = resolve(_optim("--max-update", "2000", flag, GIVEN[flag]), width=128)
    key = flag[2:].replace("-", "_")
    assert o.recipe == "fairseq"
    assert getattr(o, key) == build_parser([]).parse_args([flag, GIVEN[flag]]).__dict__[key]
    assert {k: getattr(o, k) for k in FAIRSEQ_RECIPE if k != key} == {k: v for k, v in FAIRSEQ_RECIPE.items()
                                                                       if k != key}


def test_explicit_recipe_flag_wins_and_given_flags_still_override():
    o = resolve(_optim("--max-update", "1000", "--recipe", "auto", "--lr", "2e-3", "--clip-norm", "0"), width=64)
    assert (o.recipe, o.lr, o.clip_norm, o.warmup_updates, o.min_lr) == ("auto", 2e-3, 0.0, 50, pytest.approx(2e-4))
    o = resolve(_optim("--max-update", "1000", "--recipe", "fairseq"), width=64)
    assert {k: getattr(o, k) for k in FAIRSEQ_RECIPE} == FAIRSEQ_RECIPE


def test_auto_without_max_update_falls_back_to_fairseq():
    o = resolve(_optim("--max-epoch", "3"), width=64)
    assert o.recipe == "fairseq" and {k: getattr(o, k) for k in FAIRSEQ_RECIPE} == FAIRSEQ_RECIPE


def test_auto_schedule_follows_its_formula():
    """Linear warm-up over 5% of N, then cosine from 0.5/width to a floor of 10% of it at update N."""
    o = resolve(OptimizationConfig(max_update=400), width=64)
    peak, floor, warm = 0.5 / 64, 0.05 / 64, 20
    assert o.warmup_updates == warm
    assert lr_at(0, o) == pytest.approx(o.warmup_init_lr)
    assert lr_at(warm // 2, o) == pytest.approx(o.warmup_init_lr + (peak - o.warmup_init_lr) / 2)
    assert lr_at(warm, o) == pytest.approx(peak)
    for step in (100, 210, 333):
        progress = (step - warm) / (400 - warm)
        assert lr_at(step, o) == pytest.approx(floor + (peak - floor) * (1 + math.cos(math.pi * progress)) / 2)
    assert lr_at(400, o) == pytest.approx(floor) and lr_at(399, o) > floor


def test_cli_prints_the_recipe_once_and_saves_it(tmp_path):
    corpus = make_corpus(tmp_path)
    save = tmp_path / "auto"
    out = run_train(str(corpus), *MODEL, "--max-update", "20", "--save-dir", str(save))
    lines = [line for line in out.stderr.splitlines() if line.startswith("recipe ")]
    assert len(lines) == 1 and lines[0].startswith("recipe auto") and "lr 0.015625" in lines[0]  # 0.5 / 32
    saved = json.loads((save / "config.json").read_text())["optimization"]
    assert (saved["recipe"], saved["lr"], saved["warmup_updates"], saved["clip_norm"]) == ("auto", 0.5 / 32, 1, 1.0)
    assert ckpt_io.load(save / "checkpoint_last.safetensors").config["optimization"] == saved
    assert metrics(save)[-1]["lr"] < 0.2 * 0.5 / 32  # cosine to near its 10% floor by the last update


def test_an_optimiser_flag_trains_exactly_as_fairseqs_defaults(tmp_path):
    """--lr 5e-4 (fairseq's value, so a switch to the fairseq recipe and nothing else) trains exactly as
    --recipe fairseq with every default; the auto recipe trains differently."""
    corpus = make_corpus(tmp_path)
    common = [str(corpus), *MODEL, "--max-update", "12", "--log-interval", "1"]
    losses = {}
    for name, flags in {"lr": ["--lr", "5e-4"], "fairseq": ["--recipe", "fairseq"], "auto": []}.items():
        run_train(*common, *flags, "--save-dir", str(tmp_path / name))
        losses[name] = [r["loss"] for r in metrics(tmp_path / name)]
    assert len(losses["lr"]) == 12 and losses["lr"] == losses["fairseq"]
    assert losses["auto"] != losses["fairseq"]
