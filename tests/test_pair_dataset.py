"""Translation batches: pairs read back as written, teacher forcing shifted as fairseq, length buckets,
and label-smoothed cross-entropy equal to fairseq's formula."""

import numpy as np
import pytest
import torch

from lmtie.data import batch_indices
from lmtie.data.pair_dataset import LanguagePairDataset, pair_batches, pair_languages
from lmtie.data.preprocess import PreprocessConfig, preprocess
from lmtie.errors import UserError
from lmtie.training.criterion import linear_cross_entropy

WORDS = "a b c d e f g h i j k l".split()


def parallel(tmp_path, n=40, seed=0, joined=False):
    """n random pairs (target = reversed source), preprocessed as de-en."""
    rng = np.random.default_rng(seed)
    src = [" ".join(rng.choice(WORDS, size=rng.integers(1, 9))) for _ in range(n)]
    for name, lines in (("train", src), ("valid", src[:7])):
        (tmp_path / f"{name}.de").write_text("".join(s + "\n" for s in lines))
        (tmp_path / f"{name}.en").write_text("".join(" ".join(reversed(s.split())).upper() + "\n" for s in lines))
    out = preprocess(PreprocessConfig(source_lang="de", target_lang="en", trainpref=str(tmp_path / "train"),
                                      validpref=str(tmp_path / "valid"), destdir=str(tmp_path / "bin"),
                                      joined_dictionary=joined))
    return out, src


def test_batch_holds_the_pairs_with_teacher_forcing_shift(tmp_path):
    out, src = parallel(tmp_path)
    ds = LanguagePairDataset(out, "train", "de", "en")
    assert len(ds) == 40
    idx = [5, 0, 17]
    b = ds.batch(idx)
    pad, eos = ds.tgt_dict.pad(), ds.tgt_dict.eos()
    for r, i in enumerate(idx):
        s = [ds.src_dict[int(t)] for t in b["source"][r] if int(t) != pad]
        assert s == src[i].split() + ["</s>"]
        t = [int(x) for x in b["target"][r] if int(x) != pad]
        assert [ds.tgt_dict[x] for x in t] == [w.upper() for w in reversed(src[i].split())] + ["</s>"]
        prev = [int(x) for x in b["prev_output_tokens"][r] if int(x) != pad]
        assert prev == [eos] + t[:-1]  # </s> first, the target's last token (its </s>) dropped
    assert b["ntokens"] == int(b["target"].ne(pad).sum())
    assert b["source"].shape[1] == max(len(src[i].split()) + 1 for i in idx)


def test_batches_are_length_buckets_a_pure_function_of_seed_and_epoch(tmp_path):
    out, _ = parallel(tmp_path, n=200)
    ds = LanguagePairDataset(out, "train", "de", "en")
    order = np.random.default_rng(1).permutation(len(ds))
    a = pair_batches(ds, order, seed=1, epoch=1, batch_size=None, max_tokens=40)
    assert a == pair_batches(ds, order, seed=1, epoch=1, batch_size=None, max_tokens=40)
    assert a != pair_batches(ds, order, seed=1, epoch=2, batch_size=None, max_tokens=40)
    assert sorted(i for b in a for i in b) == list(range(len(ds)))
    for b in a:
        assert len(b) * int(ds.sizes[b].max()) <= 40  # padded tokens within --max-tokens
        assert int(ds.tgt_sizes[b].max()) - int(ds.tgt_sizes[b].min()) <= 1  # similar lengths share a batch
    unsorted = batch_indices(order, max_tokens=40, sizes=ds.sizes)  # the same budget without the buckets
    assert len(a) < len(unsorted)  # less padding: more pairs fit each batch


def test_language_pair_is_inferred_or_refused(tmp_path):
    out, _ = parallel(tmp_path)
    assert pair_languages(out, None, None) == ("de", "en")
    with pytest.raises(UserError, match="its pair is de-en"):
        pair_languages(out, "fr", None)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_is_fairseqs_formula_over_the_predictable_classes(eps):
    torch.manual_seed(0)
    N, d, V, pad = 23, 8, 13, 1
    x = torch.randn(N, d, dtype=torch.float64, requires_grad=True)
    w = torch.randn(V, d, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(V, dtype=torch.float64)
    bias[pad] = float("-inf")
    t = torch.randint(2, V, (N,))
    t[[3, 9]] = pad
    loss = linear_cross_entropy(x, w, bias, t, pad, chunk_rows=5, label_smoothing=eps)
    gx, gw = torch.autograd.grad(loss, (x, w))
    lprobs = torch.log_softmax(x @ w.t() + bias, -1)
    keep = torch.arange(V) != pad
    eps_i = eps / (int(keep.sum()) - 1)  # fairseq: eps / (V - 1), V the classes that can be predicted
    rows = t != pad
    nll = -lprobs[rows, t[rows]]
    smooth = -lprobs[rows][:, keep].sum(-1)
    ref = ((1 - eps - eps_i) * nll + eps_i * smooth).sum()
    rgx, rgw = torch.autograd.grad(ref, (x, w))
    assert float(loss) == pytest.approx(float(ref), rel=1e-12)
    assert torch.allclose(gx, rgx, atol=1e-12) and torch.allclose(gw, rgw, atol=1e-12)
    assert gw[pad].abs().max() == 0  # the pad row gets no gradient, smoothing or not
