"""Beam search and greedy decoding of encoder-decoder models; corpus BLEU/chrF via sacrebleu."""

import itertools
import sys

import pytest
import torch
import torch.nn.functional as F

from lmtie.errors import UserError
from lmtie.evaluation.bleu import corpus_bleu, corpus_chrf, corpus_scores
from lmtie.evaluation.sequence_generator import SequenceGenerator
from seq2seq_helpers import pad_batch, tiny_dict, tiny_seq2seq

PAD, EOS, UNK = 1, 2, 3
SOURCES = [[4, 5, 6, 2], [7, 8, 9, 10, 11, 2], [5, 2], [6, 10, 4, 2]]


@pytest.fixture(scope="module")
def tgt_dict():
    return tiny_dict(8)  # 12 symbols


@pytest.fixture(scope="module")
def model(tgt_dict):
    return tiny_seq2seq(tgt_dict, seed=1)


def teacher_forced(model, src: list[int], tokens: torch.Tensor) -> torch.Tensor:
    """Per-token log-probs of ``tokens`` (ending with </s>) given ``src``, decoding the whole target at once."""
    prev = torch.cat([torch.tensor([EOS]), tokens[:-1]])[None]  # fairseq: [</s>] + target[:-1]
    with torch.no_grad():
        lp = F.log_softmax(model(torch.tensor([src]), prev).float(), dim=-1)[0]
    return lp.gather(1, tokens[:, None])[:, 0]


def as_lists(out):
    return [[h["tokens"].tolist() for h in hyps] for hyps in out]


def assert_same(a, b, atol=1e-5):
    assert as_lists(a) == as_lists(b)
    for ha, hb in zip(itertools.chain(*a), itertools.chain(*b)):
        assert ha["score"] == pytest.approx(hb["score"], abs=atol)
        assert torch.allclose(ha["positional_scores"], hb["positional_scores"], atol=atol)


def test_beam_search_with_and_without_the_cache_gives_identical_hypotheses(model, tgt_dict):
    src = pad_batch(SOURCES)
    run = lambda cache: SequenceGenerator(model, tgt_dict, beam=4, max_len_a=1.0, max_len_b=3,  # noqa: E731
                                          use_cache=cache)
    cached, uncached = run(True), run(False)
    beams = cached.generate(src)
    assert_same(beams, uncached.generate(src))
    assert_same(cached.greedy(src), uncached.greedy(src))
    assert all(len(hyps) == 4 for hyps in beams)
    assert len({tuple(h) for hyps in as_lists(beams) for h in hyps}) > 8  # varied, not one repeated answer


def test_beam_of_one_is_greedy_decoding(model, tgt_dict):
    src = pad_batch(SOURCES)
    gen = SequenceGenerator(model, tgt_dict, beam=1, max_len_b=12, lenpen=0.7)
    beam1, greedy = gen.generate(src), gen.greedy(src)
    assert_same(beam1, greedy, atol=0)
    assert len({tuple(h[0]) for h in as_lists(greedy)}) > 1


@pytest.mark.parametrize("lenpen", [0.0, 1.0])
def test_a_beam_as_large_as_the_search_space_finds_the_brute_force_best(lenpen):
    d = tiny_dict(1)  # 5 symbols: <s> <pad> </s> <unk> w0; all but <pad> and </s> can continue a sentence
    model = tiny_seq2seq(d, src_vocab=5, seed=3)
    src = [4, 0, 4, 2]
    max_len, words = 3, [0, 3, 4]
    brute = {}
    for n in range(1, max_len + 1):  # min_len 1: at least one token before </s>
        for seq in itertools.product(words, repeat=n):
            tokens = torch.tensor([*seq, EOS])
            brute[seq + (EOS,)] = float(teacher_forced(model, src, tokens).sum()) / len(tokens) ** lenpen
    # step 2 has 9 live prefixes x 4 finite continuations = 36 candidates: a beam of 40 keeps them all
    hyps = SequenceGenerator(model, d, beam=40, max_len_b=max_len, lenpen=lenpen).generate(torch.tensor([src]))[0]
    found = {tuple(h["tokens"].tolist()): h["score"] for h in hyps}
    assert len(hyps) == len(brute) == 39  # every sequence, each once (fewer than the beam exist)
    assert tuple(hyps[0]["tokens"].tolist()) == max(brute, key=brute.get)
    assert found == pytest.approx(brute, abs=1e-5)
    assert [h["score"] for h in hyps] == sorted(found.values(), reverse=True)


@pytest.mark.parametrize("lenpen", [0.6, 1.0, 2.0])
def test_scores_are_teacher_forced_log_probs_over_length_to_the_lenpen(model, tgt_dict, lenpen):
    out = SequenceGenerator(model, tgt_dict, beam=3, max_len_b=8, lenpen=lenpen).generate(pad_batch(SOURCES))
    for src, hyps in zip(SOURCES, out):
        for h in hyps:
            lp = teacher_forced(model, src, h["tokens"])
            assert torch.allclose(h["positional_scores"], lp, atol=1e-5)
            assert h["score"] == pytest.approx(float(lp.sum()) / len(lp) ** lenpen, abs=1e-5)
        assert [h["score"] for h in hyps] == sorted((h["score"] for h in hyps), reverse=True)


def test_a_padded_batch_gives_each_sentence_its_own_hypotheses_and_length_limit(model, tgt_dict):
    gen = SequenceGenerator(model, tgt_dict, beam=3, max_len_a=0.5, max_len_b=2)
    batch = gen.generate(pad_batch(SOURCES))
    alone = [gen.generate(torch.tensor([s]))[0] for s in SOURCES]
    assert_same(batch, alone)
    assert_same(gen.greedy(pad_batch(SOURCES)), [gen.greedy(torch.tensor([s]))[0] for s in SOURCES])
    for src, hyps in zip(SOURCES, batch):
        limit = int(0.5 * len(src) + 2)  # tokens before </s>; the source length counts its </s>
        assert all(len(h["tokens"]) <= limit + 1 for h in hyps)
    assert max(len(h["tokens"]) for h in batch[1]) == int(0.5 * 6 + 2) + 1  # the long source reaches its limit


def test_min_len_holds_back_the_end_of_sentence(tgt_dict):
    model = tiny_seq2seq(tgt_dict, seed=1)
    model.output_bias[EOS] = 8.0  # </s> is likely: without min_len, hypotheses are short
    src = pad_batch(SOURCES)
    short = SequenceGenerator(model, tgt_dict, beam=4, max_len_b=10, min_len=0).generate(src)
    assert [EOS] in itertools.chain(*as_lists(short))  # min_len 0 allows the empty translation
    for min_len in (1, 3):
        gen = SequenceGenerator(model, tgt_dict, beam=4, max_len_b=10, min_len=min_len)
        for out in (gen.generate(src), gen.greedy(src)):
            assert min(len(h) for hyps in as_lists(out) for h in hyps) >= min_len + 1


def test_pad_is_never_generated_and_eos_only_ends_a_hypothesis(tgt_dict):
    model = tiny_seq2seq(tgt_dict, seed=1)
    model.output_bias[PAD] = 5.0  # the model would prefer <pad>: the generator must still never pick it
    gen = SequenceGenerator(model, tgt_dict, beam=4, max_len_b=6)
    src = pad_batch(SOURCES)
    for out in (gen.generate(src), gen.greedy(src)):
        for h in itertools.chain(*as_lists(out)):
            assert PAD not in h and h[-1] == EOS and EOS not in h[:-1]


def test_unk_penalty_steers_away_from_unk(tgt_dict):
    model = tiny_seq2seq(tgt_dict, seed=1)
    model.output_bias[UNK] = 3.0
    src = pad_batch(SOURCES)
    unk_in = lambda out: any(UNK in h for h in itertools.chain(*as_lists(out)))  # noqa: E731
    assert unk_in(SequenceGenerator(model, tgt_dict, beam=3, max_len_b=6).generate(src))
    assert not unk_in(SequenceGenerator(model, tgt_dict, beam=3, max_len_b=6, unk_penalty=100).generate(src))


def test_the_length_limit_forces_the_end_of_sentence(tgt_dict):
    model = tiny_seq2seq(tgt_dict, seed=1)
    model.output_bias[EOS] = -30.0  # never ends by itself
    out = SequenceGenerator(model, tgt_dict, beam=3, max_len_b=5).generate(pad_batch(SOURCES))
    assert {len(h) for hyps in as_lists(out) for h in hyps} == {6}


def test_generation_runs_in_eval_mode_without_autograd_and_restores_training(model, tgt_dict):
    model.train()
    try:
        out = SequenceGenerator(model, tgt_dict, beam=2, max_len_b=4).generate(pad_batch(SOURCES[:2]))
        assert model.training
        assert not out[0][0]["positional_scores"].requires_grad
        assert all(p.is_contiguous() for p in model.parameters())  # the decoding weight layout is undone
    finally:
        model.eval()


def test_impossible_options_are_user_errors(model, tgt_dict):
    with pytest.raises(UserError, match="--beam"):
        SequenceGenerator(model, tgt_dict, beam=0)
    with pytest.raises(UserError, match="--min-len 5"):
        SequenceGenerator(model, tgt_dict, min_len=5, max_len_b=3)
    with pytest.raises(UserError, match="reads at most 32"):
        SequenceGenerator(model, tgt_dict).generate(torch.full((1, 40), 5))


# --- BLEU and chrF ---------------------------------------------------------------------------------

HYPS = ["the cat sat on the mat .", "a dog barked loudly at night", "it is raining"]
REFS = ["the cat sat on a mat .", "the dog barked at night", "it rains today"]


def test_identical_hypotheses_and_references_score_100():
    scores = corpus_scores(REFS, REFS)
    assert scores["bleu"].score == pytest.approx(100.0)
    assert scores["chrf"].score == pytest.approx(100.0)


def test_bleu_and_chrf_are_sacrebleus_own_numbers_with_its_signature():
    sacrebleu = pytest.importorskip("sacrebleu")
    bleu, chrf = corpus_bleu(HYPS, REFS), corpus_chrf(HYPS, REFS)
    assert bleu.score == sacrebleu.corpus_bleu(HYPS, [REFS]).score
    assert chrf.score == sacrebleu.corpus_chrf(HYPS, [REFS]).score
    assert 0 < bleu.score < 100 and 0 < chrf.score < 100
    assert "nrefs:1" in bleu.signature and "tok:13a" in bleu.signature and "nrefs:1" in chrf.signature
    print(bleu, chrf, sep="\n")
    assert str(bleu).startswith("BLEU = ") and "nrefs:1" in str(bleu)
    two = corpus_bleu(HYPS, [REFS, HYPS])
    assert "nrefs:2" in two.signature and two.score == sacrebleu.corpus_bleu(HYPS, [REFS, HYPS]).score


def test_bad_inputs_and_a_missing_sacrebleu_are_user_errors(monkeypatch):
    with pytest.raises(UserError, match="3 hypotheses but reference set 1 has 2"):
        corpus_bleu(HYPS, REFS[:2])
    with pytest.raises(UserError, match="no hypotheses"):
        corpus_bleu([], [])
    with pytest.raises(UserError, match="no tokenizer"):
        corpus_bleu(HYPS, REFS, tokenize="nope")
    monkeypatch.setitem(sys.modules, "sacrebleu", None)  # import sacrebleu now raises ImportError
    with pytest.raises(UserError, match=r"pip install lmtie\[mt\]"):
        corpus_chrf(HYPS, REFS)
