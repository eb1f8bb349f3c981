"""fairseq users' command lines: the flag table, the recipe lines of fairseq's language-model README run
unchanged at tiny size, prefixes refused, the schedulers' formulas, the reset flags on resume, the
epoch intervals and validation subsets, and activation checkpointing."""

from __future__ import annotations

import copy
import importlib
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lmtie import checkpoint as ckpt_io
from lmtie.cli import fairseq_flags
from lmtie.cli.train import build_parser as train_parser
from lmtie.cli.train import main as train_main
from lmtie.data import PreprocessConfig, batch_indices, preprocess
from lmtie.models import FAMILIES, archs_of, build_config, families_for
from lmtie.training.activations import checkpoint_activations
from lmtie.training.config import OptimizationConfig
from lmtie.training.criterion import lm_loss
from lmtie.training.optim import lr_at, plateau_step
from train_helpers import TINY, WORDS, env, metrics

CLI_MODULES = ("preprocess", "train", "eval_lm", "generate", "ablate", "export")


def _text(path: Path, lines: int, seed: int) -> None:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(lines))
                    + "\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fsq")
    for split, n in (("train", 40), ("valid", 8), ("test", 8)):
        _text(root / f"{split}.txt", n, seed=len(split))
    return preprocess(PreprocessConfig(trainpref=str(root / "train.txt"), validpref=str(root / "valid.txt"),
                                       testpref=str(root / "test.txt"), destdir=str(root / "bin")))


def _train(data: Path, save: Path, *extra: str) -> int:
    return train_main([str(data), *TINY, "--save-dir", str(save), "--warmup-updates", "0", *extra])


def _state(save: Path, name: str = "checkpoint_last") -> dict:
    return ckpt_io.load(ckpt_io.resolve(save / name)).train_state


# --- the table and the parsers ------------------------------------------------------------------------------
@pytest.mark.parametrize("module", CLI_MODULES)
def test_every_cli_parser_refuses_prefix_abbreviations(module):
    parser = importlib.import_module(f"lmtie.cli.{module}").build_parser()
    assert parser.allow_abbrev is False


def test_a_prefix_of_a_flag_is_an_error_not_another_flag(corpus, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _train(corpus, tmp_path / "s", "--validate-interval-upd", "5")
    assert e.value.code == 2 and "unrecognized arguments: --validate-interval-upd" in capsys.readouterr().err
    args = train_parser([]).parse_args(["--save-interval", "3", "--validate-interval", "2"])
    assert (args.save_interval, args.save_interval_updates, args.validate_interval,
            args.validate_interval_updates) == (3, 0, 2, 0)  # epochs, as in fairseq: not the -updates flags


@pytest.mark.parametrize("tool", fairseq_flags.ALL)
def test_every_implemented_flag_kept_as_given_is_a_flag_of_that_tool(tool):
    module = {"train": "train", "eval-lm": "eval_lm", "preprocess": "preprocess"}[tool]
    known = importlib.import_module(f"lmtie.cli.{module}").build_parser()._option_string_actions
    kept = [f for f in fairseq_flags.entries(tool) if f.status == "implemented" and f.becomes is None]
    assert [f.flag for f in kept if f.flag not in known] == []
    for f in fairseq_flags.entries(tool):  # and every replacement is lmtie's own spelling
        assert all(t in known for t in (f.becomes or ()) if t.startswith("--"))


def test_translate_drops_notices_maps_flags_and_refuses_with_the_alternative():
    said = []
    out = fairseq_flags.translate("train", ["--task", "language_modeling", "bin", "--num-workers", "4", "--fp16",
                                            "--ddp-backend=no_c10d", "--criterion", "cross_entropy", "--lr", "1"],
                                  said.append)
    assert out == ["--task", "language_modeling", "bin", "--bf16", "--ddp-backend", "pytorch_ddp", "--criterion",
                   "cross_entropy", "--lr", "1"]  # --task and --criterion are lmtie-train's own flags
    assert len(said) == 3 and all("\n" not in s for s in said)
    with pytest.raises(fairseq_flags.UserError, match="lmtie-generate DATA --path"):
        fairseq_flags.translate("eval-lm", ["--task", "translation"], said.append)
    for argv, words in ((["--criterion", "adaptive_loss"], "--criterion cross_entropy"),
                        (["--user-dir", "x"], "@register_model"),
                        (["--optimizer", "nag"], "--optimizer adam"), (["--distributed-world-size", "8"], "torchrun"),
                        (["--offload-activations"], "--checkpoint-activations")):
        with pytest.raises(fairseq_flags.UserError, match=words):
            fairseq_flags.translate("train", argv, said.append)
    assert fairseq_flags.translate("eval-lm", ["--remove-bpe", "--quiet", "bin"], said.append) == ["bin"]
    assert fairseq_flags.translate("preprocess", ["--dataset-impl", "mmap", "--cpu"], said.append) == []
    with pytest.raises(fairseq_flags.UserError, match="--srcdict"):
        fairseq_flags.translate("preprocess", ["--dict-only"], said.append)


# --- fairseq's README, unchanged ------------------------------------------------------------------------------
# examples/language_model/README.md of fairseq: the transformer_lm recipe and its eval line; TEXT is the prepared
# WikiText-103 directory, $TEXT expanded. Only sizes are appended (later flags win, as a user would override them).
README_PREPROCESS = ("--only-source --trainpref {T}/wiki.train.tokens --validpref {T}/wiki.valid.tokens "
                     "--testpref {T}/wiki.test.tokens --destdir data-bin/wikitext-103 --workers 20")
README_TRAIN = ("--task language_modeling data-bin/wikitext-103 --save-dir checkpoints/transformer_wikitext-103 "
                "--arch transformer_lm --share-decoder-input-output-embed --dropout 0.1 --optimizer adam "
                "--adam-betas '(0.9, 0.98)' --weight-decay 0.01 --clip-norm 0.0 --lr 0.0005 "
                "--lr-scheduler inverse_sqrt --warmup-updates 4000 --warmup-init-lr 1e-07 --tokens-per-sample 512 --sample-break-mode none "
                "--max-tokens 2048 --update-freq 16 --fp16 --max-update 50000")
README_EVAL = ("data-bin/wikitext-103 --path checkpoints/transformer_wiki103/checkpoint_best.pt --batch-size 2 "
               "--tokens-per-sample 512 --context-window 400")
# the older README's adaptive-input recipe: its flags that lmtie does not have are refused, one line each
OLD_README_TRAIN = ("--task language_modeling data-bin/wikitext-103 --save-dir checkpoints/transformer_wikitext-103 "
                    "--arch transformer_lm_wiki103 --max-update 286000 --max-lr 1.0 --t-mult 2 --lr-period-updates "
                    "270000 --lr-scheduler cosine --lr-shrink 0.75 --warmup-updates 16000 --warmup-init-lr 1e-07 "
                    "--min-lr 1e-09 --optimizer nag --lr 0.0001 --clip-norm 0.1 --criterion adaptive_loss "
                    "--max-tokens 3072 --update-freq 3 --tokens-per-sample 3072 --seed 1 --sample-break-mode none "
                    "--skip-invalid-size-inputs-valid-test --ddp-backend=no_c10d")


def _argv(line: str) -> list[str]:
    import shlex

    return shlex.split(line)


def _run(tool: str, line: str, *extra: str) -> subprocess.CompletedProcess:
    """A command line as a user runs it: its own process (preprocess's 20 workers fork from a fresh one)."""
    return subprocess.run([sys.executable, "-m", f"lmtie.cli.{tool}", *_argv(line), *extra], env=env(),
                          capture_output=True, text=True, timeout=300)


def test_fairseq_readme_recipe_runs_unchanged_at_tiny_size(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = "examples/language_model/wikitext-103"
    for split, n in (("train", 60), ("valid", 10), ("test", 10)):
        _text(Path(text) / f"wiki.{split}.tokens", n, seed=n)
    assert _run("preprocess", README_PREPROCESS.format(T=text)).returncode == 0
    sizes = ["--arch", "transformer_lm_tiny", "--max-update", "3", "--tokens-per-sample", "16", "--max-tokens", "64"]
    trained = _run("train", README_TRAIN, *sizes, "--log-format", "none")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "notice: --fp16: " in trained.stderr
    assert trained.stderr.count("weight decay: 0.01 on ") == 1  # once, and embeddings and norms are not decayed
    assert "0 on 3,072 embedding parameters (embed_tokens.weight); 0 on 3,584 no_decay" in trained.stderr
    best = Path("checkpoints/transformer_wikitext-103/checkpoint_best.safetensors")
    assert best.exists() and _state(best.parent)["step"] == 3
    Path("checkpoints/transformer_wiki103").symlink_to("transformer_wikitext-103")  # the README's other name for it
    scored = _run("eval_lm", README_EVAL)
    assert scored.returncode == 0 and "Perplexity" in scored.stdout, scored.stderr[-2000:]
    old = _run("train", OLD_README_TRAIN)
    assert old.returncode == 2 and old.stderr.strip().endswith("(or use --lr-scheduler polynomial_decay)")
    assert "error: --max-lr 1.0: lmtie's cosine is one period" in old.stderr


# --- schedulers --------------------------------------------------------------------------------------------
def test_polynomial_decay_is_fairseqs_formula():
    cfg = OptimizationConfig(lr=1e-3, lr_scheduler="polynomial_decay", warmup_updates=10, total_num_update=110,
                             end_learning_rate=1e-5, power=2.0)
    assert lr_at(0, cfg) == 0.0 and lr_at(5, cfg) == pytest.approx(5e-4) and lr_at(10, cfg) == pytest.approx(1e-3)
    assert lr_at(60, cfg) == pytest.approx((1e-3 - 1e-5) * 0.5 ** 2 + 1e-5)  # half way: (1/2)^power of the range
    assert lr_at(110, cfg) == lr_at(500, cfg) == 1e-5
    linear = OptimizationConfig(lr=1.0, lr_scheduler="polynomial_decay", max_update=100)  # total defaults to it
    assert [lr_at(s, linear) for s in (0, 25, 99)] == pytest.approx([1.0, 0.75, 0.01])


@pytest.mark.parametrize("patience,maximize", [(0, False), (2, False), (1, True)])
def test_reduce_lr_on_plateau_shrinks_as_torchs_scheduler(patience, maximize):
    cfg = OptimizationConfig(lr=0.5, lr_scheduler="reduce_lr_on_plateau", lr_shrink=0.25, lr_patience=patience)
    ref_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, mode="max" if maximize else "min", factor=0.25,
                                                     patience=patience, threshold=1e-4)
    losses = [5.0, 4.0, 4.0, 3.9999, 4.1, 3.0, 3.0, 3.0, 3.0, 2.0, 2.5, 2.5, 2.5]
    best, bad, shrinks = None, 0, 0
    for loss in losses:
        best, bad, shrink = plateau_step(loss, best, bad, cfg, maximize)
        shrinks += shrink
        ref.step(loss)
        assert lr_at(100, cfg, shrinks) == pytest.approx(ref_opt.param_groups[0]["lr"])
    assert shrinks > 0


def test_batches_are_cut_to_the_required_multiple():
    sizes = [4] * 20
    assert [len(b) for b in batch_indices(range(20), max_tokens=44, sizes=sizes)] == [11, 9]
    assert [len(b) for b in batch_indices(range(20), max_tokens=44, sizes=sizes, multiple=8)] == [8, 8, 4]
    assert [len(b) for b in batch_indices(range(20), max_tokens=20, sizes=sizes, multiple=8)] == [5, 5, 5, 5]


# --- resume with the reset flags ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plateaued(corpus, tmp_path_factory) -> Path:
    """Two epochs at a learning rate too small to improve: the plateau shrank it once."""
    save = tmp_path_factory.mktemp("plateau") / "run"
    assert _train(corpus, save, "--max-epoch", "2", "--lr-scheduler", "reduce_lr_on_plateau", "--lr", "1e-9",
                  "--lr-patience", "0", "--log-interval", "1") == 0
    st = _state(save)
    assert st["epoch"] == 3 and st["lr_shrinks"] == 1 and st["step"] % 2 == 0
    return save


def _resume(corpus, plateaued, tmp_path, *flags) -> tuple[dict, dict, list[dict]]:
    import shutil

    save = tmp_path / "resumed"
    shutil.copytree(plateaued, save)
    assert _train(corpus, save, "--max-epoch", "3", "--lr-scheduler", "reduce_lr_on_plateau", "--lr", "1e-9",
                  "--lr-patience", "0", "--log-interval", "1", *flags) == 0
    records = [r for r in metrics(save) if r["step"] > 0]
    return _state(plateaued), _state(save), records


def test_resume_without_reset_continues_everything(corpus, plateaued, tmp_path):
    before, after, records = _resume(corpus, plateaued, tmp_path)
    per_epoch = before["step"] // 2
    assert after["step"] == before["step"] + per_epoch and after["epoch"] == 4
    assert records[-1]["lr"] == pytest.approx(1e-10)  # shrunk once, still
    assert after["tokens_seen"] > before["tokens_seen"]


@pytest.mark.parametrize("flag", ["--reset-lr-scheduler", "--reset-dataloader", "--reset-optimizer",
                                  "--reset-meters"])
def test_each_reset_flag_resets_what_it_names(corpus, plateaued, tmp_path, flag):
    before, after, records = _resume(corpus, plateaued, tmp_path, flag)
    per_epoch = before["step"] // 2
    if flag == "--reset-lr-scheduler":  # back to --lr; the epoch-3 validation is the plateau's first again
        assert records[-1]["lr"] == pytest.approx(1e-9) and after["lr_shrinks"] == 0
        assert after["step"] == before["step"] + per_epoch
    elif flag == "--reset-dataloader":  # epochs 1..3 again, on from the same update count
        assert after["epoch"] == 4 and after["step"] == before["step"] + 3 * per_epoch
    elif flag == "--reset-optimizer":  # update count (and Adam's step) from 0; data position kept
        assert after["step"] == per_epoch and after["epoch"] == 4
        optim = ckpt_io.load(ckpt_io.resolve(tmp_path / "resumed" / "checkpoint_last")).optim_state
        assert {float(slots["step"]) for slots in optim.values()} == {float(per_epoch)}
    else:  # the counters restart: only this session's tokens are counted
        assert after["step"] == before["step"] + per_epoch
        assert 0 < after["tokens_seen"] < before["tokens_seen"]
        assert after["best_valid_loss"] == pytest.approx(after["last_valid_loss"])


# --- epochs, subsets and what is written ---------------------------------------------------------------------
def test_save_and_validate_intervals_count_epochs(corpus, tmp_path):
    save = tmp_path / "s"
    assert _train(corpus, save, "--max-epoch", "4", "--save-interval", "2", "--validate-interval", "2") == 0
    assert sorted(p.name for p in save.glob("checkpoint[0-9]*")) == ["checkpoint2.safetensors",
                                                                   "checkpoint4.safetensors"]
    assert [r["epoch"] for r in metrics(save, "valid")] == [2, 4]


def test_each_valid_subset_is_validated_and_the_first_picks_best(corpus, tmp_path, capsys):
    save = tmp_path / "s"
    assert _train(corpus, save, "--max-epoch", "2", "--valid-subset", "valid,test",
                  "--maximize-best-checkpoint-metric") == 0
    valid, test = metrics(save, "valid"), metrics(save, "valid_test")
    assert len(valid) == len(test) == 2 and valid[0]["loss"] != test[0]["loss"]
    best = _state(save)["best_valid_loss"] / math.log(2)
    assert best == pytest.approx(max(r["loss"] for r in valid))  # maximised, over the first subset only
    assert _train(corpus, tmp_path / "t", "--valid-subset", "valid,tset") == 2
    assert "has no 'tset' split" in capsys.readouterr().err


@pytest.mark.parametrize("flag,written", [("--disable-validation", {"checkpoint_last", "checkpoint1"}),
                                          ("--no-save", set()),
                                          ("--no-last-checkpoints", {"checkpoint_best", "checkpoint1"})])
def test_disable_validation_no_save_and_no_last_checkpoints(corpus, tmp_path, flag, written):
    save = tmp_path / "s"
    assert _train(corpus, save, "--max-epoch", "1", flag) == 0
    assert {p.name.split(".")[0] for p in save.glob("checkpoint*")} == written
    assert bool(metrics(save, "valid")) == (flag != "--disable-validation")


def test_stop_min_lr_stops_the_decay(corpus, tmp_path):
    save = tmp_path / "s"
    assert _train(corpus, save, "--no-save", "--lr-scheduler", "polynomial_decay", "--total-num-update", "10",
                  "--max-update", "100", "--stop-min-lr", "5e-4", "--log-interval", "1") == 0
    assert metrics(save)[-1]["step"] == 5  # lr 1e-3 * (1 - s/10) <= 5e-4 from s = 5 on: five updates ran


# --- activation checkpointing and the model flags -----------------------------------------------------------------
@pytest.mark.parametrize("family", families_for("language_modeling"))
def test_checkpoint_activations_give_the_same_loss_and_gradients(family):
    cfg = build_config(archs_of(family)[0], vocab_size=40, padding_idx=1, decoder_layers=2, decoder_embed_dim=32,
                       decoder_ffn_embed_dim=64, decoder_attention_heads=4, dropout=0.2)
    if hasattr(cfg, "decoder_kv_heads"):
        cfg = cfg.replace(decoder_kv_heads=2)
    torch.manual_seed(0)
    plain = FAMILIES[family].model_class.build(cfg).train()
    recomputing = copy.deepcopy(plain)
    checkpoint_activations(recomputing)
    tokens = torch.randint(4, 40, (3, 12))
    results = []
    for model in (plain, recomputing):
        torch.manual_seed(1)  # the same dropout masks: the recomputation replays them
        loss, _ = lm_loss(model, tokens[:, :-1], tokens[:, 1:], 1)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    assert torch.equal(results[0][0], results[1][0])
    assert results[0][1].keys() == results[1][1].keys()
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, rtol=0, atol=1e-6, msg=name)


def test_no_token_positional_embeddings_leave_only_order_from_the_mask():
    same = torch.full((1, 8), 5)
    for flag, position_free in ((False, False), (True, True)):
        cfg = build_config("transformer_lm_tiny", vocab_size=16, padding_idx=1, dropout=0.0,
                           no_token_positional_embeddings=flag, layernorm_embedding=True)
        logits = FAMILIES["transformer_lm"].model_class.build(cfg).eval()(same)[0]
        assert torch.allclose(logits, logits[:1].expand_as(logits), atol=1e-5) == position_free


def test_a_model_without_positions_exports_exactly_and_an_embedding_norm_is_refused(corpus, tmp_path):
    transformers = pytest.importorskip("transformers")
    from lmtie.checkpoint import load_model
    from lmtie.interop import export_hf

    save = tmp_path / "s"
    assert _train(corpus, save, "--max-update", "2", "--no-token-positional-embeddings",
                  "--share-decoder-input-output-embed") == 0
    export_hf(save / "checkpoint_last.safetensors", tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    model, _ = load_model(save / "checkpoint_last.safetensors", torch.device("cpu"))
    tokens = torch.randint(4, 20, (2, 12))
    with torch.no_grad():
        ours, theirs = model.eval()(tokens), hf(tokens).logits
    keep = torch.isfinite(ours)  # <pad> is masked in lmtie only
    torch.testing.assert_close(theirs[keep], ours[keep], rtol=0, atol=1e-4)
    assert _train(corpus, tmp_path / "n", "--max-update", "1", "--layernorm-embedding") == 0
    with pytest.raises(fairseq_flags.UserError, match="--layernorm-embedding"):
        export_hf(tmp_path / "n" / "checkpoint_last.safetensors", tmp_path / "hf2")
