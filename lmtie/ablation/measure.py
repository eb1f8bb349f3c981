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
    w, pad = m.input_embedding.weight.detach().float(), m.cfg.padding_idx
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


def training_log(save_dir: Path) -> tuple[list[list[float]], float | None]:
    """(valid curve as [update, ppl] pairs, peak memory over every session of the run).

    A resumed run logs again from its last checkpoint, so a step seen twice keeps its last value;
    each session's summary line holds that session's peak, and the run's peak is their maximum.
    """
    curve, peaks = {}, []
    path = save_dir / "metrics.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        rec = json.loads(line)
        if rec.get("type") == "valid":
            curve[rec["step"]] = rec["ppl"]
        elif rec.get("type") == "summary" and rec.get("peak_memory_mb") is not None:
            peaks.append(rec["peak_memory_mb"])
    return [[s, curve[s]] for s in sorted(curve)], max(peaks) if peaks else None
