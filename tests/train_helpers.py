"""Small corpora and command runners shared by the training tests."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from lmtie.data import PreprocessConfig, preprocess

WORDS = "the cat sat on a mat and dog ran to big red house with small blue door".split()


def make_corpus(root: Path, lines: int = 300, seed: int = 0) -> Path:
    """A word-level data-bin with train and valid splits, built in ``root``."""
    rng = random.Random(seed)
    for name, n in (("train", lines), ("valid", max(lines // 10, 5))):
        text = "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 15))) for _ in range(n))
        (root / f"{name}.txt").write_text(text + "\n")
    return preprocess(PreprocessConfig(trainpref=str(root / "train.txt"), validpref=str(root / "valid.txt"),
                                       destdir=str(root / "bin")))


TINY = ["--decoder-layers", "1", "--decoder-embed-dim", "32", "--decoder-ffn-embed-dim", "64",
        "--decoder-attention-heads", "2", "--tokens-per-sample", "16", "--batch-size", "4",
        "--log-format", "none", "--warmup-updates", "5", "--lr", "1e-3"]


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("OMP_NUM_THREADS", "1")
    return e


def train_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "lmtie.cli.train", *args]


def run_train(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(train_cmd(*args), env=env(), capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"lmtie-train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def metrics(save_dir: Path, kind: str = "train") -> list[dict]:
    lines = (save_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def train_fails(*args: str, match: str) -> subprocess.CompletedProcess:
    """lmtie-train refuses ``args``: exit 2, and its last stderr line is one ``lmtie-train: error:`` line with ``match``."""
    proc = run_train(*args, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("lmtie-train: error:") and match in last, last
    return proc


def kill_after_checkpoint(args: list[str], save_dir: Path, update: int = 20) -> None:
    """Start lmtie-train ``args`` (which write interval checkpoints into ``save_dir``) and SIGKILL it once the
    checkpoint of ``update`` exists."""
    import signal
    import time

    proc = subprocess.Popen(train_cmd(*args), env=env())
    deadline = time.time() + 120
    while not list(save_dir.glob(f"checkpoint_*_{update}.safetensors")) and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
