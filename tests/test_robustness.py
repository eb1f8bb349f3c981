"""No run steps on another, nothing is lost (issue 15): locks, preemption signals at any instant,
temp files of killed writes, file modes, a full disk, and TensorBoard across a resume."""

import contextlib
import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save

from lmtie import checkpoint as ckpt_io
from lmtie.cli import preprocess as preprocess_cli
from lmtie.cli import train as train_cli
from lmtie.data import PreprocessConfig, preprocess
from lmtie.errors import UserError
from lmtie.io import atomic_path, is_temp_file
from lmtie.lock import acquire
from lmtie.training import CheckpointConfig, DataConfig, OptimizationConfig, RunConfig, train
from train_helpers import TINY, WORDS, env, make_corpus, metrics, train_cmd

TINY_MODEL = {"decoder_layers": 1, "decoder_embed_dim": 32, "decoder_ffn_embed_dim": 64, "decoder_attention_heads": 2}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), lines=120)


def _api_run(corpus, save_dir, max_update=4, ckpt=None, **run):
    return train(TINY_MODEL, DataConfig(data=str(corpus), tokens_per_sample=16, batch_size=4),
                 OptimizationConfig(max_update=max_update, warmup_updates=2, lr=1e-3),
                 CheckpointConfig(save_dir=str(save_dir), **(ckpt or {})),
                 RunConfig(**{"log_format": "none", "validate_interval_updates": 2, **run}))


def _cli(main, argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def _one_error_line(err: str, prog: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines and lines[-1].startswith(f"{prog}: error:"), err
    return lines[-1]


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


# --- 1. locks -----------------------------------------------------------------------------------
def test_second_training_run_on_a_save_dir_is_refused_naming_the_holders_pid(corpus, tmp_path, capsys):
    save = tmp_path / "ck"
    save.mkdir()
    holder = acquire(save / ".lock", "test", "")  # flock conflicts between open files, also in one process
    try:
        code, err = _cli(train_cli.main, [str(corpus), *TINY, "--max-update", "2", "--save-dir", str(save)], capsys)
        line = _one_error_line(err, "lmtie-train")
        assert code == 2 and f"--save-dir {save}: in use by another lmtie process (pid {os.getpid()}" in line
        assert sorted(p.name for p in save.iterdir()) == [".lock"]  # nothing written: no metrics.jsonl
    finally:
        holder.release()
    assert train_cli.main([str(corpus), *TINY, "--max-update", "2", "--save-dir", str(save)]) == 0  # free again


def test_run_in_another_process_is_named_and_its_lock_dies_with_it(corpus, tmp_path, capsys):
    save = tmp_path / "ck"
    proc = subprocess.Popen(train_cmd(str(corpus), *TINY, "--max-update", "100000", "--save-dir", str(save)),
                            env=env(), stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (save / "metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.05)
        assert (save / ".lock").read_text().strip() == str(proc.pid)
        code, err = _cli(train_cli.main, [str(corpus), *TINY, "--max-update", "2", "--save-dir", str(save)], capsys)
        assert code == 2 and f"(pid {proc.pid}, lock file {save / '.lock'})" in _one_error_line(err, "lmtie-train")
    finally:
        proc.kill()  # SIGKILL: no chance to unlock; the kernel drops the flock
        proc.wait()
    assert train_cli.main([str(corpus), *TINY, "--max-update", "2", "--save-dir", str(save)]) == 0


def test_second_preprocess_into_one_destdir_is_refused_and_a_waiting_one_waits(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("the cat sat on a mat\n" * 20)
    dest = tmp_path / "bin"
    holder = acquire(tmp_path / ".bin.lock", "test", "")
    try:
        code, err = _cli(preprocess_cli.main, ["--trainpref", str(tmp_path / "a.txt"), "--destdir", str(dest)], capsys)
        line = _one_error_line(err, "lmtie-preprocess")
        assert code == 2 and f"--destdir {dest}: in use by another lmtie process (pid {os.getpid()}" in line
        assert not dest.exists() and not list(tmp_path.glob(".bin.tmp-*"))
        done = []
        cfg = PreprocessConfig(trainpref=str(tmp_path / "a.txt"), destdir=str(dest))
        waiter = threading.Thread(target=lambda: done.append(preprocess(cfg, wait_for_lock=True)))
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive() and not done  # waiting for the holder (the default corpus under torchrun does)
    finally:
        holder.release()
    waiter.join(60)
    assert done == [dest] and (dest / "manifest.json").is_file()


def test_lock_file_goes_with_the_lock_and_a_waiter_on_the_removed_file_locks_the_new_one(tmp_path):
    first = acquire(tmp_path / ".lock", "DIR", "")
    got = []
    waiter = threading.Thread(target=lambda: got.append(acquire(tmp_path / ".lock", "DIR", "", wait=True)))
    waiter.start()
    time.sleep(0.3)  # the waiter blocks on the file the first holder is about to remove
    first.release()
    waiter.join(10)
    assert got and got[0].held and (tmp_path / ".lock").read_text().strip() == str(os.getpid())
    with pytest.raises(UserError, match=r"DIR: in use by another lmtie process \(pid \d+"):
        acquire(tmp_path / ".lock", "DIR", "")  # the waiter holds the file that is there now
    got[0].release()
    assert list(tmp_path.iterdir()) == []


def test_preprocess_removes_the_workdirs_of_killed_runs_of_its_destdir(tmp_path):
    (tmp_path / "a.txt").write_text("the cat sat on a mat\n" * 20)
    stale, other = tmp_path / ".bin.tmp-abc123", tmp_path / ".other.tmp-abc123"
    for d in (stale, other):
        d.mkdir()
        (d / "train.bin").write_bytes(b"x" * 100)
    preprocess(PreprocessConfig(trainpref=str(tmp_path / "a.txt"), destdir=str(tmp_path / "bin")))
    assert not stale.exists() and other.exists()


# --- 2. signals -----------------------------------------------------------------------------------
def _caught(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    return 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_during_the_imports_of_lmtie_train_exits_cleanly(corpus, tmp_path, sig):
    if not Path(f"/proc/{os.getpid()}/status").exists():
        pytest.skip("needs /proc to see when the handlers are installed")
    save = tmp_path / "ck"
    proc = subprocess.Popen(train_cmd(str(corpus), *TINY, "--max-update", "5", "--save-dir", str(save)), env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while proc.poll() is None and not _caught(proc.pid) >> (sig - 1) & 1 and time.time() < deadline:
        time.sleep(0.002)  # import lmtie installs them first, before torch is imported
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert err.strip().splitlines() == [f"lmtie-train: stopped by {sig.name} during start-up, before training began; "
                                        "no checkpoint was written; run the same command again to start (or resume)"]
    assert not save.exists()


def test_signal_during_setup_stops_at_once_writes_nothing_and_frees_the_save_dir(corpus, tmp_path, monkeypatch,
                                                                                  capfd):
    from lmtie.training import setup

    real = setup._find_restore

    def find_restore_and_signal(ckpt):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(ckpt)

    monkeypatch.setattr(setup, "_find_restore", find_restore_and_signal)
    summary = _api_run(corpus, tmp_path)
    assert summary == {"preempted_by": "SIGTERM", "updates": None, "save_dir": str(tmp_path)}
    assert "stopped by SIGTERM during start-up" in capfd.readouterr().err
    assert list(tmp_path.iterdir()) == []  # the lock file goes with the lock
    monkeypatch.setattr(setup, "_find_restore", real)
    assert _api_run(corpus, tmp_path)["updates"] == 4  # lock released, no signal left pending


def test_signal_after_setup_before_the_first_update_writes_no_checkpoint(corpus, tmp_path, monkeypatch):
    from lmtie.training.logging import MetricsLogger

    real = MetricsLogger.fresh_start
    monkeypatch.setattr(MetricsLogger, "fresh_start",
                        lambda self, state: (os.kill(os.getpid(), signal.SIGUSR1), real(self, state)))
    summary = _api_run(corpus, tmp_path)
    assert summary["preempted_by"] == "SIGUSR1" and summary["updates"] == 0
    assert not list(tmp_path.glob("*.safetensors"))


def test_signal_during_validation_still_writes_the_interval_checkpoint_and_the_resume_validates(corpus, tmp_path,
                                                                                                 monkeypatch):
    from lmtie.training.trainer import Trainer

    ckpt = {"save_interval_updates": 2, "keep_interval_updates": -1}
    straight = _api_run(corpus, tmp_path / "straight", ckpt=ckpt)
    real = Trainer.validate
    calls = {"n": 0}

    def validate_and_signal(self):
        calls["n"] += 1
        if calls["n"] == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives during the validation of update 2
        return real(self)

    monkeypatch.setattr(Trainer, "validate", validate_and_signal)
    cut = tmp_path / "cut"
    assert _api_run(corpus, cut, ckpt=ckpt)["preempted_by"] == "SIGTERM"
    assert ckpt_io.load(cut / "checkpoint_1_2.safetensors").train_state["step"] == 2  # was skipped for good
    assert ckpt_io.load(cut / "checkpoint_last.safetensors").train_state["last_valid_step"] == -1
    resumed = _api_run(corpus, cut, ckpt=ckpt)
    assert [r["step"] for r in metrics(cut, "valid")] == [2, 4]  # update 2's validation ran on resume
    assert resumed["best_valid_loss"] == straight["best_valid_loss"]
    a, b = (load_file(str(d / "checkpoint_last.safetensors")) for d in (tmp_path / "straight", cut))
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("model."))
    assert ckpt_io.load(cut / "checkpoint_1_2.safetensors").train_state["last_valid_step"] == 2  # as straight


# --- 3. temp files of killed writes -------------------------------------------------------------------
def test_a_kill_during_a_checkpoint_write_leaves_a_temp_file_the_next_run_removes(corpus, tmp_path):
    save = tmp_path / "ck"
    save.mkdir()
    target = save / "checkpoint_last.safetensors"
    code = ("import os, signal, torch\n"
            "from lmtie import checkpoint as c\n"
            "def half(path, tensors, meta):\n"
            "    open(path, 'wb').write(b'x' * 1000)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n"
            "c.write_safetensors = half\n"
            f"c.save({str(target)!r}, c.Checkpoint({{'w': torch.zeros(3)}}, {{}}, c.Dictionary()))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    left = [p.name for p in save.iterdir()]
    assert len(left) == 1 and left[0].startswith(".checkpoint_last.safetensors.") and is_temp_file(save / left[0])
    keep = [".tmpRO24lB", "notes.tmp", ".checkpoint_last.safetensors.tmp", ".x.ABCDEFGH.tmp", "mine.abcdefgh.tmp"]
    for name in keep:
        (save / name).write_text("not lmtie's")
    (save / ".config.json.a1b2_c3d.tmp").write_text("{")
    _api_run(corpus, save, max_update=2)
    assert sorted(p.name for p in save.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".tmp")) == sorted(keep)


def test_checkpoint_writer_writes_no_temp_file_of_its_own_and_matches_safetensors_bytes(tmp_path):
    tensors = {"a": torch.randn(3, 4), "b": torch.randn(5, dtype=torch.float64), "c": torch.tensor(7),
               "d": torch.zeros(0, 3), "e": torch.randn(4).bfloat16(), "f": torch.tensor([True, False]),
               "g": torch.arange(5, dtype=torch.int16), "h": torch.arange(3, dtype=torch.uint8), "i": torch.randn(2).half()}
    ckpt_io.write_safetensors(tmp_path / "w.safetensors", tensors, {"k": "v"})
    assert (tmp_path / "w.safetensors").read_bytes() == save(tensors, metadata={"k": "v"})
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


# --- 4. modes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_every_file_in_the_save_dir_gets_the_umasks_mode(corpus, tmp_path, umask):
    old = os.umask(umask)
    try:
        _api_run(corpus, tmp_path, max_update=2, ckpt={"save_interval_updates": 2})
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert {"checkpoint_last.safetensors", "checkpoint_best.safetensors", "checkpoint_1_2.safetensors",
            "config.json", "metrics.jsonl"} <= modes.keys()
    assert set(modes.values()) == {0o666 & ~umask}, modes
    old = os.umask(umask)
    try:
        with acquire(tmp_path / ".lock", "test", ""):
            assert stat.S_IMODE((tmp_path / ".lock").stat().st_mode) == 0o666 & ~umask
    finally:
        os.umask(old)


def test_atomic_path_keeps_the_mode_when_the_writer_replaces_the_temp_file(tmp_path):
    with atomic_path(tmp_path / "f") as tmp:
        other = tmp_path / "private"
        other.write_text("x")
        other.chmod(0o600)
        os.replace(other, tmp)  # what safetensors.save_file does
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- 5. disk full ---------------------------------------------------------------------------------
@contextlib.contextmanager
def small_tmpfs(path: Path, size: str):
    """A tmpfs of ``size`` at ``path``, or a skip saying why not."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small file system to fill")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}); the monkeypatched "
                    "ENOSPC tests cover the messages")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(fs: Path, leave: int) -> None:
    free = os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize
    with open(fs / "filler", "wb") as f:
        f.write(b"\0" * max(free - leave, 0))


def _assert_disk_full_line(err: str, where: Path, kept: str) -> None:
    line = _one_error_line(err, "lmtie-train")
    assert f"{where}: no space left on device" in line and kept in line, line


def test_disk_full_while_checkpointing_keeps_the_last_checkpoint_tmpfs(corpus, tmp_path, capsys):
    with small_tmpfs(tmp_path / "fs", "1m") as fs:
        save = fs / "ck"
        args = [str(corpus), *TINY, "--save-dir", str(save), "--validate-interval-updates", "0"]
        assert train_cli.main([*args, "--max-update", "2"]) == 0
        before = (save / "checkpoint_last.safetensors").read_bytes()
        _fill(fs, leave=(len(before) // 2) & ~4095)  # room for metrics, not for a checkpoint
        capsys.readouterr()
        code, err = _cli(train_cli.main, [*args, "--max-update", "4"], capsys)
        assert code == 2
        _assert_disk_full_line(err, save, f"the last good checkpoint, {save / 'checkpoint_last.safetensors'}, is kept")
        assert (save / "checkpoint_last.safetensors").read_bytes() == before
        assert not [p for p in save.iterdir() if is_temp_file(p)]
        (fs / "filler").unlink()
        assert train_cli.main([*args, "--max-update", "4"]) == 0  # space freed: it resumes


def test_disk_full_while_checkpointing_keeps_the_last_checkpoint_simulated(corpus, tmp_path, capsys, monkeypatch):
    args = [str(corpus), *TINY, "--save-dir", str(tmp_path), "--validate-interval-updates", "0"]
    assert train_cli.main([*args, "--max-update", "2"]) == 0
    before = _files(tmp_path)

    def full(path, tensors, meta):
        open(path, "wb").write(b"x" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt_io, "write_safetensors", full)
    capsys.readouterr()
    code, err = _cli(train_cli.main, [*args, "--max-update", "4"], capsys)
    assert code == 2
    _assert_disk_full_line(err, tmp_path, "is kept; free some space and run the same command again to resume")
    after = _files(tmp_path)
    assert {k: v for k, v in after.items() if k.endswith(".safetensors")} == \
        {k: v for k, v in before.items() if k.endswith(".safetensors")}
    assert not [p for p in tmp_path.iterdir() if is_temp_file(p)]


def _bigger_corpus(path: Path, lines: int) -> Path:
    import random

    rng = random.Random(1)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(lines)) + "\n")
    return path


def test_disk_full_while_preprocessing_keeps_the_existing_destdir_tmpfs(tmp_path, capsys):
    small = _bigger_corpus(tmp_path / "small.txt", 20)
    big = _bigger_corpus(tmp_path / "big.txt", 20000)  # 240k tokens: ~480 KB of uint16 ids
    with small_tmpfs(tmp_path / "fs", "512k") as fs:
        dest = fs / "bin"
        assert preprocess_cli.main(["--trainpref", str(small), "--destdir", str(dest)]) == 0
        before = _files(dest)
        capsys.readouterr()
        code, err = _cli(preprocess_cli.main, ["--trainpref", str(big), "--destdir", str(dest), "--overwrite"], capsys)
        line = _one_error_line(err, "lmtie-preprocess")
        assert code == 2 and f"{fs}: no space left on device while building --destdir {dest}" in line, line
        assert f"the existing {dest} is untouched" in line
        assert _files(dest) == before
        assert sorted(p.name for p in fs.iterdir()) == ["bin"]  # no half-built workdir, no lock file


def test_disk_full_while_preprocessing_simulated(tmp_path, capsys, monkeypatch):
    pp = sys.modules["lmtie.data.preprocess"]  # the module (lmtie.data.preprocess is also the function)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pp, "binarize_file", full)
    small = _bigger_corpus(tmp_path / "small.txt", 20)
    code, err = _cli(preprocess_cli.main, ["--trainpref", str(small), "--destdir", str(tmp_path / "bin")], capsys)
    line = _one_error_line(err, "lmtie-preprocess")
    assert code == 2 and "no space left on device" in line and f"no {tmp_path / 'bin'} was made" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.txt"]


# --- 7. TensorBoard -------------------------------------------------------------------------------
def _scalars(logdir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_tensorboard_gets_the_scalars_and_a_resume_shows_each_step_once(corpus, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is in the test extra: pip install -e '.[test]'")
    ckpt = {"save_interval_updates": 4, "keep_interval_updates": -1}
    tb = tmp_path / "tb"
    _api_run(corpus, tmp_path, max_update=8, ckpt=ckpt, log_interval=1, tensorboard_logdir=str(tb))
    train_loss = _scalars(tb, "train/loss")
    assert [s for s, _ in train_loss] == list(range(1, 9))
    assert [s for s, _ in _scalars(tb, "valid/loss")] == [2, 4, 6, 8]
    # as if killed after logging update 8 with checkpoint_last still at update 4
    shutil.copyfile(tmp_path / "checkpoint_1_4.safetensors", tmp_path / "checkpoint_last.safetensors")
    time.sleep(1.1)  # event files are named by the second: the resumed one sorts after
    _api_run(corpus, tmp_path, max_update=8, ckpt=ckpt, log_interval=1, tensorboard_logdir=str(tb))
    assert len(list(tb.glob("events.out.tfevents.*"))) == 2
    assert _scalars(tb, "train/loss") == train_loss  # 5..8 once each (not twice), the same values again
    assert [s for s, _ in _scalars(tb, "valid/loss")] == [2, 4, 6, 8]
