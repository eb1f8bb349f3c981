"""The notebook API: load, encode/decode, score and generate, for word, byte and SentencePiece checkpoints."""

import math

import sentencepiece as spm
import torch

from lmtie.data import Dictionary
from lmtie.data.tokenizers import bytes_dictionary, spm_dictionary
from lmtie.hub import load
from eval_helpers import WORDS, corpus_text, save_checkpoint, tiny_model

TEXT = "the cat sat on a mat\nthe dog ran to a big red house\n"


def _word_lm(tmp_path):
    d = Dictionary.build([" ".join(WORDS)])
    return load(save_checkpoint(tmp_path / "ck.safetensors", tiny_model(len(d)), d), device="cpu")


def test_score_returns_positional_scores_consistent_with_the_metrics(tmp_path):
    lm = _word_lm(tmp_path)
    r = lm.score(TEXT, context_window=4, tokens_per_sample=8)
    assert torch.equal(r["token_ids"], lm.encode(TEXT))
    assert r["positional_scores"].shape == (r["tokens"],) == (16,)
    nll = -r["positional_scores"].sum().item()
    assert math.isclose(r["ppl"], math.exp(nll / 16), rel_tol=1e-12)
    assert math.isclose(r["word_ppl"], math.exp(nll / 14), rel_tol=1e-12)  # 14 whitespace words, 2 line ends
    assert math.isclose(r["bits_per_byte"], nll / math.log(2) / len(TEXT.encode()), rel_tol=1e-12)
    assert (r["context_window"], r["stride"], r["tokens_per_sample"]) == (4, 4, 8)


def test_score_defaults_to_the_training_window_and_encode_decode_round_trip(tmp_path):
    lm = _word_lm(tmp_path)
    assert lm.score(TEXT)["tokens_per_sample"] == 16  # the checkpoint's data config
    assert lm.decode(lm.encode(TEXT)) == TEXT


def test_generate_is_reproducible_with_a_seed_and_continues_the_prompt(tmp_path):
    lm = _word_lm(tmp_path)
    a = lm.generate("the cat", max_new_tokens=10, seed=7, num_samples=2)
    assert a == lm.generate("the cat", max_new_tokens=10, seed=7, num_samples=2)
    assert len(a) == 2 and all(t.startswith("the cat") for t in a)
    assert lm.generate("the cat", 10, greedy=True) == lm.generate("the cat", 10, greedy=True, use_cache=False)


def test_sentencepiece_checkpoint_scores_word_perplexity_from_raw_text(tmp_path):
    (tmp_path / "c.txt").write_text(corpus_text(80, seed=2), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(tmp_path / "c.txt"), model_prefix=str(tmp_path / "m"), vocab_size=60,
                                   model_type="bpe", minloglevel=2)
    blob = (tmp_path / "m.model").read_bytes()
    d = spm_dictionary(spm.SentencePieceProcessor(model_file=str(tmp_path / "m.model")))
    (tmp_path / "m.model").unlink()  # the checkpoint must carry its own tokenizer
    lm = load(save_checkpoint(tmp_path / "ck.safetensors", tiny_model(len(d)), d, "spm", blob), device="cpu")
    assert lm.decode(lm.encode(TEXT)) == TEXT
    r = lm.score(TEXT)
    assert r["words"] == 14 and r["tokens"] > 16  # subwords: more tokens than words
    assert math.isclose(r["word_ppl"], math.exp(-r["positional_scores"].sum().item() / 14), rel_tol=1e-12)


def test_word_perplexity_compares_across_tokenisers_on_the_same_text(tmp_path):
    """Uniform models: token ppl is the vocabulary size, but word ppl and bits per byte count the text."""
    models = {}
    for name, d in (("space", Dictionary.build([" ".join(WORDS)])), ("bytes", bytes_dictionary())):
        m = tiny_model(len(d), tied=False)
        with torch.no_grad():
            m.decoder.embed_out.zero_()
        models[name] = load(save_checkpoint(tmp_path / f"{name}.safetensors", m, d, name), device="cpu")
    r = {name: lm.score(TEXT) for name, lm in models.items()}
    n_bytes = len(TEXT.encode())
    assert r["bytes"]["tokens"] == n_bytes and r["space"]["tokens"] == 16
    for name, res in r.items():
        v = len(models[name].dictionary) - 1
        assert math.isclose(res["ppl"], v, rel_tol=1e-5)
        assert math.isclose(res["bits_per_byte"], res["tokens"] * math.log2(v) / n_bytes, rel_tol=1e-5)
        assert math.isclose(res["word_ppl"], v ** (res["tokens"] / 14), rel_tol=1e-4)
