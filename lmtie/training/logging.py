"""Progress output (tqdm, json or simple lines), metrics.jsonl, and optional TensorBoard; rank 0 only."""

from __future__ import annotations

import json
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from lmtie.errors import UserError
from lmtie.io import atomic_write_text

LOG2 = math.log(2)


class MetricsLogger:
    """Writes ``metrics.jsonl`` in --save-dir, one JSON record a line, so curves can be plotted by step.

    Every session first writes a marker. A fresh run (nothing restored, or --reset-optimizer)
    appends ``{"type": "start", "step": 0}`` and leaves any earlier run's records as they are, so
    reusing a --save-dir keeps the old history and the marker shows where the new run begins. A
    run restored at update N first rewrites the file (atomically) keeping only records with step
    <= N, which describe what the checkpoint holds, then appends ``{"type": "resume", "step": N}``:
    records a killed session wrote after its last checkpoint are replaced, never repeated.
    """

    def __init__(self, setup):
        self.run = setup.run
        self.active = setup.dist.is_main
        self.total = setup.optim.max_update or None
        self.start = time.time()
        self.window_start, self.window_tokens = time.time(), 0
        self.window_loss, self.window_ntok = 0.0, 0
        self.bar = None
        self.metrics_path = Path(setup.ckpt.save_dir) / "metrics.jsonl"
        self.tb_logdir = setup.run.tensorboard_logdir if self.active else None
        self.tb = None  # opened by fresh_start / resume, which know where the run starts
        self._summary_writer = self._tensorboard_class() if self.tb_logdir else None

    @staticmethod
    def _tensorboard_class():
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("--tensorboard-logdir needs the tensorboard package: pip install tensorboard")
        return SummaryWriter

    def _open_tensorboard(self, purge_step: int | None) -> None:
        """TensorBoard events in --tensorboard-logdir. A resume at update N passes ``purge_step``
        N + 1: TensorBoard then hides the events a killed session wrote after its checkpoint, so no
        step is shown twice (as metrics.jsonl is trimmed)."""
        if self._summary_writer is not None and self.tb is None:
            self.tb = self._summary_writer(self.tb_logdir, purge_step=purge_step)

    def elapsed(self) -> float:
        return time.time() - self.start

    def _write(self, record: dict) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def fresh_start(self, state) -> None:
        """Mark the start of a fresh run; an existing file from another run is appended to, not cut."""
        if not self.active:
            return
        self._open_tensorboard(None)
        if self._ends_mid_line():  # a crash mid-write: do not glue this record to the torn line
            with open(self.metrics_path, "a", encoding="utf-8") as f:
                f.write("\n")
        self._write({"type": "start", "step": state.step, "epoch": state.epoch, "time": _now()})

    def _ends_mid_line(self) -> bool:
        if not self.metrics_path.exists() or self.metrics_path.stat().st_size == 0:
            return False
        with open(self.metrics_path, "rb") as f:
            f.seek(-1, 2)
            return f.read(1) != b"\n"

    def resume(self, state, checkpoint) -> None:
        """Drop the records after the restored update, then mark the resume (rank 0 only)."""
        if not self.active:
            return
        self._open_tensorboard(state.step + 1)
        kept, dropped, unreadable = self._records_up_to(state.step)
        if unreadable:
            self.message(f"{self.metrics_path}: dropped {unreadable} unreadable line(s) while trimming it to "
                         f"update {state.step}")
        record = {"type": "resume", "step": state.step, "epoch": state.epoch, "checkpoint": str(checkpoint),
                  "dropped_records": dropped, "wall_seconds_before": round(state.train_seconds, 3), "time": _now()}
        atomic_write_text(self.metrics_path, "".join(line + "\n" for line in kept) + json.dumps(record) + "\n")

    def _records_up_to(self, step: int) -> tuple[list[str], int, int]:
        """(lines to keep, records dropped for a later step, lines that are not a JSON record)."""
        if not self.metrics_path.exists():
            return [], 0, 0
        kept, dropped, unreadable = [], 0, 0
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict):
                unreadable += bool(line.strip())
                continue
            at = record.get("step", record.get("updates"))  # a summary names its last update "updates"
            if isinstance(at, int) and at > step:
                dropped += 1
            else:
                kept.append(line)
        return kept, dropped, unreadable

    def message(self, text: str) -> None:
        if self.active:
            (tqdm.write if self.bar is not None else print)(text, file=sys.stderr)

    def train_step(self, state, result, lr: float) -> None:
        if not self.active:
            return
        self.window_tokens += result.ntokens
        if not result.skipped:
            self.window_loss += result.loss_sum
            self.window_ntok += result.ntokens
        if self.run.log_format == "tqdm":
            self._bar_update(state)
        if state.step % self.run.log_interval == 0:
            self._log_window(state, lr, result.grad_norm)

    def _bar_update(self, state) -> None:
        if self.bar is None:
            self.bar = tqdm(total=self.total, initial=state.step - 1, unit="upd", dynamic_ncols=True, file=sys.stderr)
        self.bar.update(1)

    def _log_window(self, state, lr: float, grad_norm: float) -> None:
        seconds = max(time.time() - self.window_start, 1e-9)
        loss = self.window_loss / max(self.window_ntok, 1) / LOG2  # base 2, as fairseq prints
        record = {"type": "train", "step": state.step, "epoch": state.epoch, "loss": loss,
                  "ppl": round(2 ** loss, 2), "lr": lr, "gnorm": round(grad_norm, 3),
                  "tokens_per_s": round(self.window_tokens / seconds, 1), "wall": round(self.elapsed(), 1)}
        self.window_start, self.window_tokens, self.window_loss, self.window_ntok = time.time(), 0, 0.0, 0
        self._write(record)
        self._emit(record, state.step)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3f}", ppl=f"{2 ** loss:.1f}", lr=f"{lr:.2e}",
                                 tok_s=f"{record['tokens_per_s']:.0f}")

    def valid(self, state, loss_nats: float, subset: str | None = None, scores: dict | None = None) -> None:
        """A validation record: type "valid" for the first --valid-subset, "valid_NAME" for each other one;
        ``scores`` (BLEU, chrF of --eval-bleu) join it."""
        if not self.active:
            return
        loss = loss_nats / LOG2
        record = {"type": "valid" if subset is None else f"valid_{subset}", "step": state.step, "epoch": state.epoch,
                  "loss": loss,
                  "ppl": round(2 ** loss, 2), **{k: round(v, 2) for k, v in (scores or {}).items()},
                  "wall": round(self.elapsed(), 1)}
        self._write(record)
        self._emit(record, state.step, force=True)

    def _emit(self, record: dict, step: int, force: bool = False) -> None:
        fmt = self.run.log_format
        if fmt == "json":
            print(json.dumps(record), flush=True)
        elif fmt == "simple" or (fmt == "tqdm" and force):
            text = " | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items())
            self.message(text)
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{record['type']}/{k}", v, step)

    def summary(self, summary: dict) -> None:
        if not self.active:
            return
        self._write({"type": "summary", **summary})
        if self.tb is not None:
            self.tb.close()
            self.tb = None

    def close_bar(self) -> None:
        """End the progress bar and flush TensorBoard (the loop has ended, maybe by an error)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.tb is not None:
            self.tb.flush()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
