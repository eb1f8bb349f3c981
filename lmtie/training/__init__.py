"""Training layer: configs, optimiser, checkpoints, the loop, and torchrun support."""

from __future__ import annotations

import contextlib

from lmtie.training.config import CheckpointConfig, DataConfig, OptimizationConfig, RunConfig


def train(model: dict | None = None, data: DataConfig | None = None, optim: OptimizationConfig | None = None,
          ckpt: CheckpointConfig | None = None, run: RunConfig | None = None) -> dict:
    """Train an LM and return the run summary; ``model`` holds config overrides of ``run.arch`` (its family's fields).

    Example: ``train({"share_decoder_input_output_embed": True}, DataConfig(data="data-bin/x"),
    OptimizationConfig(max_update=100))``.

    The save dir is locked for the run (a second run on it is refused, naming the holder's pid).
    SIGTERM/SIGUSR1 (preemption, see :mod:`lmtie.preempt`): during start-up, before the trainer
    exists, it stops at once, writes no checkpoint and returns ``{"preempted_by": NAME,
    "updates": None, "save_dir": ...}``; later the step finishes, ``checkpoint_last`` is written
    and the summary's ``preempted_by`` names the signal.
    """
    from lmtie import preempt

    preempt.install_startup_handlers()  # first: a signal from here on is never a -15/-10 death
    ckpt = ckpt or CheckpointConfig()
    try:
        from lmtie.training import distributed
        from lmtie.training.setup import build
        from lmtie.training.trainer import Trainer

        with contextlib.ExitStack() as on_exit:
            on_exit.callback(distributed.shutdown)
            setup = build(model or {}, data or DataConfig(), optim or OptimizationConfig(), ckpt, run or RunConfig(),
                          on_exit)  # which releases the save dir's lock at the end
            return Trainer(setup).train()
    except preempt.StartupPreempted as e:
        preempt.clear()
        return {"preempted_by": e.signal_name, "updates": None, "save_dir": str(ckpt.save_dir)}
    except OSError as e:
        from lmtie.errors import UserError
        from lmtie.io import is_disk_full

        if not is_disk_full(e):
            raise
        raise UserError(f"{e.filename or ckpt.save_dir}: no space left on device; the last good checkpoint in "
                        f"{ckpt.save_dir} is kept; free some space and run the same command again to resume") from None


__all__ = ["CheckpointConfig", "DataConfig", "OptimizationConfig", "RunConfig", "train"]
