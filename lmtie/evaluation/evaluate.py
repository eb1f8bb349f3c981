"""Score an :class:`EvalText` with a model: the one path shared by ``lmtie-eval-lm`` and ``lm.score``."""

from __future__ import annotations

import torch

from lmtie.errors import UserError
from lmtie.evaluation.corpus import EvalText
from lmtie.evaluation.metrics import compute_metrics
from lmtie.evaluation.scoring import score_stream
from lmtie.evaluation.windows import document_spans, make_windows
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
             softmax_batch: int = 4096) -> tuple[torch.Tensor, dict]:
    """(natural-log probability of every token, metrics) for ``text``."""
    if int(sum(text.line_sizes)) != len(text.tokens):
        raise ValueError(f"{text.name}: line sizes add up to {int(sum(text.line_sizes))}, not {len(text.tokens)} tokens")
    spans = document_spans(text.line_sizes, sample_break_mode, tokens_per_sample)
    windows = make_windows(spans, tokens_per_sample, context_window)
    if not windows:
        raise UserError(f"{text.name}: nothing to score (no tokens)")
    logprobs = score_stream(model, text.tokens, windows, eos, pad, batch_size, max_tokens, softmax_batch)
    metrics = compute_metrics(logprobs, text.words, text.bytes, tokens_per_sample, context_window)
    metrics["sample_break_mode"] = sample_break_mode
    return logprobs, metrics
