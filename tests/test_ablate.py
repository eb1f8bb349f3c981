"""lmtie-ablate: paired runs (same batches, same initial values), resume, and the report's arithmetic."""

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lmtie.ablation import (AblationConfig, ARMS, paired_difference, plan_runs, register_arm, t_critical,
                            unique_parameters)
from lmtie.ablation.measure import split_head
from lmtie.ablation.report import arm_summary, best_update, differences, plot_curves, report_markdown
from lmtie.cli.ablate import main
from lmtie.data import PreprocessConfig, load_manifest, preprocess
from lmtie.errors import UserError
from lmtie.models import build_config
from lmtie.training import DataConfig, OptimizationConfig, RunConfig
from lmtie import checkpoint as ckpt_io
from lmtie.training.setup import build

WORDS = "the king and queen of a small town sat by red fire with old dog near blue sea".split()
TINY = ["--decoder-layers", "1", "--decoder-embed-dim", "32", "--decoder-ffn-embed-dim", "64",
        "--decoder-attention-heads", "2", "--tokens-per-sample", "16", "--batch-size", "4", "--lr", "2e-3",
        "--warmup-updates", "10", "--log-format", "none"]
ABLATE = ["--arms", "tied,untied", "--seeds", "2", "--max-update", "200", "--save-interval-updates", "100",
          "--output", "out"]


def make_corpus(root: Path) -> Path:
    rng = random.Random(0)
    for name, n in (("train", 200), ("valid", 20), ("test", 20)):
        lines = (" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n))
        (root / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return preprocess(PreprocessConfig(trainpref=str(root / "train.txt"), validpref=str(root / "valid.txt"),
                                       testpref=str(root / "test.txt"), destdir=str(root / "bin")))


def ablate(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "lmtie.cli.ablate", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory):
    """A finished 2 arms x 2 seeds ablation (200 updates each) in WORK/out; tests copy it before changing it."""
    work = tmp_path_factory.mktemp("ablation")
    proc = ablate(work, str(corpus), *TINY, *ABLATE)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return work


def copy_of(work: Path, tmp_path: Path) -> Path:
    shutil.copytree(work / "out", tmp_path / "out")
    return tmp_path


def results(work: Path) -> dict:
    return json.loads((work / "out" / "results.json").read_text())


# --- statistics and table arithmetic on hand-made numbers -------------------------------------

def test_t_critical_matches_printed_two_sided_95_table():
    # two-sided 95% values of Student's t as printed in standard tables (e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2)
    for dof, printed in ((1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262), (30, 2.042)):
        assert t_critical(dof) == pytest.approx(printed, abs=6e-4)


def test_paired_difference_ci_by_hand():
    d = paired_difference([10.0, 12.0, 14.0], [9.0, 10.0, 12.0])  # differences 1, 2, 2
    assert d["diffs"] == [1.0, 2.0, 2.0] and d["mean"] == pytest.approx(5 / 3)
    sd = (((1 - 5 / 3) ** 2 + 2 * (2 - 5 / 3) ** 2) / 2) ** 0.5  # = 0.57735
    half = 4.303 * sd / 3 ** 0.5  # t(0.975, 2 dof) * sd / sqrt(n) = 1.4343
    assert d["std"] == pytest.approx(sd) and d["low"] == pytest.approx(5 / 3 - half, abs=1e-3)
    assert d["high"] == pytest.approx(5 / 3 + half, abs=1e-3)
    assert paired_difference([3.0], [1.0])["low"] is None  # one pair: no interval


def _row(arm, seed, valid, train, params):
    return {"arm": arm, "seed": seed, "valid_ppl": valid, "train_ppl": train, "params_unique": params,
            "data_digest": f"d{seed}"}


def test_report_tables_and_differences_by_hand():
    rows = [_row("tied", 1, 100.0, 60.0, 10), _row("tied", 2, 110.0, 70.0, 10), _row("tied", 3, 120.0, 80.0, 10),
            _row("untied", 3, 121.0, 70.0, 15), _row("untied", 1, 103.0, 50.0, 15), _row("untied", 2, 112.0, 60.0, 15)]
    tied = arm_summary([r for r in rows if r["arm"] == "tied"])
    assert tied["valid_ppl"]["mean"] == 110.0 and tied["valid_ppl"]["std"] == pytest.approx(10.0)
    diff = differences({"tied": rows[:3], "untied": sorted(rows[3:], key=lambda r: r["seed"])}, "tied")["untied"]
    assert diff["valid_ppl"]["diffs"] == [-3.0, -2.0, -1.0]  # paired by seed, not by list position
    assert diff["valid_ppl"]["low"] == pytest.approx(-2 - 4.303 / 3 ** 0.5, abs=1e-3)
    assert diff["train_ppl"]["mean"] == 10.0 and diff["train_ppl"]["std"] == 0.0
    text = report_markdown(rows, ["tied", "untied"], _settings())
    assert "| valid ppl | 110.00 ± 10.00 | 100.00 | 110.00 | 120.00 |" in text
    assert "| valid ppl | -2.00 | [-4.48, 0.48] | -3.00, -2.00, -1.00 |" in text
    assert "| unique parameters | -5 | [-5, -5] | -5, -5, -5 |" in text
    assert "Identical batches within each seed (data digests equal): yes" in text


def test_report_names_the_update_of_each_runs_best_validation():
    rows = [{**_row("tied", 1, 90.0, 60.0, 10), "valid_curve": [[100, 120.0], [200, 90.0], [300, 95.0]]},
            {**_row("tied", 2, 90.0, 60.0, 10), "valid_curve": [[100, 130.0], [200, 90.0], [400, 90.0]]}]
    assert [best_update(r) for r in rows] == [200, 200]  # the earliest of equal minima, as checkpoint_best
    assert "| update of the best valid loss | 200 ± 0 | 200 | 200 |" in report_markdown(rows, ["tied"], _settings())
    rows[1]["valid_curve"][2][1] = 89.0
    assert "| update of the best valid loss | 300 ± 141 | 200 | 400 |" in report_markdown(rows, ["tied"], _settings())


def test_report_flags_a_seed_whose_arms_saw_different_batches():
    rows = [_row("tied", 1, 100.0, 60.0, 10), {**_row("untied", 1, 103.0, 50.0, 15), "data_digest": "other"}]
    assert "NO for seeds [1]" in report_markdown(rows, ["tied", "untied"], _settings())


def test_without_matplotlib_the_plot_is_skipped_with_a_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes "import matplotlib" raise ImportError
    assert plot_curves(tmp_path, [{"arm": "tied", "valid_curve": [[1, 9.0]]}], ["tied"]) is None
    assert "matplotlib is not installed" in capsys.readouterr().out and not list(tmp_path.iterdir())


def _settings():
    return {"data": "d", "train_subset": "train", "valid_subset": "valid", "arch": "a", "model_flags": "",
            "arm_changes": {}, "budget": "--max-update 1", "seeds": [1, 2, 3], "scoring": "", "train_scope": ""}


# --- arms and pairing ---------------------------------------------------------------------------

def test_tied_and_untied_of_one_seed_start_from_identical_shared_tensors(corpus, tmp_path):
    specs = plan_runs(AblationConfig(output=str(tmp_path), seeds=1), {"decoder_layers": 1, "dropout": 0.1},
                      DataConfig(data=str(corpus)), OptimizationConfig(max_update=10))
    models, dropout_draws = {}, {}
    for s in specs:  # the path lmtie-train takes: seed, build, re-seed for dropout
        models[s.arm] = build(s.model, s.data, s.optim, s.ckpt, s.run).model
        dropout_draws[s.arm] = torch.rand(5)
    tied, untied = (m.state_dict() for m in (models["tied"], models["untied"]))
    assert set(untied) - set(tied) == {"decoder.embed_out"}
    assert all(torch.equal(tied[k], untied[k]) for k in tied)  # every tensor both arms have
    emb, out = untied["decoder.embed_tokens.weight"], untied["decoder.embed_out"]
    assert out.std().item() == pytest.approx(emb[2:].std().item(), rel=0.1)  # heads start at the same scale
    assert torch.equal(dropout_draws["tied"], dropout_draws["untied"])  # same dropout stream although the
    # untied head drew more numbers at initialisation


def test_untied_matched_is_narrower_with_the_tied_budget():
    base = build_config("transformer_lm_tiny", vocab_size=4096)
    tied, untied, matched = (unique_parameters(ARMS[a](base)) for a in ("tied", "untied", "untied-matched"))
    cfg = ARMS["untied-matched"](base)
    assert not cfg.share_decoder_input_output_embed and cfg.decoder_embed_dim < base.decoder_embed_dim
    assert abs(matched - tied) / tied < 0.02 and untied > 1.5 * tied
    assert cfg.decoder_input_dim == cfg.decoder_output_dim == cfg.decoder_embed_dim


def test_user_arm_is_a_function_of_the_base_config(corpus, tmp_path):
    register_arm("untied-no-dropout")(lambda base: base.replace(share_decoder_input_output_embed=False, dropout=0.0))
    try:
        specs = plan_runs(AblationConfig(output=str(tmp_path), arms="tied,untied-no-dropout", seeds=2),
                          {"dropout": 0.3}, DataConfig(data=str(corpus)), OptimizationConfig(max_update=5),
                          run=RunConfig(seed=5))
    finally:
        del ARMS["untied-no-dropout"]
    assert [(s.arm, s.seed, s.model["dropout"]) for s in specs] == [
        ("tied", 5, 0.3), ("untied-no-dropout", 5, 0.0), ("tied", 6, 0.3), ("untied-no-dropout", 6, 0.0)]
    assert specs[3].save_dir == tmp_path / "runs" / "untied-no-dropout-seed6"


@pytest.mark.parametrize("args, message", [
    (["--arms", "tied,wide"], "unknown arm wide"),
    (["--share-decoder-input-output-embed"], "set by each arm"),
    (["--save-dir", "x"], "drop --save-dir"),
    (["--seeds", "0"], "--seeds 0"),
])
def test_bad_flags_are_one_line_errors(corpus, tmp_path, capsys, args, message):
    assert main([str(corpus), "--output", str(tmp_path / "o"), "--max-update", "5", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmtie-ablate: error:") and message in err and len(err.splitlines()) == 1


def test_no_budget_is_refused(corpus, tmp_path):
    with pytest.raises(UserError, match="--max-update"):
        plan_runs(AblationConfig(output=str(tmp_path)), data=DataConfig(data=str(corpus)))


# --- the small ablation end to end (2 arms x 2 seeds, 200 updates) ------------------------------

def test_paired_runs_saw_identical_batches(finished):
    runs = {(r["arm"], r["seed"]): r for r in results(finished)["runs"]}
    assert set(runs) == {("tied", 1), ("untied", 1), ("tied", 2), ("untied", 2)}
    assert runs["tied", 1]["data_digest"] == runs["untied", 1]["data_digest"]
    assert runs["tied", 2]["data_digest"] == runs["untied", 2]["data_digest"]
    assert runs["tied", 1]["data_digest"] != runs["tied", 2]["data_digest"]  # seeds do change the order
    assert results(finished)["identical_batches"] == {"1": True, "2": True}


def test_report_holds_every_measure_and_its_arithmetic(finished):
    res = results(finished)
    tied = [r for r in res["runs"] if r["arm"] == "tied"]
    untied = [r for r in res["runs"] if r["arm"] == "untied"]
    for r in res["runs"]:
        assert r["updates"] == 200 and r["pad_row_norm"] == 0.0 and len(r["valid_curve"]) >= 10
        assert all(r[f"{s}_{m}"] > 0 for s in ("train", "valid", "test") for m in ("ppl", "word_ppl", "bpb"))
        assert r["tokens_per_s"] > 0 and r["peak_memory_mb"] > 0 and r["wall_s"] > 0
    assert all(r["embed_cosine"] is None for r in tied) and all(-1 < r["embed_cosine"] < 1 for r in untied)
    assert tied[0]["params_unique"] == untied[0]["params_unique"] - untied[0]["params_embedding"] / 2
    mean = sum(r["test_ppl"] for r in tied) / 2
    assert res["summary"]["tied"]["test_ppl"]["mean"] == pytest.approx(mean)
    by_seed = {r["seed"]: r["test_ppl"] for r in untied}
    d = res["differences"]["tied minus untied"]["test_ppl"]
    expected = [r["test_ppl"] - by_seed[r["seed"]] for r in sorted(tied, key=lambda r: r["seed"])]
    assert d["diffs"] == pytest.approx(expected)
    csv_lines = (finished / "out" / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 5 and csv_lines[0].startswith("arm,seed,tied,")
    report = (finished / "out" / "report.md").read_text()
    assert "### tied (2 seeds)" in report and "### tied minus untied (paired by seed)" in report
    png = finished / "out" / "valid_curves.png"
    assert png.read_bytes()[:4] == b"\x89PNG" if _has_matplotlib() else not png.exists()


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def test_rerun_skips_finished_runs(finished, tmp_path, monkeypatch, capsys):
    work = copy_of(finished, tmp_path)
    before = {p: p.stat().st_mtime_ns for p in (work / "out" / "runs").rglob("*") if p.is_file()}
    monkeypatch.chdir(work)
    assert main(_same_command(work)) == 0
    out = capsys.readouterr().out
    assert out.count("finished earlier, skipped") == 4 and "training in" not in out
    assert {p: p.stat().st_mtime_ns for p in before} == before  # no run touched, not even its metrics


def test_interrupted_run_continues_where_it_stopped(finished, tmp_path):
    work = copy_of(finished, tmp_path)
    run = work / "out" / "runs" / "untied-seed2"
    original = json.loads((run / "result.json").read_text())
    # the state a kill at update 100..199 leaves: no result, checkpoint_last from the interval save at 100
    (run / "result.json").unlink()
    (at_100,) = run.glob("checkpoint_*_100.safetensors")
    shutil.copy(at_100, run / "checkpoint_last.safetensors")
    proc = ablate(work, *_same_command(work))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("skipped") == 3 and "untied-seed2: resuming" in proc.stdout, proc.stdout
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    (i,) = [k for k, r in enumerate(records) if r["type"] == "resume"]  # the killed session's later records are gone
    assert records[i]["step"] == 100
    new = records[i + 1:]
    assert min(r["step"] for r in new if r["type"] == "train") > 100  # continued, did not restart
    again = json.loads((run / "result.json").read_text())
    assert again["updates"] == 200 and again["data_digest"] == original["data_digest"], (again, original)
    assert again["test_ppl"] == original["test_ppl"], (again, original)  # exact resume: same weights as the uninterrupted run
    assert ckpt_io.load(run / "checkpoint_last.safetensors").train_state["step"] == 200


def test_rerun_with_other_flags_is_refused(finished, tmp_path, monkeypatch, capsys):
    work = copy_of(finished, tmp_path)
    monkeypatch.chdir(work)
    assert main([("3e-3" if a == "2e-3" else a) for a in _same_command(work)]) == 2
    err = capsys.readouterr().err
    assert "optimization.lr=0.002, now 0.003" in err and "new --output" in err


def _same_command(work: Path) -> list[str]:
    spec = json.loads((work / "out" / "runs" / "tied-seed1" / "ablation_run.json").read_text())
    return [spec["data"]["data"], *TINY, *ABLATE]


def test_train_head_counts_words_and_bytes_of_the_text(finished, corpus):
    ckpt = ckpt_io.load(finished / "out" / "runs" / "tied-seed1" / "checkpoint_best.safetensors")
    whole = split_head(corpus, "train", ckpt, 10 ** 9)
    raw = (corpus.parent / "train.txt").read_text()
    assert (whole.words, whole.bytes, len(whole.line_sizes)) == (len(raw.split()), len(raw.encode()), 200)
    assert whole.bytes == load_manifest(corpus)["splits"]["train"]["bytes"]
    head = split_head(corpus, "train", ckpt, 100)
    assert len(head.tokens) <= 100 and int(head.line_sizes.sum()) == len(head.tokens)
    assert len(head.tokens) + int(whole.line_sizes[len(head.line_sizes)]) > 100  # whole lines, as many as fit
