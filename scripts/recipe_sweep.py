"""Quality per update of lmtie-train's recipes (issue 12, item 3): one run per call, then a table.

Two targets, both read from ``../shared/data`` (not in a clone; the script says so when missing):
- CHAR: Tiny Shakespeare at character level (first 90% of the characters train, last 10% valid),
  4 layers, 4 heads, d=128, FFN 512, T=64, batch 12, dropout 0, tied, 2,000 updates. Arms: ``auto``
  (no optimiser flag: lmtie-train's own recipe), ``fairseq`` (``--recipe fairseq``: fairseq's
  defaults, lmtie's before the auto recipe), ``nanogpt`` (the tuned recipe of a popular single-file
  trainer: lr 1e-3, 100 warm-up, cosine to 1e-4 at the last update, betas (0.9, 0.99), wd 0.1, clip 1),
  ``llama`` (the auto recipe on ``--arch llama`` at the same dims, SwiGLU width 344).
- WIKI: WikiText-2 (only valid.txt and test.txt are here: train on valid.txt, validate on the first
  800 lines of test.txt), SentencePiece 8,192, ``--arch transformer_lm_small`` (4 layers, d=256,
  FFN 1024, 4 heads, dropout 0.1), T=64, batch 8, 2,000 updates, tied. Arms: ``auto`` and the
  grid points ``lrX-wY`` (peak lr X, Y warm-up updates, the rest of the auto recipe).

    python scripts/recipe_sweep.py prepare [--shared ../shared/data]
    python scripts/recipe_sweep.py run char auto          # one run (about 2 min on 2 cores)
    python scripts/recipe_sweep.py run wiki lr2e-3-w100   # any lrX-wY point
    python scripts/recipe_sweep.py table                  # every finished run, best first per target
    python scripts/recipe_sweep.py plot                   # runs/recipe/curves.png (needs matplotlib)
    python scripts/recipe_sweep.py reach char 1.794       # the update (and seconds) each run first got there

Each run writes ``runs/recipe/<target>/<arm>/`` (lmtie-train's save dir); a finished run is not
rerun. Losses are nats per token (per character for CHAR: the char tokenizer turns each newline into
``</s>``, so tokens and characters are one to one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
WORK = ROOT / "runs" / "recipe"
UPDATES = 2000
TARGETS = {
    "char": ["--decoder-layers", "4", "--decoder-attention-heads", "4", "--decoder-embed-dim", "128",
             "--decoder-ffn-embed-dim", "512", "--tokens-per-sample", "64", "--batch-size", "12", "--dropout", "0"],
    "wiki": ["--arch", "transformer_lm_small", "--tokens-per-sample", "64", "--batch-size", "8"],
}
NAMED_ARMS = {
    "auto": [],
    "fairseq": ["--recipe", "fairseq"],
    "nanogpt": ["--lr", "1e-3", "--warmup-updates", "100", "--lr-scheduler", "cosine", "--min-lr", "1e-4",
                "--adam-betas", "(0.9, 0.99)", "--weight-decay", "0.1", "--clip-norm", "1.0"],
    # not a recipe: the Llama-style family under the auto recipe, SwiGLU width 2/3 of the FFN's (same size)
    "llama": ["--arch", "llama", "--decoder-ffn-embed-dim", "344"],
}


def arm_flags(arm: str) -> list[str]:
    """The optimiser flags of ``arm``: a named arm, or ``lrX-wY`` (the auto recipe with lr X, Y warm-up)."""
    if arm in NAMED_ARMS:
        return NAMED_ARMS[arm]
    m = re.fullmatch(r"lr([0-9.e-]+)-w([0-9]+)", arm)
    if not m:
        raise SystemExit(f"unknown arm {arm!r}: one of {', '.join(NAMED_ARMS)} or lrX-wY")
    return ["--recipe", "auto", "--lr", m[1], "--warmup-updates", m[2]]


def prepare(shared: Path) -> None:
    """The two data-bins under runs/recipe (reused when already built)."""
    from lmtie.data import PreprocessConfig, preprocess

    if not shared.is_dir():
        raise SystemExit(f"{shared} not found: pass --shared DIR, the folder of the shared corpora")
    text = (shared / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    raw = WORK / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "char.train.txt").write_text(text[:cut], encoding="utf-8")
    (raw / "char.valid.txt").write_text(text[cut:], encoding="utf-8")
    test_lines = (shared / "wikitext-2-small" / "test.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    (raw / "wiki.valid.txt").write_text("".join(test_lines[:800]), encoding="utf-8")
    preprocess(PreprocessConfig(trainpref=str(raw / "char.train.txt"), validpref=str(raw / "char.valid.txt"),
                                tokenizer="char", destdir=str(WORK / "data-char")))
    preprocess(PreprocessConfig(trainpref=str(shared / "wikitext-2-small" / "valid.txt"),
                                validpref=str(raw / "wiki.valid.txt"), tokenizer="spm", spm_vocab_size=8192,
                                destdir=str(WORK / "data-wiki")))


def run(target: str, arm: str) -> None:
    save = WORK / target / arm
    if (save / "done.json").exists():
        print(f"{target}/{arm}: done already: {json.loads((save / 'done.json').read_text())}")
        return
    cmd = [sys.executable, "-m", "lmtie.cli.train", str(WORK / f"data-{target}"), *TARGETS[target],
           "--share-decoder-input-output-embed", "--max-update", str(UPDATES), *arm_flags(arm),
           "--validate-interval-updates", "100", "--log-format", "simple", "--log-interval", "500",
           "--no-epoch-checkpoints", "--device", "cpu", "--save-dir", str(save)]
    print(" ".join(cmd[1:]), flush=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run(cmd, env=env, check=True)
    valid = [r for r in _records(save) if r["type"] == "valid"]
    result = {"final_valid_nats": valid[-1]["loss"] * math.log(2), "updates": valid[-1]["step"],
              "recipe": json.loads((save / "config.json").read_text())["optimization"]}
    (save / "done.json").write_text(json.dumps(result))
    print(f"{target}/{arm}: final valid loss {result['final_valid_nats']:.4f} nats/token")


def _records(save: Path) -> list[dict]:
    return [json.loads(line) for line in (save / "metrics.jsonl").read_text().splitlines() if line.strip()]


def table() -> None:
    for target in TARGETS:
        rows = []
        for done in sorted((WORK / target).glob("*/done.json")):
            r = json.loads(done.read_text())
            o = r["recipe"]
            rows.append((r["final_valid_nats"], done.parent.name, o))
        if not rows:
            continue
        best = min(rows)[0]
        print(f"\n{target}: final valid loss after {UPDATES} updates (nats/token), best first")
        print("| arm | valid loss | vs best | lr | warm-up | schedule | min lr | betas | wd | clip |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for loss, arm, o in sorted(rows):
            print(f"| {arm} | {loss:.4f} | {100 * (loss / best - 1):+.2f}% | {o['lr']:.3g} | {o['warmup_updates']} | "
                  f"{o['lr_scheduler']} | {o['min_lr']:.3g} | {tuple(o['adam_betas'])} | {o['weight_decay']} | "
                  f"{o['clip_norm']} |")


def reach(target: str, loss: float) -> None:
    """When each finished run of ``target`` first validated at or below ``loss``: the update, and the run's
    mean update time (the recipes of one target share the model and batch, so their steps cost the same
    and the updates compare wall time; a shared machine's load shows up in the ms per update instead)."""
    print(f"{target}: first validation at or below {loss} nats/token")
    print("| arm | update | ms per update (this run) | final valid loss |")
    print("| --- | --- | --- | --- |")
    for save in sorted(p.parent for p in (WORK / target).glob("*/done.json")):
        records = _records(save)
        valid = [r for r in records if r["type"] == "valid"]
        hit = next((r for r in valid if r["loss"] * math.log(2) <= loss), None)
        final = valid[-1]["loss"] * math.log(2)
        if hit is None:
            print(f"| {save.name} | not reached | | {final:.4f} |")
            continue
        per_update = _update_seconds(records) / max(valid[-1]["step"], 1)
        print(f"| {save.name} | {hit['step']} | {1000 * per_update:.1f} | {final:.4f} |")


def _update_seconds(records: list[dict]) -> float:
    """The run's update time (its summary), so the validations a run makes do not count against it."""
    return next(r for r in reversed(records) if r["type"] == "summary")["update_seconds"]


def plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TARGETS), figsize=(12, 4.5))
    for ax, target in zip(axes, TARGETS):
        for save in sorted(p.parent for p in (WORK / target).glob("*/done.json")):
            valid = [r for r in _records(save) if r["type"] == "valid"]
            ax.plot([r["step"] for r in valid], [r["loss"] * math.log(2) for r in valid], marker=".", label=save.name)
        ax.set(title=f"{target}: valid loss", xlabel="update", ylabel="nats/token")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(WORK / "curves.png", dpi=120)
    print(WORK / "curves.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare").add_argument("--shared", type=Path, default=SHARED, help="the shared corpora")
    r = sub.add_parser("run")
    r.add_argument("target", choices=list(TARGETS))
    r.add_argument("arm")
    sub.add_parser("table")
    sub.add_parser("plot")
    r = sub.add_parser("reach", help="when each run first reached a valid loss")
    r.add_argument("target", choices=list(TARGETS))
    r.add_argument("loss", type=float)
    args = p.parse_args()
    if args.cmd == "run":
        run(args.target, args.arm)
    elif args.cmd == "reach":
        reach(args.target, args.loss)
    elif args.cmd == "prepare":
        prepare(args.shared)
    else:
        {"table": table, "plot": plot}[args.cmd]()


if __name__ == "__main__":
    main()
