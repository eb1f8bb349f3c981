"""Activation checkpointing (``--checkpoint-activations``), for every family through the model protocol.

Each of ``shard_units()`` (the blocks) keeps only its input in the forward pass and recomputes its
activations in the backward pass (``torch.utils.checkpoint``, non-reentrant). The RNG state is
replayed, so dropout masks, the loss and the gradients are those of the same step without it. The
blocks keep their names, so checkpoints are the same files either way.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def checkpoint_activations(model) -> None:
    """Make each block of ``model`` (a LanguageModel, unwrapped) recompute its activations in backward."""
    for block in model.shard_units():
        block.forward = _recomputing(block.forward)


def _recomputing(forward):
    def run(*args, **kwargs):
        if not torch.is_grad_enabled():  # evaluation and generation: nothing to save memory for
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run
