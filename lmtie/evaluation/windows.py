"""Where each scored token gets its context: documents, blocks, windows and batches (no model code).

The token stream ``x`` is a split's lines concatenated, each ending in ``</s>``. The model input
is the stream shifted right by one behind a leading ``</s>``, ``y = [</s>] + x``, so target
``x[i]`` is predicted from inputs ``y[a..i]``. With ``complete_doc`` the empty lines that separate
documents (a lone ``</s>``) are not scored, as in fairseq: every position here is one of the
*scored stream*, the split without those lines (:func:`scored_line`).

With tokens per sample ``T`` and context window ``C`` (``0 <= C < T``) the stride is ``S = T - C``;
every target is scored exactly once and no input is longer than ``T``. Two alignments:

- ``fairseq`` (the default: fairseq-eval-lm's numbers): the blocks of fairseq's
  ``TokenBlockDataset`` with block size ``S`` (``none``: every ``S`` tokens from position 0;
  ``eos``: each line; ``complete``/``complete_doc``: whole lines packed up to ``S``, the latter
  never across a document), each scored after the ``min(C, T - len(block))`` inputs before it,
  as fairseq's ``LMContextWindowDataset`` prepends them, across block, line and document
  boundaries alike. One change: a block longer than ``T`` (a line longer than ``T``), which
  fairseq feeds whole or skips, is cut into blocks of ``S``.
- ``document``: context never crosses a document (``none``: the split; ``eos``: a line;
  ``complete_doc``: a document; ``complete``: whole lines packed up to ``T``); a document's first
  window scores its first ``T`` targets, each later one the next ``S`` after ``C`` inputs of context.

They agree when ``C = 0``, and for ``none`` when ``T`` is a multiple of ``S``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from lmtie.errors import UserError

BREAK_MODES = ("none", "complete", "complete_doc", "eos")
ALIGNMENTS = ("fairseq", "document")


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


def _check_mode(mode: str) -> None:
    if mode not in BREAK_MODES:
        raise UserError(f"--sample-break-mode {mode!r} is unknown; choose one of {', '.join(BREAK_MODES)}")


def scored_line(size: int, mode: str) -> bool:
    """False for the lines that are not scored: ``complete_doc``'s document separators (a lone ``</s>``)."""
    return not (mode == "complete_doc" and size == 1)


def unscored_lines(line_sizes: Sequence[int], mode: str) -> np.ndarray:
    """:func:`scored_line`, negated, for every line at once (a bool per line)."""
    sizes = np.asarray(line_sizes)
    return sizes == 1 if mode == "complete_doc" else np.zeros(len(sizes), dtype=bool)


def iter_line_blocks(line_sizes: Sequence[int], mode: str, limit: int | None) -> Iterator[tuple[int, int]]:
    """``[start, end)`` spans of the scored stream made of whole lines, as fairseq's ``TokenBlockDataset``
    slices a split: ``none`` one span, ``eos`` one per line, ``complete`` lines packed greedily up to
    ``limit`` tokens (a longer line alone), ``complete_doc`` the same within each document (``limit``
    None: whole documents). One span at a time: a split of any length needs no list of them."""
    _check_mode(mode)
    if mode == "none":
        total = int(np.sum(np.asarray(line_sizes), dtype=np.int64)) if len(line_sizes) else 0
        if total:
            yield 0, total
        return
    start = pos = 0
    for size in (int(s) for s in line_sizes):
        if not scored_line(size, mode):  # a document ends
            if pos > start:
                yield start, pos
            start = pos
            continue
        if mode != "eos" and limit is not None and pos > start and pos + size - start > limit:
            yield start, pos
            start = pos
        pos += size
        if mode == "eos":
            if pos > start:
                yield start, pos
            start = pos
    if pos > start:
        yield start, pos


def document_spans(line_sizes: Sequence[int], mode: str, tokens_per_sample: int) -> list[tuple[int, int]]:
    """The spans across which the ``document`` alignment lets no context flow (see the module docstring)."""
    return list(iter_document_spans(line_sizes, mode, tokens_per_sample))


def iter_document_spans(line_sizes: Sequence[int], mode: str, tokens_per_sample: int
                        ) -> Iterator[tuple[int, int]]:
    """:func:`document_spans`, one span at a time."""
    return iter_line_blocks(line_sizes, mode, None if mode == "complete_doc" else tokens_per_sample)


def make_windows(spans: Sequence[tuple[int, int]], tokens_per_sample: int, context_window: int) -> list[Window]:
    """The ``document`` alignment's windows over ``spans`` (see the module docstring)."""
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


def iter_fairseq_windows(line_sizes: Sequence[int], mode: str, tokens_per_sample: int, context_window: int
                         ) -> Iterator[Window]:
    """The ``fairseq`` alignment's windows (see the module docstring), in stream order."""
    T, C = tokens_per_sample, context_window
    S = check_window(T, C)
    for start, end in iter_line_blocks(line_sizes, mode, S):
        piece = S if (mode == "none" or end - start > T) else end - start
        for s in range(start, end, piece):
            e = min(s + piece, end)
            yield Window(s - min(C, T - (e - s), s), s, e)


def text_windows(line_sizes: Sequence[int], mode: str, tokens_per_sample: int, context_window: int,
                 alignment: str = "fairseq") -> Iterator[Window]:
    """The windows that score a text (its line sizes) under ``alignment``."""
    if alignment == "fairseq":
        return iter_fairseq_windows(line_sizes, mode, tokens_per_sample, context_window)
    if alignment == "document":
        return iter_windows(iter_document_spans(line_sizes, mode, tokens_per_sample), tokens_per_sample,
                            context_window)
    raise UserError(f"--window-alignment {alignment!r} is unknown; choose one of {', '.join(ALIGNMENTS)}")


def longest_window(line_sizes: Sequence[int], mode: str, tokens_per_sample: int, context_window: int = 0,
                   alignment: str = "fairseq") -> int:
    """Length of the longest window :func:`text_windows` makes (at most T), found before any is scored."""
    if mode == "none" and alignment == "document":  # one span: its first window is the longest
        total = int(np.sum(np.asarray(line_sizes), dtype=np.int64)) if len(line_sizes) else 0
        return min(tokens_per_sample, total)
    return max((len(w) for w in text_windows(line_sizes, mode, tokens_per_sample, context_window, alignment)),
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
