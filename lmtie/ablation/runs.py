"""The runs of an ablation: planned in this process, each trained and measured in its own.

A run lives in OUTPUT/runs/ARM-seedN with its spec (``ablation_run.json``), lmtie-train's
checkpoints and metrics, and ``result.json`` once it is measured. ``result.json`` marks a run
finished; anything less is resumed by lmtie-train from ``checkpoint_last``. One process per run
makes peak memory that run's own and leaves the parent's signal handling untouched.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import lmtie
from lmtie.config import from_dict, to_dict
from lmtie.errors import UserError
from lmtie.io import atomic_write_text
from lmtie.training.config import CheckpointConfig, DataConfig, OptimizationConfig, RunConfig

SPEC_FILE = "ablation_run.json"
RESULT_FILE = "result.json"
PREEMPTED = 75  # the worker's exit code when a signal stopped training (EX_TEMPFAIL)
_NOT_COMPARED = {("run", "log_format"), ("run", "log_interval"), ("run", "tensorboard_logdir")}


@dataclass
class RunSpec:
    """One arm at one seed: the resolved model config and lmtie-train's configs."""

    arm: str
    seed: int
    model: dict
    data: DataConfig
    optim: OptimizationConfig
    ckpt: CheckpointConfig
    run: RunConfig
    evaluation: dict

    @property
    def name(self) -> str:
        return f"{self.arm}-seed{self.seed}"

    @property
    def save_dir(self) -> Path:
        return Path(self.ckpt.save_dir)

    def to_dict(self) -> dict:
        return {"arm": self.arm, "seed": self.seed, "model": self.model, "data": to_dict(self.data),
                "optimization": to_dict(self.optim), "checkpoint": to_dict(self.ckpt), "run": to_dict(self.run),
                "evaluation": self.evaluation}

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        return cls(d["arm"], d["seed"], d["model"], from_dict(DataConfig, d["data"]),
                   from_dict(OptimizationConfig, d["optimization"]), from_dict(CheckpointConfig, d["checkpoint"]),
                   from_dict(RunConfig, d["run"]), d["evaluation"])


def load_spec(path: str | os.PathLike) -> RunSpec:
    return RunSpec.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def is_finished(spec: RunSpec) -> bool:
    return (spec.save_dir / RESULT_FILE).exists()


def write_spec(spec: RunSpec) -> Path:
    """Record the spec, or check that the one already there is the same run (else results would mix)."""
    path = spec.save_dir / SPEC_FILE
    new = json.loads(json.dumps(spec.to_dict()))  # tuples -> lists, as read back
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        diff = _first_difference(old, new)
        if diff is not None:
            raise UserError(f"{path}: this run was started with {diff[0]}={diff[1]!r}, now {diff[2]!r}; "
                            "run the same command to resume, or give a new --output")
        return path
    spec.save_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(new, indent=2) + "\n")
    return path


def _first_difference(old: dict, new: dict) -> tuple[str, object, object] | None:
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section), new.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if (section, key) not in _NOT_COMPARED and a.get(key) != b.get(key):
                    return f"{section}.{key}", a.get(key), b.get(key)
        elif a != b:
            return section, a, b
    return None


def launch(spec_path: Path) -> int:
    """Train and measure one run in a child process; forward SIGTERM/SIGUSR1 so it checkpoints.

    Returns the child's exit code, or PREEMPTED when a signal came (even if the child was past
    training and finished): the ablation then stops instead of starting the next run.
    """
    env = dict(os.environ)
    root = str(Path(lmtie.__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    child = subprocess.Popen([sys.executable, "-m", "lmtie.ablation.ablate_run", str(spec_path)], env=env)
    received: list[int] = []
    saved = _forward_signals(child, received)
    try:
        code = child.wait()
        return PREEMPTED if received and code == 0 else code
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def _forward_signals(child: subprocess.Popen, received: list[int]) -> dict:
    """Pass preemption signals on to the child (only possible from the main thread)."""
    def forward(signum, frame):
        received.append(signum)
        child.send_signal(signum)

    saved = {}
    for s in (signal.SIGTERM, signal.SIGUSR1):
        try:
            saved[s] = signal.signal(s, forward)
        except ValueError:  # not the main thread (e.g. a notebook worker): the child handles its own
            pass
    return saved


def read_result(spec: RunSpec) -> dict:
    return json.loads((spec.save_dir / RESULT_FILE).read_text(encoding="utf-8"))


def with_save_dir(ckpt: CheckpointConfig, output: Path, name: str) -> CheckpointConfig:
    return dataclasses.replace(ckpt, save_dir=str(output / "runs" / name))
