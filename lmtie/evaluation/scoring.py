"""Per-token log-probabilities of a token stream, window by window, under ``torch.inference_mode``.

Only scored positions go through the output layer, ``softmax_batch`` rows at a time, so memory
holds (rows x vocabulary) logits, never (batch x window x vocabulary). The stream may be a
tensor or a numpy array (the memory map of a split): each batch reads only its own tokens, and
:func:`iter_scores` hands back each batch's scores as it goes, so nothing grows with the stream.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from lmtie.evaluation.windows import Window, batches
from lmtie.models import unwrap


def token_slice(stream, start: int, end: int) -> torch.Tensor:
    """``stream[start:end]`` as a new int64 CPU tensor; ``stream`` is a tensor or a numpy array (a memmap)."""
    if isinstance(stream, torch.Tensor):
        return stream[start:end].to("cpu", torch.long)
    return torch.from_numpy(np.array(stream[start:end], dtype=np.int64))


def _batch_tensors(stream, group: Sequence[Window], eos: int, pad: int):
    """(inputs (B, L), targets (B, L), scored mask (B, L)); rows are right-padded with ``pad``.

    One slice of the stream, from the token before the earliest window to the end of the latest,
    holds every input and target (consecutive windows: about the batch's tokens)."""
    first = max(min(w.start for w in group) - 1, 0)
    tokens = token_slice(stream, first, max(w.end for w in group))
    L = max(len(w) for w in group)
    inputs = torch.full((len(group), L), pad, dtype=torch.long)
    targets = torch.full((len(group), L), pad, dtype=torch.long)
    scored = torch.zeros((len(group), L), dtype=torch.bool)
    for row, w in enumerate(group):
        n, s, e = len(w), w.start - first, w.end - first
        targets[row, :n] = tokens[s:e]
        inputs[row, 1:n] = tokens[s:e - 1]
        inputs[row, 0] = tokens[s - 1] if w.start > 0 else eos  # y = [</s>] + x
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


def iter_scores(model: torch.nn.Module, stream, windows: Iterable[Window], eos: int, pad: int,
                batch_size: int | None = None, max_tokens: int | None = None,
                softmax_batch: int = 4096) -> Iterator[tuple[int, torch.Tensor]]:
    """``(position, log-probs)`` per batch of windows: the natural-log probabilities (float64, CPU) of
    the stream's tokens ``position, position + 1, ...``. Consecutive batches continue where the last
    one stopped, so the pieces tile the stream in order, each token scored once."""
    m = unwrap(model)
    device = m.input_embedding.weight.device
    was_training = model.training
    model.eval()
    try:
        for group in batches(windows, batch_size, max_tokens):
            for a, b in zip(group, group[1:]):
                check_tiling(a.end, b.score_from)
            with torch.inference_mode():  # entered per batch: never held across the yield
                inputs, targets, scored = _batch_tensors(stream, group, eos, pad)
                feats = m.features(inputs.to(device))  # (B, L, d_out)
                lp = _target_logprobs(m, feats[scored.to(device)], targets[scored].to(device), softmax_batch)
                del feats
                lp = lp.cpu()
            yield group[0].score_from, lp
    finally:
        model.train(was_training)


def check_tiling(position: int, start: int, total: int | None = None) -> None:
    """Scores must arrive in order and, at the end, cover all ``total`` tokens; else the windows are wrong."""
    if start != position:
        raise RuntimeError(f"scores for token {start} arrived where token {position} was due; the windows are wrong")
    if total is not None and position != total:
        raise RuntimeError(f"{total - position} tokens were never scored; the windows are wrong")


def score_stream(model: torch.nn.Module, stream, windows: Sequence[Window], eos: int, pad: int,
                 batch_size: int | None = None, max_tokens: int | None = None,
                 softmax_batch: int = 4096) -> torch.Tensor:
    """Natural-log probability of every token of ``stream`` (float64, CPU), each scored once."""
    result = torch.empty((len(stream),), dtype=torch.float64)
    pos = 0
    for start, lp in iter_scores(model, stream, windows, eos, pad, batch_size, max_tokens, softmax_batch):
        check_tiling(pos, start)
        result[start:start + len(lp)] = lp
        pos = start + len(lp)
    check_tiling(pos, pos, len(stream))
    return result
