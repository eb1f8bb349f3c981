"""fairseq-eval-lm's window alignment (the default) against a brute force of fairseq's procedure, and
complete_doc scored as fairseq scores it."""

import random

import numpy as np
import pytest
import torch

from lmtie.cli import eval_lm
from lmtie.data.lm_dataset import block_slices
from lmtie.evaluation.corpus import EvalText
from lmtie.evaluation.evaluate import evaluate
from lmtie.evaluation.windows import text_windows
from eval_helpers import checkpoint_for, corpus_text, fairseq_rule_logprobs, make_data_bin, tiny_model

V, EOS, PAD = 24, 2, 1


def _text(seed: int, lines: int = 9, longest: int = 7) -> EvalText:
    """Random lines (ids 4..V-1, each ending in </s>); about one in four is empty (a lone </s>)."""
    rng = random.Random(seed)
    sizes = [1 if rng.random() < 0.25 else rng.randint(2, longest) for _ in range(lines)]
    ids = []
    for k in sizes:
        ids += [rng.randrange(4, V) for _ in range(k - 1)] + [EOS]
    return EvalText(torch.tensor(ids), np.array(sizes), None, None, f"seed {seed}")


@pytest.mark.parametrize("mode", ["none", "eos", "complete", "complete_doc"])
@pytest.mark.parametrize("T,C", [(8, 0), (8, 3), (8, 4), (8, 7), (5, 2), (12, 5)])
def test_fairseq_alignment_matches_a_brute_force_of_fairseqs_procedure(mode, T, C):
    model = tiny_model(V, dtype=torch.float64)
    for seed in range(2):
        text = _text(seed, longest=11)  # some lines longer than T - C, some longer than T
        got, m = evaluate(model, text, EOS, PAD, T, C, mode, batch_size=3)
        want = fairseq_rule_logprobs(model, text.tokens, text.line_sizes.tolist(), mode, T, C, EOS)
        assert len(got) == len(want) == m["tokens"]
        assert torch.allclose(got, want, atol=1e-10, rtol=0)
        assert m["window_alignment"] == "fairseq"


@pytest.mark.parametrize("T,C,same", [(8, 4, True), (12, 8, True), (8, 3, False), (12, 5, False), (8, 0, True)])
def test_the_two_alignments_agree_exactly_when_T_is_a_multiple_of_the_stride(T, C, same):
    model = tiny_model(V, dtype=torch.float64)
    text = _text(3, lines=14)
    fs, m_fs = evaluate(model, text, EOS, PAD, T, C, "none", batch_size=4)
    doc, m_doc = evaluate(model, text, EOS, PAD, T, C, "none", batch_size=4, window_alignment="document")
    assert m_fs["tokens"] == m_doc["tokens"] == len(text.tokens)  # the same tokens, other contexts
    assert torch.allclose(fs, doc, atol=1e-12, rtol=0) is same  # every token sees the same context, or not


@pytest.mark.parametrize("alignment", ["fairseq", "document"])
def test_complete_doc_scores_no_separator_line(alignment):
    text = _text(4, lines=30)
    separators = int((text.line_sizes == 1).sum())
    assert separators > 3
    _, m = evaluate(tiny_model(V), text, EOS, PAD, 8, 3, "complete_doc", window_alignment=alignment)
    assert m["tokens"] == len(text.tokens) - separators


def test_complete_doc_without_context_scores_the_training_blocks():
    # fairseq's eval blocks are its training blocks: whole lines packed up to T within a document
    text = _text(5, lines=40)
    sizes, T = text.line_sizes, 9
    starts, ends = block_slices(sizes, T, "complete_doc")
    train_blocks = [text.tokens[s:e].tolist() for s, e in zip(starts, ends)]
    scored = text.scored_tokens("complete_doc")
    windows = list(text_windows(sizes, "complete_doc", T, 0))
    assert [scored[w.score_from:w.end].tolist() for w in windows] == train_blocks
    assert all(w.start == w.score_from for w in windows)


def test_eval_lm_prints_its_alignment_and_takes_the_document_one(tmp_path, capsys):
    data_bin = make_data_bin(tmp_path, corpus_text(30, seed=2))
    ckpt = checkpoint_for(data_bin, tmp_path / "ck.safetensors")
    args = [str(data_bin), "--path", str(ckpt), "--tokens-per-sample", "16", "--context-window", "5"]
    assert eval_lm.main(args) == 0
    out = capsys.readouterr().out
    assert "stride 11, fairseq alignment" in out
    assert eval_lm.main([*args, "--window-alignment", "document"]) == 0
    assert "stride 11, document alignment" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        eval_lm.main([*args, "--window-alignment", "sliding"])
    assert e.value.code == 2 and "--window-alignment" in capsys.readouterr().err


def test_word_probs_print_complete_docs_empty_lines_empty(tmp_path, capsys):
    text = corpus_text(12, seed=3, empty_every=4)
    data_bin = make_data_bin(tmp_path, text)
    ckpt = checkpoint_for(data_bin, tmp_path / "ck.safetensors", break_mode="complete_doc")
    assert eval_lm.main([str(data_bin), "--path", str(ckpt), "--output-word-probs", "--context-window", "4"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line[:1].isdigit() and "\t" in line]
    lines = text.splitlines()
    assert len(printed) == len(lines) == 12
    for i, (line, got) in enumerate(zip(lines, printed)):
        words = got.split("\t", 1)[1].split()
        assert got.startswith(f"{i}\t")
        assert words[::2] == ([] if not line else line.split() + ["</s>"])
