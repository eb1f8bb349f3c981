"""lmtie-train end to end: exact resume after SIGKILL, preemption, numerical faults, bad input."""

import json
import os
import pickle
import re
import signal
import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file

from lmtie.errors import UserError
from lmtie.training import CheckpointConfig, DataConfig, OptimizationConfig, RunConfig, train
from lmtie import checkpoint as ckpt_io
from train_helpers import TINY, env, make_corpus, metrics, run_train, train_cmd, train_fails


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def _weights(path):
    return {k: v for k, v in load_file(str(path)).items() if k.startswith("model.")}


def test_tied_model_trains_and_writes_checkpoints_and_metrics(corpus, tmp_path):
    out = run_train(str(corpus), *TINY, "--share-decoder-input-output-embed", "--max-update", "20",
                    "--validate-interval-updates", "10", "--log-interval", "5", "--save-dir", str(tmp_path),
                    "--log-format", "simple")
    assert "valid ppl" in out.stdout and "checkpoint_best" in out.stdout
    assert re.search(r"updates \d+\.\d s at [\d,]+ tokens/s, validation \d+\.\d s", out.stdout), out.stdout
    assert {p.name for p in tmp_path.glob("*.safetensors")} == {"checkpoint_last.safetensors",
                                                               "checkpoint_best.safetensors"}
    train_log, valid_log = metrics(tmp_path), metrics(tmp_path, "valid")
    assert [r["step"] for r in train_log] == [5, 10, 15, 20] and [r["step"] for r in valid_log] == [10, 20]
    assert train_log[-1]["loss"] < train_log[0]["loss"]
    ck = ckpt_io.load(tmp_path / "checkpoint_last.safetensors")
    assert ck.train_state["step"] == 20 and ck.config["model"]["share_decoder_input_output_embed"] is True
    assert "decoder.embed_out" not in ck.model_state  # the tied matrix is stored once
    assert json.loads((tmp_path / "config.json").read_text()) == ck.config  # the configs beside the checkpoints
    assert torch.count_nonzero(ck.model_state["decoder.embed_tokens.weight"][1]) == 0  # pad row stays zero


def test_resume_after_sigkill_is_bit_identical(corpus, tmp_path):
    common = [str(corpus), *TINY, "--dropout", "0.1", "--max-update", "150", "--seed", "7"]
    run_train(*common, "--save-dir", str(tmp_path / "straight"))
    killed = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(*common, "--save-dir", str(killed), "--save-interval-updates", "10",
                                      "--keep-interval-updates", "2"), env=env())
    deadline = time.time() + 120
    while not list(killed.glob("checkpoint_*_20.safetensors")) and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step_at_kill = ckpt_io.load(killed / "checkpoint_last.safetensors").train_state["step"]
    assert 20 <= step_at_kill < 150
    run_train(*common, "--save-dir", str(killed), "--save-interval-updates", "10", "--keep-interval-updates", "2")
    a, b = _weights(tmp_path / "straight" / "checkpoint_last.safetensors"), _weights(killed / "checkpoint_last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len(list(killed.glob("checkpoint_*_*.safetensors"))) == 2  # --keep-interval-updates


def test_sigterm_finishes_the_step_writes_checkpoint_last_and_exits_cleanly(corpus, tmp_path):
    proc = subprocess.Popen(train_cmd(str(corpus), *TINY, "--max-update", "100000", "--save-dir", str(tmp_path),
                                      "--log-format", "simple", "--log-interval", "1"),
                            env=env(), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ((tmp_path / "metrics.jsonl").exists() and len(metrics(tmp_path)) >= 3) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "stopped by SIGTERM" in err
    step = ckpt_io.load(tmp_path / "checkpoint_last.safetensors").train_state["step"]
    assert 3 <= step < 100000


def _api_run(corpus, save_dir, **optim):
    return train({"decoder_layers": 1, "decoder_embed_dim": 32, "decoder_ffn_embed_dim": 64,
                  "decoder_attention_heads": 2},
                 DataConfig(data=str(corpus), tokens_per_sample=16, batch_size=4),
                 OptimizationConfig(**{"max_update": 4, **optim}),
                 CheckpointConfig(save_dir=str(save_dir)),
                 RunConfig(log_format="none", validate_interval_updates=2))


def test_sigusr1_during_validation_stops_and_saves(corpus, tmp_path, monkeypatch):
    from lmtie.data import LanguageModelDataset

    original = LanguageModelDataset.batch
    calls = {"n": 0}

    def batch_and_signal(self, items):
        if self.data.prefix.name == "valid" if hasattr(self.data, "prefix") else len(self) < 50:
            calls["n"] += 1
            if calls["n"] == 1:
                os.kill(os.getpid(), signal.SIGUSR1)
        return original(self, items)

    monkeypatch.setattr(LanguageModelDataset, "batch", batch_and_signal)
    summary = _api_run(corpus, tmp_path, max_update=1000)
    assert summary["preempted_by"] == "SIGUSR1"
    assert ckpt_io.load(tmp_path / "checkpoint_last.safetensors").train_state["step"] == 2  # the first validation


def test_nonfinite_updates_are_skipped_then_stop_without_touching_the_checkpoint(corpus, tmp_path, monkeypatch):
    _api_run(corpus, tmp_path)
    before = (tmp_path / "checkpoint_last.safetensors").read_bytes()
    from lmtie.training.tasks import LanguageModelingTask

    real = LanguageModelingTask.loss
    monkeypatch.setattr(LanguageModelingTask, "loss", lambda *a: (lambda l, n: (l * float("nan"), n))(*real(*a)))
    with pytest.raises(UserError, match="consecutive updates had a non-finite loss"):
        _api_run(corpus, tmp_path, max_update=10, max_nonfinite_updates=3)
    assert (tmp_path / "checkpoint_last.safetensors").read_bytes() == before


# --- bad input: a clear one-line error, exit code 2, nothing lost --------------------------------
_fails = train_fails


def test_missing_or_unprocessed_data_bin(tmp_path):
    _fails(str(tmp_path / "nope"), "--save-dir", str(tmp_path / "ck"), match="run lmtie-preprocess")
    (tmp_path / "empty").mkdir()
    _fails(str(tmp_path / "empty"), "--save-dir", str(tmp_path / "ck"), match="not a preprocessed data directory")


@pytest.mark.parametrize("content", [b"", b"\x00" * 100, pickle.dumps({"a": 1})])
def test_truncated_corrupted_or_pickled_checkpoint_is_refused(corpus, tmp_path, content):
    (tmp_path / "checkpoint_last.safetensors").write_bytes(content)
    _fails(str(corpus), *TINY, "--save-dir", str(tmp_path), match="not a readable lmtie checkpoint")
    assert (tmp_path / "checkpoint_last.safetensors").read_bytes() == content


def test_pickle_carrying_code_is_never_executed(corpus, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Evil()))
    _fails(str(corpus), *TINY, "--save-dir", str(tmp_path / "ck"), "--restore-file", str(tmp_path / "evil.pt"),
           match="not a readable lmtie checkpoint")
    assert not marker.exists()


def test_checkpoint_from_another_vocabulary_is_refused(corpus, tmp_path):
    run_train(str(corpus), *TINY, "--max-update", "2", "--save-dir", str(tmp_path / "ck"))
    other = make_corpus(tmp_path, lines=50, seed=1)
    (other / "dict.txt").write_text((corpus / "dict.txt").read_text() + "zebra 1\n")
    _fails(str(other), *TINY, "--save-dir", str(tmp_path / "ck"), match="another vocabulary")


def test_flipping_the_tie_needs_reset_output_projection(corpus, tmp_path):
    run_train(str(corpus), *TINY, "--max-update", "2", "--save-dir", str(tmp_path),
              "--share-decoder-input-output-embed")
    before = (tmp_path / "checkpoint_last.safetensors").read_bytes()
    _fails(str(corpus), *TINY, "--max-update", "4", "--save-dir", str(tmp_path), match="--reset-output-projection")
    assert (tmp_path / "checkpoint_last.safetensors").read_bytes() == before
    run_train(str(corpus), *TINY, "--max-update", "4", "--save-dir", str(tmp_path), "--reset-output-projection")
    ck = ckpt_io.load(tmp_path / "checkpoint_last.safetensors")
    assert ck.train_state["step"] == 4 and "decoder.embed_out" in ck.model_state


def test_resuming_with_an_arch_of_another_family_is_refused(corpus, tmp_path):
    run_train(str(corpus), *TINY, "--max-update", "2", "--save-dir", str(tmp_path))
    before = (tmp_path / "checkpoint_last.safetensors").read_bytes()
    assert json.loads((tmp_path / "config.json").read_text())["model_family"] == "transformer_lm"
    _fails(str(corpus), *TINY, "--arch", "llama_tiny", "--max-update", "4", "--save-dir", str(tmp_path),
           match="a transformer_lm model, but --arch gives a llama model")
    assert (tmp_path / "checkpoint_last.safetensors").read_bytes() == before


def test_read_only_save_dir(corpus, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    # root ignores permission bits, so then use sysfs, which nobody may write to
    target = ro / "ck" if not os.access(ro, os.W_OK) else "/sys/lmtie-test-save-dir"
    try:
        _fails(str(corpus), *TINY, "--save-dir", str(target), match="--save-dir")
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("flags,match", [
    (["--share-decoder-input-output-embed", "--decoder-output-dim", "16"], "--decoder-output-dim"),
    (["--decoder-learned-pos", "--max-target-positions", "8"], "--max-target-positions"),
])
def test_conflicting_flags(corpus, tmp_path, flags, match):
    _fails(str(corpus), *TINY, *flags, "--save-dir", str(tmp_path), match=match)
    assert not list(tmp_path.glob("*.safetensors"))


# --- stopping rules, accumulation and checkpoint pruning (in-process, fast) ----------------------
def test_update_freq_two_equals_a_double_batch(corpus, tmp_path):
    base = ["--dropout", "0", "--max-update", "4", "--log-interval", "1"]
    run_train(str(corpus), *TINY, *base, "--batch-size", "8", "--save-dir", str(tmp_path / "big"))
    run_train(str(corpus), *TINY, *base, "--batch-size", "4", "--update-freq", "2", "--save-dir", str(tmp_path / "acc"))
    a, b = metrics(tmp_path / "big"), metrics(tmp_path / "acc")
    assert len(a) == len(b) == 4 and all(abs(x["loss"] - y["loss"]) < 1e-5 for x, y in zip(a, b))


def test_patience_stops_when_valid_loss_stops_improving(corpus, tmp_path):
    summary = train({"decoder_layers": 1, "decoder_embed_dim": 32, "decoder_ffn_embed_dim": 64,
                     "decoder_attention_heads": 2},
                    DataConfig(data=str(corpus), tokens_per_sample=16, batch_size=4),
                    OptimizationConfig(max_update=100, lr=0.0, lr_scheduler="fixed"),  # lr 0: nothing improves
                    CheckpointConfig(save_dir=str(tmp_path)),
                    RunConfig(log_format="none", validate_interval_updates=2, patience=2))
    assert summary["updates"] == 6  # validations at 2 (best), 4 (bad 1), 6 (bad 2 = patience 2: stop, as fairseq)


@pytest.mark.parametrize("patience", [0, -1])
def test_patience_zero_or_negative_is_off(corpus, tmp_path, patience):
    summary = train({"decoder_layers": 1, "decoder_embed_dim": 32, "decoder_ffn_embed_dim": 64,
                     "decoder_attention_heads": 2},
                    DataConfig(data=str(corpus), tokens_per_sample=16, batch_size=4),
                    OptimizationConfig(max_update=8, lr=0.0, lr_scheduler="fixed"),
                    CheckpointConfig(save_dir=str(tmp_path)),
                    RunConfig(log_format="none", validate_interval_updates=2, patience=patience))
    assert summary["updates"] == 8  # fairseq: --patience <= 0 never stops early


def test_stop_time_hours_and_max_epoch(corpus, tmp_path):
    quick = _api_run(corpus, tmp_path / "time", max_update=100000, stop_time_hours=1e-9)
    assert quick["updates"] <= 2
    summary = train({"decoder_layers": 1, "decoder_embed_dim": 32, "decoder_ffn_embed_dim": 64,
                     "decoder_attention_heads": 2},
                    DataConfig(data=str(corpus), tokens_per_sample=64, batch_size=16),
                    OptimizationConfig(max_epoch=3), CheckpointConfig(save_dir=str(tmp_path / "ep"), keep_last_epochs=1),
                    RunConfig(log_format="none"))
    assert summary["epochs_completed"] == 3
    assert sorted(p.name for p in (tmp_path / "ep").glob("checkpoint[0-9]*")) == ["checkpoint3.safetensors"]
