"""Training layer: configs, optimiser, checkpoints, the loop, and torchrun support."""

from __future__ import annotations

from lmtie.training.config import CheckpointConfig, DataConfig, OptimizationConfig, RunConfig


def train(model: dict | None = None, data: DataConfig | None = None, optim: OptimizationConfig | None = None,
          ckpt: CheckpointConfig | None = None, run: RunConfig | None = None) -> dict:
    """Train an LM and return the run summary; ``model`` holds config overrides of ``run.arch`` (its family's fields).

    Example: ``train({"share_decoder_input_output_embed": True}, DataConfig(data="data-bin/x"),
    OptimizationConfig(max_update=100))``.
    """
    from lmtie.training import distributed
    from lmtie.training.setup import build
    from lmtie.training.trainer import Trainer

    setup = build(model or {}, data or DataConfig(), optim or OptimizationConfig(), ckpt or CheckpointConfig(),
                  run or RunConfig())
    try:
        return Trainer(setup).train()
    finally:
        distributed.shutdown()


__all__ = ["CheckpointConfig", "DataConfig", "OptimizationConfig", "RunConfig", "train"]
