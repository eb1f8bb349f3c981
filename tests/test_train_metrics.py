"""metrics.jsonl after a resume (no step twice) and the summary's time accounting."""

import json
import signal
import subprocess
import time

import pytest

from lmtie.training import CheckpointConfig, DataConfig, OptimizationConfig, RunConfig, train
from lmtie import checkpoint as ckpt_io
from train_helpers import TINY, env, make_corpus, metrics, run_train, train_cmd

TINY_MODEL = {"decoder_layers": 1, "decoder_embed_dim": 32, "decoder_ffn_embed_dim": 64, "decoder_attention_heads": 2}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), lines=200)


def _records(save_dir):
    return [json.loads(line) for line in (save_dir / "metrics.jsonl").read_text().splitlines()]


def _api_run(corpus, save_dir, max_update, **run):
    return train(TINY_MODEL, DataConfig(data=str(corpus), tokens_per_sample=16, batch_size=4),
                 OptimizationConfig(max_update=max_update, warmup_updates=5, lr=1e-3),
                 CheckpointConfig(save_dir=str(save_dir), save_interval_updates=5),
                 RunConfig(**{"log_format": "none", "log_interval": 1, "validate_interval_updates": 5, **run}))


def _kill_after_records_past_checkpoint(proc, save_dir, deadline_s=120):
    """Freeze the run until it has logged updates its checkpoint_last does not hold, then SIGKILL it."""
    deadline = time.time() + deadline_s
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
        last = save_dir / "checkpoint_last.safetensors"
        if not last.exists():
            continue
        proc.send_signal(signal.SIGSTOP)
        saved = ckpt_io.load(last).train_state["step"]
        logged = max((r["step"] for r in metrics(save_dir)), default=0)
        if logged > saved:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return saved
        proc.send_signal(signal.SIGCONT)
    proc.kill()
    pytest.fail("the run ended before it logged past a checkpoint; make it longer")


def test_resume_after_sigkill_logs_each_step_once_with_the_straight_runs_values(corpus, tmp_path):
    common = [str(corpus), *TINY, "--dropout", "0.1", "--max-update", "40", "--seed", "3", "--log-interval", "1",
              "--validate-interval-updates", "10", "--save-interval-updates", "10"]
    run_train(*common, "--save-dir", str(tmp_path / "straight"))
    killed = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(*common, "--save-dir", str(killed)), env=env())
    at = _kill_after_records_past_checkpoint(proc, killed)
    orphans = [r for r in _records(killed) if r["step"] > at]
    run_train(*common, "--save-dir", str(killed))

    records = _records(killed)
    assert [r["step"] for r in metrics(killed)] == list(range(1, 41))  # strictly increasing, none lost or twice
    resumes = [i for i, r in enumerate(records) if r["type"] == "resume"]
    assert len(resumes) == 1 and records[resumes[0]]["step"] == at
    assert records[resumes[0]]["dropped_records"] == len(orphans) > 0
    before, after = records[:resumes[0]], records[resumes[0] + 1:-1]
    assert all(r["step"] <= at for r in before) and all(r["step"] > at for r in after)
    assert records[0]["type"] == "start" and records[-1]["type"] == "summary" and records[-1]["updates"] == 40
    curve = lambda d: [(r["type"], r["step"], r["loss"]) for r in _records(d) if r["type"] in ("train", "valid")]
    assert curve(killed) == curve(tmp_path / "straight")  # exact resume: the straight run's curve, valid included


def test_summary_throughput_is_over_update_time_and_the_seconds_add_up(corpus, tmp_path):
    s = _api_run(corpus, tmp_path, max_update=30)
    parts = s["update_seconds"], s["valid_seconds"], s["checkpoint_seconds"]
    assert all(p > 0 for p in parts)  # 6 validations and 6 interval saves happened
    assert sum(parts) <= s["wall_seconds"] + 0.002  # each figure is rounded to 1 ms
    assert abs(sum(parts) + s["other_seconds"] - s["wall_seconds"]) <= 0.003 and s["other_seconds"] >= -0.001
    assert s["tokens_per_s"] >= s["wall_tokens_per_s"] > 0
    assert s["tokens_per_s"] == pytest.approx(s["tokens_seen"] / s["update_seconds"], abs=0, rel=0.02)
    state = ckpt_io.load(tmp_path / "checkpoint_1_30.safetensors").train_state
    assert 0 < state["update_seconds"] + state["valid_seconds"] + state["checkpoint_seconds"] < state["train_seconds"]


def test_finished_run_continued_keeps_its_records_and_accumulates_time(corpus, tmp_path):
    first = _api_run(corpus, tmp_path, max_update=10)
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"type": "train", "st')  # a torn last line, as a crash mid-write leaves
    second = _api_run(corpus, tmp_path, max_update=15)
    records = _records(tmp_path)  # every line parses: the torn one was dropped
    assert [r["type"] for r in records].count("summary") == 2 and records[0]["type"] == "start"
    (resume,) = [r for r in records if r["type"] == "resume"]
    assert resume["step"] == 10 and resume["dropped_records"] == 0
    assert [r["step"] for r in metrics(tmp_path)] == list(range(1, 16))
    state = ckpt_io.load(tmp_path / "checkpoint_1_10.safetensors").train_state  # what the second session resumed
    final = ckpt_io.load(tmp_path / "checkpoint_1_15.safetensors").train_state
    for key in ("train_seconds", "update_seconds", "valid_seconds", "checkpoint_seconds"):
        assert final[key] > state[key] > 0, key  # the second session adds to the first's counters
    assert second["wall_seconds"] > first["wall_seconds"] and second["update_seconds"] > first["update_seconds"]


def test_fresh_run_appends_to_another_runs_file_without_touching_it(corpus, tmp_path):
    old = '{"type": "train", "step": 1, "loss": 9.0}\n{"type": "train", "step": 2, "loss": 8.0}\n'
    (tmp_path / "metrics.jsonl").write_text(old)
    _api_run(corpus, tmp_path, max_update=3)
    text = (tmp_path / "metrics.jsonl").read_text()
    assert text.startswith(old)
    new = [json.loads(line) for line in text[len(old):].splitlines()]
    assert new[0]["type"] == "start" and [r["step"] for r in new if r["type"] == "train"] == [1, 2, 3]


def test_fresh_run_after_a_torn_line_starts_on_a_line_of_its_own(corpus, tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"type": "train", "step": 1, "loss": 9.0}\n{"type": "tr')
    _api_run(corpus, tmp_path, max_update=2)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert lines[1] == '{"type": "tr' and json.loads(lines[2])["type"] == "start"


def test_checkpoint_from_before_the_time_split_still_resumes(corpus, tmp_path):
    _api_run(corpus, tmp_path, max_update=5)
    path = tmp_path / "checkpoint_last.safetensors"
    ck = ckpt_io.load(path)
    for key in ("update_seconds", "valid_seconds", "checkpoint_seconds"):
        del ck.train_state[key]
    ck.train_state["train_seconds"] = 12.5
    ckpt_io.save(path, ck)
    s = _api_run(corpus, tmp_path, max_update=5)  # nothing left to train: restore, save, summarise
    assert s["updates"] == 5 and s["update_seconds"] == 12.5 and s["valid_seconds"] == 0
    assert s["wall_seconds"] >= 12.5 + s["checkpoint_seconds"] - 0.002
