"""Score an :class:`EvalText` with a model: the one path shared by ``lmtie-eval-lm`` and ``lm.score``."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from lmtie.errors import UserError
from lmtie.evaluation.corpus import EvalText
from lmtie.evaluation.metrics import ExactSum, metrics_from_sums
from lmtie.evaluation.scoring import check_tiling, iter_scores
from lmtie.evaluation.windows import check_max_tokens, check_window, longest_window, text_windows
from lmtie.models import unwrap


def default_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    return torch.device(device)


def window_settings(model, ckpt, tokens_per_sample: int | None, sample_break_mode: str | None) -> tuple[int, str]:
    """Unset options fall back to the checkpoint's training data config; T must fit the positions."""
    data = (ckpt.config or {}).get("data", {}) if ckpt is not None else {}
    limit = unwrap(model).max_positions
    T = tokens_per_sample or data.get("tokens_per_sample") or limit
    mode = sample_break_mode or data.get("sample_break_mode") or "none"
    if T > limit:
        raise UserError(f"--tokens-per-sample {T} exceeds the model's {limit} positions "
                        "(max_target_positions); pass a smaller value")
    return int(T), mode


def evaluate(model, text: EvalText, eos: int, pad: int, tokens_per_sample: int, context_window: int = 0,
             sample_break_mode: str = "none", batch_size: int | None = None, max_tokens: int | None = None,
             softmax_batch: int = 4096, keep_scores: bool = True,
             on_scores: Callable[[int, torch.Tensor], None] | None = None,
             window_alignment: str = "fairseq") -> tuple[torch.Tensor | None, dict]:
    """(natural-log probability of every scored token, metrics) for ``text``.

    The scored tokens are ``text.scored_tokens(sample_break_mode)``: all of them but ``complete_doc``'s
    document separators; positions below are positions among them. ``window_alignment`` picks where
    windows start (:mod:`lmtie.evaluation.windows`).

    Streams: windows are made and scored a batch at a time, each batch reading only its tokens
    of ``text.tokens`` (a split's memory map), and the NLL is summed as the scores come (an
    exact float64 sum, so the metrics do not depend on how the stream is batched). The per-token
    scores are kept only with ``keep_scores`` (else the first element is None); ``on_scores``
    gets each batch's ``(position, log-probs)`` as it is scored, in stream order.
    """
    if int(np.sum(np.asarray(text.line_sizes), dtype=np.int64)) != len(text.tokens):
        raise ValueError(f"{text.name}: line sizes add up to {int(np.sum(np.asarray(text.line_sizes)))}, "
                         f"not {len(text.tokens)} tokens")
    check_window(tokens_per_sample, context_window)
    longest = longest_window(text.line_sizes, sample_break_mode, tokens_per_sample, context_window, window_alignment)
    if not longest:
        raise UserError(f"{text.name}: nothing to score (no tokens)")
    check_max_tokens(longest, max_tokens)
    windows = text_windows(text.line_sizes, sample_break_mode, tokens_per_sample, context_window, window_alignment)
    stream = text.scored_tokens(sample_break_mode)
    n_tokens = len(stream)
    logprobs = torch.empty(n_tokens, dtype=torch.float64) if keep_scores else None
    total, pos = ExactSum(), 0
    for start, lp in iter_scores(model, stream, windows, eos, pad, batch_size, max_tokens, softmax_batch):
        check_tiling(pos, start)
        total.add(lp)
        if logprobs is not None:
            logprobs[start:start + len(lp)] = lp
        if on_scores is not None:
            on_scores(start, lp)
        pos = start + len(lp)
    check_tiling(pos, pos, n_tokens)
    metrics = metrics_from_sums(-total.value(), total.count, text.words, text.bytes, tokens_per_sample,
                                context_window)
    metrics.update(sample_break_mode=sample_break_mode, window_alignment=window_alignment)
    return logprobs, metrics
