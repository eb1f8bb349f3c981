"""What a finished run is measured by: lmtie-eval-lm's scoring of train/valid/test, and the embeddings.

Scores ``checkpoint_best`` (lowest valid loss, as Press & Wolf report), through the same
functions lmtie-eval-lm calls, so the ablation's perplexities are the ones a user would get.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lmtie.data.indexed_dataset import MMapIndexedDataset
from lmtie.data.manifest import load_manifest
from lmtie.evaluation import EvalText, checkpoint_tokenizer, evaluate, read_split
from lmtie.evaluation.corpus import check_same_dictionary
from lmtie.evaluation.evaluate import default_device, window_settings
from lmtie.models import unwrap
from lmtie.checkpoint import load_model


def split_head(data_bin: str | Path, split: str, ckpt, max_tokens: int) -> EvalText:
    """The first whole lines of ``split`` holding at most ``max_tokens`` tokens (at least one line).

    Word and byte counts come from decoding those lines with the checkpoint's tokeniser, the
    way lmtie-eval-lm counts a split whose manifest lacks them.
    """
    d = Path(data_bin)
    check_same_dictionary(d, ckpt)
    ds = MMapIndexedDataset(d / split)
    ends = np.cumsum(ds.sizes, dtype=np.int64)
    lines = max(1, int(np.searchsorted(ends, max_tokens, side="right")))
    ids = ds.tokens[:int(ends[lines - 1])]  # a view of the memory map, streamed by evaluate like a whole split
    words = nbytes = None
    if (ckpt.tokenizer or {}).get("name"):
        text = checkpoint_tokenizer(ckpt).decode(ids)
        words, nbytes = len(text.split()), len(text.encode("utf-8"))
    return EvalText(ids, ds.sizes[:lines], words, nbytes, f"{d}:{split}[first {lines} lines]")


def split_text(data_bin: str | Path, split: str, ckpt, max_tokens: int = 0) -> EvalText:
    """All of ``split`` (``max_tokens`` 0 or more than it holds), else its head."""
    if max_tokens and MMapIndexedDataset(Path(data_bin) / split).num_tokens() > max_tokens:
        return split_head(data_bin, split, ckpt, max_tokens)
    tokenizer = checkpoint_tokenizer(ckpt) if (ckpt.tokenizer or {}).get("name") else None
    return read_split(data_bin, split, ckpt, tokenizer)


def embedding_stats(model) -> dict:
    """Norm of the <pad> row of the input embedding; for an untied model, the mean cosine similarity
    of matching rows of the input embedding and the output matrix (pad excluded; None when tied or
    widths differ)."""
    m = unwrap(model)
    embedding = m.decoder_embedding if m.task == "translation" else m.input_embedding
    w, pad = embedding.weight.detach().float(), m.cfg.padding_idx
    stats = {"pad_row_norm": float(w[pad].norm()), "embed_cosine": None}
    out = m.output_weight.detach().float()
    if not m.tied and out.shape == w.shape:
        keep = torch.arange(w.size(0)) != pad
        stats["embed_cosine"] = float(F.cosine_similarity(w[keep], out[keep], dim=1).mean())
    return stats


def score_splits(checkpoint: Path, data_bin: str, splits: dict[str, str], train_tokens: int,
                 context_window: int, device: str) -> tuple[dict, object]:
    """{train_ppl, train_word_ppl, train_bpb, valid_..., test_...} and the loaded model."""
    model, ckpt = load_model(checkpoint, default_device(None if device == "auto" else device))
    T, mode = window_settings(model, ckpt, None, None)
    present = load_manifest(data_bin).get("splits", {})
    row = {"eval_tokens_per_sample": T, "eval_context_window": context_window, "eval_checkpoint": checkpoint.name}
    for label, split in splits.items():
        if not split or split not in present:
            continue
        text = split_text(data_bin, split, ckpt, train_tokens if label == "train" else 0)
        _, m = evaluate(model, text, ckpt.dictionary.eos(), ckpt.dictionary.pad(), T, context_window, mode,
                        keep_scores=False)
        row.update({f"{label}_ppl": m["ppl"], f"{label}_word_ppl": m["word_ppl"],
                    f"{label}_bpb": m["bits_per_byte"], f"{label}_tokens": m["tokens"]})
    return row, model


def training_log(save_dir: Path) -> tuple[list[list[float]], float | None, int | None]:
    """(valid curve as [update, ppl] pairs, peak memory over every session of the run, the epoch of the
    best valid loss).

    A resumed run logs again from its last checkpoint, so a step seen twice keeps its last value;
    each session's summary line holds that session's peak, and the run's peak is their maximum.
    """
    curve, peaks, epochs = {}, [], {}
    path = save_dir / "metrics.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        rec = json.loads(line)
        if rec.get("type") == "valid":
            curve[rec["step"]] = rec["ppl"]
            epochs[rec["step"]] = rec.get("epoch")
        elif rec.get("type") == "summary" and rec.get("peak_memory_mb") is not None:
            peaks.append(rec["peak_memory_mb"])
    best = min(curve, key=lambda s: (curve[s], s)) if curve else None
    return [[s, curve[s]] for s in sorted(curve)], max(peaks) if peaks else None, epochs.get(best)


def score_translation(checkpoint: Path, data_bin: str, splits: dict[str, str], train_pairs: int, device: str,
                      beam: int = 5) -> tuple[dict, object]:
    """A translation run's row: {train,valid,test}_ppl (teacher-forced, per target token, ``</s>`` included;
    train on its first ``train_pairs`` pairs, 0 = all) and test BLEU and chrF of beam search (sacrebleu, on
    the detokenised best hypotheses), with the loaded model."""
    from lmtie.data.pair_dataset import LanguagePairDataset
    from lmtie.evaluation.bleu import corpus_scores
    from lmtie.evaluation.config import TranslateConfig
    from lmtie.evaluation.translation import detokenized, make_generator, side_tokenizer, translate_dataset

    dev = default_device(None if device == "auto" else device)
    model, ckpt = load_model(checkpoint, dev)
    model.eval()
    data = ckpt.config["data"]
    src, tgt = data["source_lang"], data["target_lang"]
    present = {name.split(".")[0] for name in load_manifest(data_bin).get("splits", {})}
    row = {"eval_checkpoint": checkpoint.name, "eval_beam": beam}
    for label, split in splits.items():
        if not split or split not in present:
            continue
        ds = LanguagePairDataset(data_bin, split, src, tgt)
        keep = np.arange(len(ds) if label != "train" or not train_pairs else min(train_pairs, len(ds)))
        row[f"{label}_ppl"], row[f"{label}_tokens"] = _teacher_forced_ppl(model, ds, keep, dev)
        if label == "test":
            tgt_tok = side_tokenizer(data_bin, tgt)
            generator = make_generator(model, ds.tgt_dict, TranslateConfig(beam=beam))
            pairs = [detokenized(t, tgt_tok) for t in translate_dataset(generator, ds, dev, None, 4096)]
            scores = corpus_scores([h for h, _ in pairs], [r for _, r in pairs])
            row.update(test_bleu=scores["bleu"].score, test_chrf=scores["chrf"].score,
                       bleu_signature=scores["bleu"].signature)
    return row, model


def _teacher_forced_ppl(model, ds, keep: np.ndarray, device) -> tuple[float, int]:
    from lmtie.data import batch_indices
    from lmtie.training.tasks import seq2seq_loss

    total, ntokens = 0.0, 0
    with torch.no_grad():
        for idx in batch_indices(keep[np.argsort(ds.tgt_sizes[keep], kind="stable")], max_tokens=4096, sizes=ds.sizes):
            b = {k: v.to(device) if torch.is_tensor(v) else v for k, v in ds.batch(idx).items()}
            loss, n = seq2seq_loss(model, b["source"], b["prev_output_tokens"], b["target"], ds.tgt_dict.pad())
            total, ntokens = total + float(loss), ntokens + n
    return float(np.exp(total / max(ntokens, 1))), ntokens
