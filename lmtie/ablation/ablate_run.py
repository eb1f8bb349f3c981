"""One run of an ablation, in its own process: train (or resume) it, then measure it.

Invoked by :func:`lmtie.ablation.runs.launch` as ``python -m lmtie.ablation.ablate_run SPEC``;
writes ``result.json`` beside the checkpoints only when the run is complete.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lmtie.ablation.measure import embedding_stats, score_splits, score_translation, training_log
from lmtie.ablation.runs import PREEMPTED, RESULT_FILE, RunSpec, load_spec
from lmtie.errors import cli_main
from lmtie.io import atomic_write_text
from lmtie.training import train
from lmtie import checkpoint as ckpt_io


def measure(spec: RunSpec, summary: dict) -> dict:
    """The run's row of results.csv."""
    best = ckpt_io.resolve(spec.save_dir / "checkpoint_best")
    checkpoint = best if best.exists() else ckpt_io.resolve(spec.save_dir / "checkpoint_last")
    splits = {"train": spec.data.train_subset, "valid": spec.data.valid_subset.split(",")[0], "test": "test"}
    if spec.data.task == "translation":  # train_eval_tokens counts pairs here
        scores, model = score_translation(checkpoint, spec.data.data, splits, spec.evaluation["train_eval_tokens"],
                                          spec.run.device)
    else:
        scores, model = score_splits(checkpoint, spec.data.data, splits, spec.evaluation["train_eval_tokens"],
                                     spec.evaluation["eval_context_window"], spec.run.device)
    curve, peak, best_epoch = training_log(spec.save_dir)
    p = summary["parameters"]
    row = {"arm": spec.arm, "seed": spec.seed, "updates": summary["updates"], "params_unique": p["total"],
           "params_embedding": p["embedding"], "params_non_embedding": p["non_embedding"],
           "decoder_embed_dim": spec.model["decoder_embed_dim"],
           "tied": spec.model["share_decoder_input_output_embed"],
           "share_all_embeddings": spec.model.get("share_all_embeddings", False), **scores,
           "best_valid_ppl_training": summary["best_valid_ppl"], "tokens_per_s": summary["tokens_per_s"],
           "peak_memory_mb": peak, "best_epoch": best_epoch, "wall_s": summary["wall_seconds"], **embedding_stats(model),
           "data_digest": summary["data_digest"], "valid_curve": curve}
    return row


@cli_main
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = load_spec(argv[0])
    summary = train(spec.model, spec.data, spec.optim, spec.ckpt, spec.run)
    if summary.get("preempted_by"):
        return PREEMPTED
    row = measure(spec, summary)
    atomic_write_text(Path(spec.save_dir) / RESULT_FILE, json.dumps(row, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
