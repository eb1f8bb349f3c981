"""Perplexity and friends from summed token log-likelihoods.

Token perplexity depends on the tokeniser; word-level perplexity (total NLL over whitespace
words) and bits per byte (total NLL in bits over UTF-8 bytes) do not, so word, char, byte and
subword models, tied or untied, can be compared on the same text.
"""

from __future__ import annotations

import math

import numpy as np
import torch

LN2 = math.log(2.0)
_SCALE = 1074 + 53  # 2**-_SCALE divides every float64 mantissa unit: sums below are exact integers


class ExactSum:
    """The correctly rounded sum of a stream of float64 values, however the stream is cut into
    pieces: scores summed batch by batch give exactly what one sum over all of them would.

    Each value is ``M * 2**(e - 53)`` with an integer mantissa ``|M| < 2**53`` (``np.frexp``);
    the mantissas are added per exponent in int64 (split in 26-bit halves, so no overflow below
    2**36 values a call) and the groups into one Python integer in units of ``2**-1127``.
    Non-finite values (an impossible target gives ``-inf``) are summed apart, in float.
    """

    def __init__(self) -> None:
        self._units = 0  # the finite sum, in units of 2**-_SCALE
        self._nonfinite = 0.0
        self.count = 0

    def add(self, values) -> None:
        v = np.asarray(values.cpu().numpy() if isinstance(values, torch.Tensor) else values, dtype=np.float64).ravel()
        self.count += v.size
        finite = np.isfinite(v)
        if not finite.all():
            self._nonfinite += float(v[~finite].sum())
            v = v[finite]
        if not v.size:
            return
        mant, exp = np.frexp(v)
        m = (mant * float(1 << 53)).astype(np.int64)  # exact: |m| < 2**53
        order = np.argsort(exp, kind="stable")
        exp, m = exp[order], m[order]
        starts = np.flatnonzero(np.r_[True, exp[1:] != exp[:-1]])
        hi = np.add.reduceat(m >> 26, starts)  # floor division: m == hi * 2**26 + lo, 0 <= lo < 2**26
        lo = np.add.reduceat(m & ((1 << 26) - 1), starts)
        for e, h, l in zip(exp[starts].tolist(), hi.tolist(), lo.tolist()):
            self._units += ((h << 26) + l) << (e - 53 + _SCALE)

    def value(self) -> float:
        """The sum, rounded once to the nearest float64."""
        try:
            finite = self._units / (1 << _SCALE)  # int / int rounds correctly
        except OverflowError:  # beyond float64: as a float sum would end
            finite = math.inf if self._units > 0 else -math.inf
        return finite + self._nonfinite if self._nonfinite else finite


def compute_metrics(logprobs: torch.Tensor, words: int | None, nbytes: int | None,
                    tokens_per_sample: int, context_window: int) -> dict:
    """Metrics of a scored stream; ``logprobs`` are natural-log probabilities of each token."""
    total = ExactSum()
    total.add(logprobs.double())
    return metrics_from_sums(-total.value(), total.count, words, nbytes, tokens_per_sample, context_window)


def metrics_from_sums(nll: float, tokens: int, words: int | None, nbytes: int | None,
                      tokens_per_sample: int, context_window: int) -> dict:
    """Metrics from the total NLL in nats (a correctly rounded float64 sum) over ``tokens`` tokens."""
    nll_nats = nll / tokens
    return {
        "loss": nll_nats / LN2,  # mean NLL in bits per token, as fairseq prints
        "nll_nats": nll_nats,
        "ppl": math.exp(nll_nats),
        "word_ppl": math.exp(nll / words) if words else None,
        "bits_per_byte": nll / LN2 / nbytes if nbytes else None,
        "tokens": tokens,
        "words": words,
        "bytes": nbytes,
        "total_nll_nats": nll,
        "context_window": context_window,
        "stride": tokens_per_sample - context_window,
        "tokens_per_sample": tokens_per_sample,
    }


def format_metrics(m: dict) -> str:
    """Human-readable summary: fairseq's 'Loss (base 2) ... Perplexity' line, then the rest."""
    lines = [f"Loss (base 2): {m['loss']:.4f}, Perplexity: {m['ppl']:.2f}",
             f"NLL (nats): {m['nll_nats']:.4f} per token over {m['tokens']} tokens"]
    if m["word_ppl"] is not None:
        lines.append(f"Word-level perplexity: {m['word_ppl']:.2f} ({m['words']} whitespace-separated words)")
    if m["bits_per_byte"] is not None:
        lines.append(f"Bits per byte: {m['bits_per_byte']:.4f} ({m['bytes']} UTF-8 bytes)")
    else:
        lines.append("Bits per byte: not known (no byte count of the raw text: a data-bin without an lmtie "
                     "manifest needs --bytes-from RAW_TEXT_FILE)")
    align = f", {m['window_alignment']} alignment" if m.get("window_alignment") else ""
    lines.append(f"Windows: tokens per sample {m['tokens_per_sample']}, context window {m['context_window']}, "
                 f"stride {m['stride']}{align}")
    return "\n".join(lines)
