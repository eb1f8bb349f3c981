"""lmtie-train --task translation end to end: the same trainer (resume after SIGKILL bit-identical),
the tied matrix stored once, a tiny model that learns to reverse sentences (BLEU > 90 by beam search),
and bad input refused in one line."""

import json
import random
import subprocess
import sys

import pytest
import torch

from lmtie import checkpoint as ckpt_io
from lmtie.data.preprocess import PreprocessConfig, preprocess

from train_helpers import env, kill_after_checkpoint, make_corpus, run_train, train_fails

WORDS = "a b c d e f g h i j k l m n".split()
SMALL = ["--arch", "transformer_tiny", "--task", "translation", "--log-format", "none", "--max-tokens", "256",
         "--dropout", "0"]


def reversal_bin(root, pairs=600, joined=True, seed=0):
    """Sentences of 2-7 symbols; the target is the source reversed (in capitals: another vocabulary unless joined)."""
    rng = random.Random(seed)
    for name, n in (("train", pairs), ("valid", 40), ("test", 40)):
        src = [[rng.choice(WORDS) for _ in range(rng.randint(2, 7))] for _ in range(n)]
        (root / f"{name}.de").write_text("".join(" ".join(s) + "\n" for s in src))
        tgt = [[w if joined else w.upper() for w in reversed(s)] for s in src]
        (root / f"{name}.en").write_text("".join(" ".join(t) + "\n" for t in tgt))
    return preprocess(PreprocessConfig(source_lang="de", target_lang="en", trainpref=str(root / "train"),
                                       validpref=str(root / "valid"), testpref=str(root / "test"),
                                       destdir=str(root / ("joined" if joined else "separate")),
                                       joined_dictionary=joined))


@pytest.fixture(scope="module")
def joined(tmp_path_factory):
    return reversal_bin(tmp_path_factory.mktemp("mt"))


def _weights(path):
    return ckpt_io.load(path).model_state


def test_resume_after_sigkill_is_bit_identical(joined, tmp_path):
    common = [str(joined), *SMALL, "--share-all-embeddings", "--criterion", "label_smoothed_cross_entropy",
              "--label-smoothing", "0.1", "--dropout", "0.1", "--max-update", "120", "--seed", "3"]
    run_train(*common, "--save-dir", str(tmp_path / "straight"))
    killed = tmp_path / "killed"
    kill_after_checkpoint([*common, "--save-dir", str(killed), "--save-interval-updates", "10"], killed)
    assert 20 <= ckpt_io.load(killed / "checkpoint_last.safetensors").train_state["step"] < 120
    run_train(*common, "--save-dir", str(killed), "--save-interval-updates", "10")
    a, b = _weights(tmp_path / "straight" / "checkpoint_last.safetensors"), _weights(killed / "checkpoint_last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("flag,matrices", [("--share-all-embeddings", 1), ("--share-decoder-input-output-embed", 2),
                                           (None, 3)])
def test_checkpoint_stores_each_shared_matrix_once(joined, tmp_path, flag, matrices):
    run_train(str(joined), *SMALL, *([flag] if flag else []), "--max-update", "3", "--save-dir", str(tmp_path))
    ck = ckpt_io.load(tmp_path / "checkpoint_last.safetensors")
    vocab = len(ck.dictionary)
    tables = [k for k, v in ck.model_state.items() if v.dim() == 2 and v.shape[0] == vocab]
    assert len(tables) == matrices, tables
    assert all(torch.count_nonzero(ck.model_state[k][ck.dictionary.pad()]) == 0 for k in tables
               if "embed_tokens" in k)  # the pad rows of the embeddings stay zero
    model, _ = ckpt_io.load_model(tmp_path / "checkpoint_last.safetensors")
    model.check_tie()
    assert ck.src_dictionary == ck.dictionary  # joined


def test_reversal_is_learnt_to_bleu_over_90(joined, tmp_path, capsys):
    pytest.importorskip("sacrebleu")
    run_train(str(joined), *SMALL, "--share-all-embeddings", "--max-update", "700", "--save-dir", str(tmp_path),
              "--validate-interval-updates", "700")
    from lmtie.cli.generate import main

    assert main([str(joined), "--path", str(tmp_path / "checkpoint_best.safetensors"), "--gen-subset", "test",
                 "--beam", "4", "--results-path", str(tmp_path / "gen")]) == 0
    out = capsys.readouterr().out
    assert "S-0\t" in out and "H-0\t" in out and "D-0\t" in out and "P-0\t" in out
    import json

    result = json.loads((tmp_path / "gen" / "generate-test.json").read_text())
    assert result["sentences"] == 40 and result["bleu"] > 90, out[-2000:]
    assert "nrefs:1" in result["bleu_signature"]


_fails = train_fails


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    separate = reversal_bin(tmp_path, pairs=30, joined=False)
    _fails(str(separate), *SMALL, "--share-all-embeddings", "--save-dir", str(tmp_path / "c1"),
           match="--joined-dictionary")
    lm = make_corpus(tmp_path)
    _fails(str(lm), *SMALL, "--save-dir", str(tmp_path / "c2"), match="source-lang")
    _fails(str(separate), "--task", "language_modeling", "--arch", "transformer_tiny", "--save-dir",
           str(tmp_path / "c3"), match="--task language_modeling")
    _fails(str(separate), *SMALL, "--source-lang", "fr", "--save-dir", str(tmp_path / "c4"), match="its pair is de-en")
    assert not any(any((tmp_path / c).glob("checkpoint*")) for c in ("c1", "c2", "c3", "c4"))


def test_interactive_translates_stdin(joined, tmp_path):
    run_train(str(joined), *SMALL, "--share-all-embeddings", "--max-update", "2", "--save-dir", str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "lmtie.cli.interactive", str(joined), "--path",
                           str(tmp_path / "checkpoint_last.safetensors"), "--beam", "2"], input="a b c\nd e\n",
                          capture_output=True, text=True, env=env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "S-0\ta b c" and any(l.startswith("H-1\t") for l in lines)


def test_ablation_of_the_three_ties_and_the_matched_untied_model(joined, tmp_path):
    pytest.importorskip("sacrebleu")
    from test_ablate import ablate

    proc = ablate(tmp_path, str(joined), "--arch", "transformer_tiny", "--task", "translation", "--max-tokens", "256",
                  "--log-format", "none", "--arms", "all-tied,tied,untied,untied-matched", "--seeds", "2",
                  "--max-update", "4", "--output", "out", "--no-plot")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = {(r["arm"], r["seed"]): r for r in results["runs"]}
    assert len(rows) == 8
    one = {arm: rows[(arm, 1)] for arm in ("all-tied", "tied", "untied", "untied-matched")}
    vocab, d = len(ckpt_io.load(tmp_path / "out" / "runs" / "untied-seed1" / "checkpoint_last.safetensors").dictionary), 64
    assert one["tied"]["params_unique"] - one["all-tied"]["params_unique"] == vocab * d  # the source embedding
    assert one["untied"]["params_unique"] - one["tied"]["params_unique"] == vocab * d  # the output layer
    matched = one["untied-matched"]  # at this 24-symbol vocabulary no narrower width is closer
    assert not matched["tied"] and not matched["share_all_embeddings"]
    assert abs(matched["params_unique"] - one["all-tied"]["params_unique"]) <= \
        abs(one["untied"]["params_unique"] - one["all-tied"]["params_unique"])
    for r in rows.values():
        assert r["valid_ppl"] > 1 and 0 <= r["test_bleu"] <= 100 and 0 <= r["test_chrf"] <= 100
    md = (tmp_path / "out" / "report.md").read_text()
    assert "test BLEU" in md and "test chrF" in md
    proc = ablate(tmp_path, str(joined), "--arch", "transformer_tiny", "--arms", "tied,tied-pr", "--seeds", "1",
                  "--max-update", "2", "--output", "out2")
    assert proc.returncode == 2 and "tied-pr does not apply to a translation model" in proc.stderr


def test_matched_untied_model_is_sized_to_the_all_tied_one():
    from lmtie.ablation.arms import all_tied, unique_parameters, untied, untied_matched
    from lmtie.models import build_config

    base = build_config("transformer_tiny", src_vocab_size=8000, tgt_vocab_size=8000)
    target, matched = unique_parameters(all_tied(base)), untied_matched(base)
    assert not matched.share_decoder_input_output_embed and not matched.share_all_embeddings
    assert matched.decoder_embed_dim < base.decoder_embed_dim
    others = [untied(base.at_width(w)) for w in base.widths() if w != matched.decoder_embed_dim]
    assert all(abs(unique_parameters(matched) - target) <= abs(unique_parameters(o) - target) for o in others)


@pytest.mark.parametrize("backend", ["pytorch_ddp", "fully_sharded"])
def test_two_processes_match_one_process(joined, tmp_path, backend):
    from train_helpers import metrics

    common = [str(joined), "--arch", "transformer_tiny", "--log-format", "none", "--dropout", "0", "--max-update", "4",
              "--log-interval", "1", "--share-all-embeddings", "--criterion", "label_smoothed_cross_entropy",
              "--label-smoothing", "0.1", "--disable-validation"]
    run_train(*common, "--batch-size", "8", "--save-dir", str(tmp_path / "one"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "lmtie.cli.train", *common, "--batch-size", "4", "--save-dir", str(tmp_path / "two"), "--ddp-backend", backend]
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert [r["step"] for r in one] == [r["step"] for r in two] == [1, 2, 3, 4]
    assert all(abs(a["loss"] - b["loss"]) < 1e-5 for a, b in zip(one, two)), (one, two)
    model, _ = ckpt_io.load_model(tmp_path / "two" / "checkpoint_last.safetensors")
    assert model.tie_mode == "all"


def test_generate_says_which_kind_of_model_it_was_given(joined, tmp_path, capsys):
    from lmtie.cli.generate import main

    run_train(str(joined), *SMALL, "--max-update", "1", "--save-dir", str(tmp_path / "mt"))
    lm_bin = make_corpus(tmp_path)
    run_train(str(lm_bin), "--decoder-layers", "1", "--decoder-embed-dim", "16", "--decoder-ffn-embed-dim", "32",
              "--decoder-attention-heads", "2", "--max-update", "1", "--log-format", "none", "--save-dir",
              str(tmp_path / "lm"))
    mt, lm = str(tmp_path / "mt" / "checkpoint_last.safetensors"), str(tmp_path / "lm" / "checkpoint_last.safetensors")
    for argv, words in (([ "--path", mt, "--prompt", "a"], "--prompt samples from a language model"),
                        ([str(joined), "--path", lm], "a DATA_BIN is for translation models"),
                        ([str(lm_bin), "--path", mt], "cannot tell the language pair"),
                        ([str(joined), "--path", mt, "--beam", "2", "--nbest", "3"], "--nbest 3 is larger")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("lmtie-generate: error:") and words in err[0], err


def test_eval_bleu_logs_scores_and_picks_the_best_checkpoint_by_bleu(joined, tmp_path):
    pytest.importorskip("sacrebleu")
    from train_helpers import metrics

    run_train(str(joined), *SMALL, "--share-all-embeddings", "--max-update", "60", "--validate-interval-updates", "20",
              "--eval-bleu", "--eval-bleu-args", '{"beam": 2}', "--best-checkpoint-metric", "bleu",
              "--maximize-best-checkpoint-metric", "--save-dir", str(tmp_path))
    valid = metrics(tmp_path, "valid")
    assert {20, 40, 60} <= {r["step"] for r in valid}  # and every epoch's end
    assert all(0 <= r["bleu"] <= 100 and 0 <= r["chrf"] <= 100 for r in valid)
    best = ckpt_io.load(tmp_path / "checkpoint_best.safetensors").train_state
    top = max(valid, key=lambda r: (r["bleu"], -r["step"]))
    assert best["step"] == top["step"] and round(best["best_valid_bleu"], 2) == top["bleu"]


def test_eval_bleu_flags_are_checked(joined, tmp_path):
    _fails(str(joined), *SMALL, "--best-checkpoint-metric", "bleu", "--save-dir", str(tmp_path / "a"),
           match="needs --eval-bleu")
    _fails(str(joined), *SMALL, "--eval-bleu", "--eval-bleu-args", "{beam: 2}", "--save-dir", str(tmp_path / "b"),
           match="--eval-bleu-args")
    _fails(str(make_corpus(tmp_path)), "--eval-bleu", "--save-dir", str(tmp_path / "c"), match="--task translation")
