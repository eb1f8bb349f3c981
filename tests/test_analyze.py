"""lmtie-analyze on tiny checkpoints trained in the test: spectra, row cosines, the pad row,
Press & Wolf's rank correlation, and bad input (one line, exit 2)."""

import json

import numpy as np
import pytest
import torch

from lmtie import checkpoint as ckpt_io
from lmtie.analysis import AnalyzeConfig, analyze, sample_pairs, spearman
from lmtie.analysis.report import word_rows
from lmtie.cli.analyze import main as analyze_main
from lmtie.cli.train import main as train_main
from train_helpers import TINY, WORDS, make_corpus


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """A tied and an untied checkpoint on one dictionary, and one on another dictionary."""
    root = tmp_path_factory.mktemp("analyze")
    for d in ("a", "b"):
        (root / d).mkdir()
    corpus = make_corpus(root / "a", lines=120)
    out = {}
    for name, tie in (("tied", "--share-decoder-input-output-embed"),
                      ("untied", "--no-share-decoder-input-output-embed")):
        assert train_main([str(corpus), *TINY, "--max-update", "4", "--save-dir", str(root / name), tie]) == 0
        out[name] = root / name / "checkpoint_last.safetensors"
    other = make_corpus(root / "b", lines=40, seed=5)
    (other / "dict.txt").write_text((corpus / "dict.txt").read_text() + "zebra 1\n")
    assert train_main([str(other), *TINY, "--max-update", "1", "--save-dir", str(root / "other")]) == 0
    out["other"] = root / "other" / "checkpoint_last.safetensors"
    return out


def test_spearman_and_pair_sampling_by_hand():
    assert spearman(np.array([1, 2, 3, 4.]), np.array([1, 3, 2, 4.])) == pytest.approx(0.8)  # 1 - 6*2/(4*15)
    assert spearman(np.array([1, 1, 2.]), np.array([1, 2, 3.])) == pytest.approx(1.5 / 3 ** 0.5)  # tied ranks
    assert spearman(np.array([1, 1, 1.]), np.array([1, 2, 3.])) is None
    rows = torch.arange(4, 40)
    a, b = sample_pairs(rows, 200, seed=3)
    assert len(set(zip(a, b))) == 200 and (a < b).all() and a.min() >= 4 and b.max() <= 39
    assert all(np.array_equal(x, y) for x, y in zip((a, b), sample_pairs(rows, 200, seed=3)))  # fixed by the seed
    everything = sample_pairs(rows, 10 ** 6, seed=0)
    assert len(set(zip(*everything))) == 36 * 35 // 2


def test_report_matches_the_weights(ckpts, tmp_path):
    r = analyze([str(ckpts["tied"]), str(ckpts["untied"])], AnalyzeConfig(output=str(tmp_path), pairs=500))
    tied_ck, untied_ck = ckpt_io.load(ckpts["tied"]), ckpt_io.load(ckpts["untied"])
    rows = word_rows(tied_ck.dictionary)
    assert r["words"] == len(rows) == len(set(WORDS))  # no special symbols, no madeupword padding
    tied, untied = r["checkpoints"]
    assert tied["tied"] and set(tied["matrices"]) == {"tied"} and set(untied["matrices"]) == {"input", "output"}
    emb = tied_ck.model_state["decoder.embed_tokens.weight"]
    s = torch.linalg.svdvals(emb[rows].double())
    assert tied["matrices"]["tied"]["singular_values"] == pytest.approx(s.tolist())
    assert tied["matrices"]["tied"]["pad_row_norm"] == 0.0  # <pad> gets no gradient, tied or not
    e_in, e_out = untied_ck.model_state["decoder.embed_tokens.weight"], untied_ck.model_state["decoder.embed_out"]
    cos = torch.nn.functional.cosine_similarity(e_in[rows].double(), e_out[rows].double(), dim=1).mean()
    assert untied["row_cosine"] == pytest.approx(float(cos))
    assert untied["matrices"]["output"]["pad_row_norm"] == pytest.approx(float(e_out[1].norm()))
    (pw,) = r["press_wolf"]
    labels = {c["label"] for c in r["checkpoints"]}
    assert pw["tied"] in labels and -1 <= pw["vs_output"] <= 1 and -1 <= pw["vs_input"] <= 1
    assert len(r["rank_correlations"]) == 3  # tied-input, tied-output, input-output
    saved = json.loads((tmp_path / "analysis.json").read_text())
    assert saved["press_wolf"] == r["press_wolf"] and "Press & Wolf" in (tmp_path / "analysis.md").read_text()
    if r["plots"]:  # matplotlib is optional (the plot extra)
        assert {p.rsplit("/", 1)[-1] for p in r["plots"]} == {"spectrum.png", "similarity.png"}
        assert all(open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for p in r["plots"])


def test_a_matrix_against_itself_and_a_copy_correlates_perfectly(ckpts, tmp_path):
    r = analyze([str(ckpts["tied"]), str(ckpts["tied"])], AnalyzeConfig(output=str(tmp_path), pairs=300, plot=False))
    assert len({c["label"] for c in r["checkpoints"]}) == 2 and r["plots"] == []
    assert r["rank_correlations"][0]["spearman"] == pytest.approx(1.0)


def test_cli_writes_the_report_and_prints_the_check(ckpts, tmp_path, capsys):
    assert analyze_main([str(ckpts["tied"]), str(ckpts["untied"]), "--output", str(tmp_path / "o"), "--no-plot"]) == 0
    assert "Press & Wolf" in capsys.readouterr().out and (tmp_path / "o" / "analysis.json").exists()


@pytest.mark.parametrize("case, match", [
    ("missing", "no such checkpoint"), ("dictionary", "another dictionary"), ("no-output", "--output DIR is required"),
    ("junk", ""),
])
def test_bad_input_is_one_line_and_exit_2(ckpts, tmp_path, capsys, case, match):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    argv = {"missing": [str(tmp_path / "nope.safetensors"), "--output", str(tmp_path)],
            "dictionary": [str(ckpts["tied"]), str(ckpts["other"]), "--output", str(tmp_path)],
            "no-output": [str(ckpts["tied"])],
            "junk": [str(junk), "--output", str(tmp_path)]}[case]
    assert analyze_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lmtie-analyze: error:") and match in err
    assert not (tmp_path / "analysis.json").exists()


def test_projection_model_reports_the_effective_output_matrix():
    from lmtie.ablation import ARMS
    from lmtie.analysis import analyze_models
    from lmtie.data import Dictionary
    from lmtie.models import TransformerLMConfig, build_model

    d = Dictionary()
    for w in WORDS:
        d.add_symbol(w)
    cfg = TransformerLMConfig(vocab_size=len(d), padding_idx=d.pad(), decoder_embed_dim=8, decoder_ffn_embed_dim=16,
                              decoder_layers=1, decoder_attention_heads=2)
    model = build_model("transformer_lm", ARMS["tied-pr"](cfg))
    with torch.no_grad():
        model.output_projection.mul_(2.0)  # W P = 2 W: the same directions, twice the singular values
        r = analyze_models([("pr", model)], d, AnalyzeConfig(output="unused", pairs=50))
    (c,) = r["checkpoints"]
    assert set(c["matrices"]) == {"tied", "output@P"}
    assert c["matrices"]["output@P"]["singular_values"] == pytest.approx(
        [2 * s for s in c["matrices"]["tied"]["singular_values"]], rel=1e-5)
    assert r["rank_correlations"][0]["spearman"] == pytest.approx(1.0)
