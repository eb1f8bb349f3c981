"""The pure windowing logic: documents, windows, batches (no model)."""

import random

import pytest

from lmtie.errors import UserError
from lmtie.evaluation.windows import Window, batches, document_spans, make_windows


def test_windows_hand_computed_with_context():
    # T=4, C=2, S=2: the first window scores 4 targets, later ones score 2 after 2 of context
    assert make_windows([(0, 10)], 4, 2) == [Window(0, 0, 4), Window(2, 4, 6), Window(4, 6, 8), Window(6, 8, 10)]
    assert make_windows([(0, 5)], 4, 2) == [Window(0, 0, 4), Window(2, 4, 5)]


def test_windows_without_context_are_fairseq_blocks():
    assert make_windows([(0, 10)], 4, 0) == [Window(0, 0, 4), Window(4, 4, 8), Window(8, 8, 10)]


def test_context_never_crosses_a_document_start():
    # second document starts at 3; its windows never look before it
    assert make_windows([(0, 3), (3, 9)], 4, 3) == [Window(0, 0, 3), Window(3, 3, 7), Window(4, 7, 8),
                                                    Window(5, 8, 9)]


def test_document_spans_per_break_mode():
    sizes = [3, 1, 2, 1, 4]  # lines 2 and 4 are empty (a lone </s>)
    assert document_spans(sizes, "none", 4) == [(0, 11)]
    assert document_spans(sizes, "eos", 4) == [(0, 3), (3, 4), (4, 6), (6, 7), (7, 11)]
    # complete_doc: the empty lines are not scored (positions count the scored stream, 3 + 2 + 4 tokens)
    assert document_spans(sizes, "complete_doc", 4) == [(0, 3), (3, 5), (5, 9)]
    assert document_spans(sizes, "complete", 6) == [(0, 6), (6, 11)]
    assert document_spans([2, 9, 1], "complete", 4) == [(0, 2), (2, 11), (11, 12)]  # a long line stands alone


@pytest.mark.parametrize("seed", range(20))
def test_every_target_is_scored_exactly_once_with_bounded_context(seed):
    rng = random.Random(seed)
    sizes = [rng.randint(1, 9) for _ in range(rng.randint(1, 12))]
    T = rng.randint(1, 12)
    C = rng.randint(0, T - 1)
    mode = rng.choice(["none", "eos", "complete", "complete_doc"])
    spans = document_spans(sizes, mode, T)
    windows = make_windows(spans, T, C)
    scored = sorted(i for w in windows for i in range(w.score_from, w.end))
    assert scored == list(range(sum(s for s in sizes if mode != "complete_doc" or s != 1)))
    for w in windows:
        ds = next(s for s, e in spans if s <= w.score_from < e)
        assert len(w) <= T and w.start >= ds
        if w.score_from > ds:  # not a document's first window: exactly C of context, or all there is
            assert w.score_from - w.start == min(C, w.score_from - ds)


@pytest.mark.parametrize("C", [4, 5])
def test_context_window_must_be_smaller_than_tokens_per_sample(C):
    with pytest.raises(UserError, match="--context-window .* smaller than --tokens-per-sample 4"):
        make_windows([(0, 10)], 4, C)


def test_unknown_break_mode_is_refused():
    with pytest.raises(UserError, match="--sample-break-mode"):
        document_spans([3], "sentence", 4)


def test_batches_respect_batch_size_and_max_tokens():
    windows = make_windows([(0, 30)], 8, 4)  # lengths 8, 8, ... (last may be shorter)
    assert [len(g) for g in batches(windows, 2, None)] == [2, 2, 2, 1]
    for g in batches(windows, None, 17):
        assert max(len(w) for w in g) * len(g) <= 17
    assert [w for g in batches(windows, 3, 40) for w in g] == windows
    with pytest.raises(UserError, match="--max-tokens 7"):
        list(batches(windows, None, 7))
