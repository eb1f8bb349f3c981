"""Where each scored token gets its context: documents, windows and batches (no model code).

The token stream ``x`` is a split's lines concatenated, each ending in ``</s>``. The model input
is the stream shifted right by one behind a leading ``</s>``, ``y = [</s>] + x``, so target
``x[i]`` is predicted from inputs ``y[a..i]``. A document starts right after a ``</s>``, so its
first input is always ``</s>``: resetting context at a document start means ``a`` never goes
below the document start.

With tokens per sample ``T`` and context window ``C`` (``0 <= C < T``) the stride is ``S = T - C``.
A document's first window scores its first ``T`` targets; each later window scores the next
``S`` targets and sees the ``C`` inputs before them as context only, so every target is scored
exactly once and no input is longer than ``T``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from lmtie.errors import UserError

BREAK_MODES = ("none", "complete", "complete_doc", "eos")


@dataclass(frozen=True)
class Window:
    """Inputs ``y[start:end]``; targets ``x[start:end]``, of which ``x[score_from:end]`` are scored."""

    start: int
    score_from: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


def check_window(tokens_per_sample: int, context_window: int) -> int:
    """The stride ``T - C``, or a UserError naming the flag to change."""
    if tokens_per_sample < 1:
        raise UserError(f"--tokens-per-sample {tokens_per_sample} must be at least 1")
    if not 0 <= context_window < tokens_per_sample:
        raise UserError(f"--context-window {context_window} must be >= 0 and smaller than --tokens-per-sample "
                        f"{tokens_per_sample} (the stride T - C must be positive); the largest useful value is "
                        f"{tokens_per_sample - 1}")
    return tokens_per_sample - context_window


def document_spans(line_sizes: Sequence[int], mode: str, tokens_per_sample: int) -> list[tuple[int, int]]:
    """Split the stream into ``[start, end)`` spans across which no context flows.

    ``none``: one span. ``eos``: one per line. ``complete_doc``: documents end after an empty
    line (a lone ``</s>``). ``complete``: whole lines packed greedily into spans of at most
    ``T`` tokens (a longer line is a span of its own), as fairseq packs its blocks.
    """
    return list(iter_document_spans(line_sizes, mode, tokens_per_sample))


def iter_document_spans(line_sizes: Sequence[int], mode: str, tokens_per_sample: int
                        ) -> Iterator[tuple[int, int]]:
    """:func:`document_spans`, one span at a time (a split of any length needs no list of them)."""
    if mode not in BREAK_MODES:
        raise UserError(f"--sample-break-mode {mode!r} is unknown; choose one of {', '.join(BREAK_MODES)}")
    if mode == "none":
        total = int(np.sum(np.asarray(line_sizes), dtype=np.int64)) if len(line_sizes) else 0
        if total:
            yield 0, total
        return
    start = pos = 0
    for size in (int(s) for s in line_sizes):
        if mode == "complete" and pos > start and pos + size - start > tokens_per_sample:
            yield start, pos
            start = pos
        pos += size
        if mode == "eos" or (mode == "complete_doc" and size == 1):
            yield start, pos
            start = pos
    if pos > start:
        yield start, pos


def make_windows(spans: Sequence[tuple[int, int]], tokens_per_sample: int, context_window: int) -> list[Window]:
    """Windows that score every target of every span exactly once (see the module docstring)."""
    return list(iter_windows(spans, tokens_per_sample, context_window))


def iter_windows(spans: Iterable[tuple[int, int]], tokens_per_sample: int, context_window: int
                 ) -> Iterator[Window]:
    """:func:`make_windows`, one window at a time, in stream order."""
    stride = check_window(tokens_per_sample, context_window)
    for doc_start, doc_end in spans:
        end = min(doc_start + tokens_per_sample, doc_end)
        yield Window(doc_start, doc_start, end)
        while end < doc_end:
            score_from, end = end, min(end + stride, doc_end)
            yield Window(max(doc_start, score_from - context_window), score_from, end)


def longest_window(line_sizes: Sequence[int], mode: str, tokens_per_sample: int) -> int:
    """Length of the longest window :func:`iter_windows` makes (a document's first one, at most T), in one
    pass over the line sizes, without making any window."""
    if mode == "none":
        total = int(np.sum(np.asarray(line_sizes), dtype=np.int64)) if len(line_sizes) else 0
        return min(tokens_per_sample, total)
    return max((min(tokens_per_sample, e - s) for s, e in iter_document_spans(line_sizes, mode, tokens_per_sample)),
               default=0)


def check_max_tokens(longest: int, max_tokens: int | None) -> None:
    if max_tokens is not None and longest > max_tokens:
        raise UserError(f"--max-tokens {max_tokens} is smaller than one window "
                        f"({longest} tokens); raise it to at least --tokens-per-sample")


def batches(windows: Iterable[Window], batch_size: int | None, max_tokens: int | None) -> Iterator[list[Window]]:
    """Consecutive groups of windows with at most ``batch_size`` rows and ``max_tokens`` padded tokens.

    A sequence of windows is checked against ``max_tokens`` before the first group; an iterator
    (streamed windows), as each window comes (check it first with :func:`longest_window`).
    """
    if isinstance(windows, Sequence) and windows:
        check_max_tokens(max(len(w) for w in windows), max_tokens)
    group: list[Window] = []
    longest = 0
    for w in windows:
        check_max_tokens(len(w), max_tokens)
        longest_if = max(longest, len(w))
        full = (batch_size is not None and len(group) >= batch_size) or \
               (max_tokens is not None and longest_if * (len(group) + 1) > max_tokens)
        if group and full:
            yield group
            group, longest_if = [], len(w)
        group.append(w)
        longest = longest_if
    if group:
        yield group
