"""Per-token log-probabilities of a token stream, window by window, under ``torch.inference_mode``.

Only scored positions go through the output layer, ``softmax_batch`` rows at a time, so memory
holds (rows x vocabulary) logits, never (batch x window x vocabulary).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from lmtie.evaluation.windows import Window, batches
from lmtie.models import unwrap


def _batch_tensors(stream: torch.Tensor, group: Sequence[Window], eos: int, pad: int):
    """(inputs (B, L), targets (B, L), scored mask (B, L)); rows are right-padded with ``pad``."""
    L = max(len(w) for w in group)
    inputs = torch.full((len(group), L), pad, dtype=torch.long)
    targets = torch.full((len(group), L), pad, dtype=torch.long)
    scored = torch.zeros((len(group), L), dtype=torch.bool)
    for row, w in enumerate(group):
        n = len(w)
        targets[row, :n] = stream[w.start:w.end]
        inputs[row, 1:n] = stream[w.start:w.end - 1]
        inputs[row, 0] = stream[w.start - 1] if w.start > 0 else eos  # y = [</s>] + x
        scored[row, w.score_from - w.start:n] = True
    return inputs, targets, scored


def _target_logprobs(model, features: torch.Tensor, targets: torch.Tensor, softmax_batch: int) -> torch.Tensor:
    """log p(target) for (n, d) features and (n,) targets, ``softmax_batch`` rows at a time."""
    out = torch.empty(len(targets), dtype=torch.float64, device=features.device)
    for s in range(0, len(targets), softmax_batch):
        logits = model.logits(features[s:s + softmax_batch])  # (n, V)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # half precision: softmax in fp32
        out[s:s + softmax_batch] = _logprob_of(logits, targets[s:s + softmax_batch]).double()
    return out


def _logprob_of(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[target] per row, in place over ``logits``: no second (n, V) tensor."""
    picked = logits.gather(1, targets[:, None]).squeeze(1)  # (n,)
    top = logits.amax(dim=1, keepdim=True)  # (n, 1)
    return picked - top.squeeze(1) - logits.sub_(top).exp_().sum(dim=1).log()


def score_stream(model: torch.nn.Module, stream: torch.Tensor, windows: Sequence[Window], eos: int, pad: int,
                 batch_size: int | None = None, max_tokens: int | None = None,
                 softmax_batch: int = 4096) -> torch.Tensor:
    """Natural-log probability of every token of ``stream`` (float64, CPU), each scored once."""
    m = unwrap(model)
    device = m.input_embedding.weight.device
    stream = stream.long().cpu()
    result = torch.full((len(stream),), float("nan"), dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for group in batches(windows, batch_size, max_tokens):
                inputs, targets, scored = _batch_tensors(stream, group, eos, pad)
                feats = m.features(inputs.to(device))  # (B, L, d_out)
                lp = _target_logprobs(m, feats[scored.to(device)], targets[scored].to(device), softmax_batch)
                result[_stream_positions(group)] = lp.cpu()
    finally:
        model.train(was_training)
    if torch.isnan(result).any():
        raise RuntimeError(f"{int(torch.isnan(result).sum())} tokens were never scored; the windows are wrong")
    return result


def _stream_positions(group: Sequence[Window]) -> torch.Tensor:
    """Stream index of each scored position, in the row-major order of the scored mask."""
    return torch.cat([torch.arange(w.score_from, w.end) for w in group])
