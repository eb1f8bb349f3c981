"""Scoring and metrics against brute force, and the lmtie-eval-lm command."""

import json
import math

import numpy as np
import pytest
import torch

from lmtie.cli import eval_lm
from lmtie.data import Dictionary
from lmtie.evaluation.corpus import EvalText
from lmtie.evaluation.evaluate import evaluate
from lmtie.evaluation.scoring import score_stream
from lmtie.evaluation.windows import document_spans, make_windows
from eval_helpers import (brute_force_logprobs, checkpoint_for, corpus_text, make_data_bin, save_checkpoint,
                               tiny_model, train_on_cycle)

V, EOS, PAD = 24, 2, 1


def _stream(seed=0, lines=7):
    """Random token lines (ids 4..V-1) each ending in </s>; some lines are empty."""
    g = torch.Generator().manual_seed(seed)
    sizes = [int(torch.randint(0, 6, (1,), generator=g)) + 1 for _ in range(lines)]
    parts = [torch.cat([torch.randint(4, V, (n - 1,), generator=g), torch.tensor([EOS])]) for n in sizes]
    return torch.cat(parts), sizes


@pytest.mark.parametrize("mode", ["none", "eos", "complete_doc", "complete"])
@pytest.mark.parametrize("T,C", [(8, 0), (8, 3), (8, 7), (5, 2)])
def test_scores_match_brute_force_with_the_allowed_prefix(mode, T, C):
    model = tiny_model(V, dtype=torch.float64)
    stream, sizes = _stream()
    stream = torch.as_tensor(EvalText(stream, np.array(sizes), None, None, "t").scored_tokens(mode)[0:])
    spans = document_spans(sizes, mode, T)
    got = score_stream(model, stream, make_windows(spans, T, C), EOS, PAD, batch_size=3)
    want = brute_force_logprobs(model, stream, spans, T, C, EOS)
    assert torch.allclose(got, want, atol=1e-10, rtol=0)


@pytest.mark.parametrize("tied", [True, False])
def test_scores_do_not_depend_on_batching_or_softmax_chunks(tied):
    model = tiny_model(V, tied=tied)
    stream, sizes = _stream(seed=3, lines=12)
    windows = make_windows(document_spans(sizes, "none", 8), 8, 4)
    ref = score_stream(model, stream, windows, EOS, PAD, batch_size=1)
    for kw in (dict(batch_size=4), dict(max_tokens=17), dict(batch_size=64, softmax_batch=3)):
        assert torch.allclose(score_stream(model, stream, windows, EOS, PAD, **kw), ref, atol=1e-5, rtol=0), kw


def test_longer_context_window_lowers_loss_of_a_repetitive_text():
    # the cycle repeats ids, so the model needs several tokens of context to know where it is
    model = tiny_model(V)
    stream = train_on_cycle(model, torch.tensor([4, 5, 4, 6, 5, 5, 7, 4, 6, 6, 7, 7])).repeat(8)
    text = EvalText(stream, np.array([len(stream)]), None, None, "cycle")
    loss = {(T, C): evaluate(model, text, EOS, PAD, T, C)[1]["loss"] for T, C in ((4, 0), (16, 0), (16, 12))}
    assert loss[16, 12] < loss[16, 0] - 0.1 and loss[16, 0] < loss[4, 0] - 0.3


def test_uniform_output_gives_perplexity_equal_to_predictable_symbols():
    model = tiny_model(V, tied=False, dtype=torch.float64)
    with torch.no_grad():
        model.decoder.embed_out.zero_()  # every logit 0 except <pad>, which is -inf
    stream, sizes = _stream(seed=5)
    text = EvalText(stream, np.array(sizes), words=9, bytes=40, name="t")
    _, m = evaluate(model, text, EOS, PAD, 6, 2)
    assert math.isclose(m["ppl"], V - 1, rel_tol=1e-12)
    assert math.isclose(m["loss"], math.log2(V - 1), rel_tol=1e-12)
    assert math.isclose(m["word_ppl"], (V - 1) ** (len(stream) / 9), rel_tol=1e-9)
    assert math.isclose(m["bits_per_byte"], len(stream) * math.log2(V - 1) / 40, rel_tol=1e-12)
    assert (m["tokens"], m["context_window"], m["stride"], m["tokens_per_sample"]) == (len(stream), 2, 4, 6)


def test_eos_mode_resets_context_at_every_line_and_none_does_not():
    model = tiny_model(V, dtype=torch.float64)
    a = torch.tensor([5, 6, 7, EOS, 9, 10, EOS])
    b = torch.tensor([11, 12, 13, EOS, 9, 10, EOS])  # same second line, different first line
    for mode, same in (("eos", True), ("none", False)):
        lp = [evaluate(model, EvalText(s, np.array([4, 3]), None, None, "x"), EOS, PAD, 8, 0, mode)[0] for s in (a, b)]
        assert torch.allclose(lp[0][4:], lp[1][4:], atol=1e-12) is same


# --- the command ----------------------------------------------------------------------------------
def _json_line(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_eval_lm_on_a_split_and_on_the_same_raw_text_agree(tmp_path, capsys):
    text = corpus_text(20, seed=4)
    data_bin = make_data_bin(tmp_path, text)
    ckpt = checkpoint_for(data_bin, tmp_path / "ck.safetensors")
    (tmp_path / "raw.txt").write_text(text)
    args = ["--path", str(ckpt), "--context-window", "8", "--tokens-per-sample", "16", "--batch-size", "2"]
    assert eval_lm.main([str(data_bin), "--gen-subset", "test", "--results-path", str(tmp_path / "res"),
                         "--output-word-probs", *args]) == 0
    out = capsys.readouterr().out
    split = _json_line(out)
    assert "Loss (base 2):" in out and "Word-level perplexity" in out
    assert json.loads((tmp_path / "res" / "test.json").read_text())["ppl"] == split["ppl"]
    probs = (tmp_path / "res" / "test.word_probs.txt").read_text().splitlines()
    assert len(probs) == 20 and "</s> [" in probs[0]
    assert eval_lm.main(["--input", str(tmp_path / "raw.txt"), *args]) == 0
    raw = _json_line(capsys.readouterr().out)
    assert raw["words"] == split["words"] == len(text.split())
    assert raw["bytes"] == split["bytes"] == len(text.encode())
    for key in ("tokens", "ppl", "word_ppl", "bits_per_byte", "stride"):
        assert raw[key] == pytest.approx(split[key], rel=1e-9), key


def test_eval_lm_bf16_scores_close_to_fp32(tmp_path, capsys):
    data_bin = make_data_bin(tmp_path, corpus_text(20, seed=5))
    ckpt = checkpoint_for(data_bin, tmp_path / "ck.safetensors")
    args = [str(data_bin), "--path", str(ckpt), "--tokens-per-sample", "16", "--device", "cpu"]
    assert eval_lm.main(args) == 0
    fp32 = _json_line(capsys.readouterr().out)
    assert eval_lm.main([*args, "--bf16"]) == 0
    bf16 = _json_line(capsys.readouterr().out)
    assert bf16["tokens"] == fp32["tokens"]
    assert bf16["ppl"] == pytest.approx(fp32["ppl"], rel=0.02) and bf16["ppl"] != fp32["ppl"]  # autocast took effect


def test_eval_lm_refuses_a_data_bin_with_another_dictionary(tmp_path, capsys):
    data_bin = make_data_bin(tmp_path, corpus_text(5))
    other = Dictionary.build(["completely different words here"])
    ckpt = save_checkpoint(tmp_path / "ck.safetensors", tiny_model(len(other)), other)
    assert eval_lm.main([str(data_bin), "--path", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert "dict.txt" in err and "differs from the dictionary" in err and len(err.strip().splitlines()) == 1


def test_eval_lm_refuses_a_context_window_as_long_as_the_sample(tmp_path, capsys):
    data_bin = make_data_bin(tmp_path, corpus_text(5))
    ckpt = checkpoint_for(data_bin, tmp_path / "ck.safetensors")
    assert eval_lm.main([str(data_bin), "--path", str(ckpt), "--tokens-per-sample", "16",
                         "--context-window", "16"]) == 2
    assert "--context-window 16 must be >= 0 and smaller than --tokens-per-sample 16" in capsys.readouterr().err


def test_eval_lm_refuses_an_empty_input_file_and_an_empty_split(tmp_path, capsys):
    data_bin = make_data_bin(tmp_path, corpus_text(5))
    ckpt = checkpoint_for(data_bin, tmp_path / "ck.safetensors")
    (tmp_path / "empty.txt").write_text("\n  \n")
    assert eval_lm.main(["--input", str(tmp_path / "empty.txt"), "--path", str(ckpt)]) == 2
    assert "empty" in capsys.readouterr().err
    for ext in (".bin", ".idx"):  # an empty split: zero lines
        (data_bin / f"test{ext}").replace(data_bin / f"empty{ext}")
    with open(data_bin / "empty.idx", "r+b") as f:
        f.truncate(26)
        f.seek(18)
        f.write((0).to_bytes(8, "little"))
    (data_bin / "empty.bin").write_bytes(b"")
    assert eval_lm.main([str(data_bin), "--gen-subset", "empty", "--path", str(ckpt)]) == 2
    assert "split 'empty' is empty" in capsys.readouterr().err


def test_eval_lm_needs_exactly_one_source_and_a_fitting_sample_length(tmp_path, capsys):
    data_bin = make_data_bin(tmp_path, corpus_text(5))
    ckpt = checkpoint_for(data_bin, tmp_path / "ck.safetensors")
    assert eval_lm.main(["--path", str(ckpt)]) == 2
    assert "exactly one of DATA_BIN" in capsys.readouterr().err
    assert eval_lm.main([str(data_bin), "--path", str(ckpt), "--tokens-per-sample", "65"]) == 2
    assert "--tokens-per-sample 65 exceeds the model's 64 positions" in capsys.readouterr().err
