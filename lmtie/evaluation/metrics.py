"""Perplexity and friends from summed token log-likelihoods.

Token perplexity depends on the tokeniser; word-level perplexity (total NLL over whitespace
words) and bits per byte (total NLL in bits over UTF-8 bytes) do not, so word, char, byte and
subword models, tied or untied, can be compared on the same text.
"""

from __future__ import annotations

import math

import torch

LN2 = math.log(2.0)


def compute_metrics(logprobs: torch.Tensor, words: int | None, nbytes: int | None,
                    tokens_per_sample: int, context_window: int) -> dict:
    """Metrics of a scored stream; ``logprobs`` are natural-log probabilities of each token."""
    tokens = int(logprobs.numel())
    nll = -float(logprobs.double().sum())  # total NLL in nats, summed in float64
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
    lines.append(f"Windows: tokens per sample {m['tokens_per_sample']}, context window {m['context_window']}, "
                 f"stride {m['stride']}")
    return "\n".join(lines)
