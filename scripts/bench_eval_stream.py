"""Throughput and peak memory of ``lmtie-eval-lm`` on a large split, for one or more source trees.

Builds (once, in ``--workdir``) a word-level data-bin whose test split is WikiText-2's test text
repeated to ``--size-mb`` (``../shared/data``; the embedded Shakespeare text without it), with a
dictionary of the 4,096 most frequent words of WikiText-2's valid text, and a ``transformer_lm_tiny``
trained a few updates on that valid text. Then runs ``lmtie-eval-lm DATA --gen-subset test`` under
``/usr/bin/time -v`` once per ``--trees`` entry (a checkout, e.g. a ``git worktree`` of an older
commit, put first on PYTHONPATH) and prints one JSON line each: tokens/s, wall time, peak RSS and
the metrics, so the trees can be checked to agree.

    python scripts/bench_eval_stream.py --workdir runs/eval_stream --size-mb 50 --trees . /tmp/lmtie-before
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "wikitext-2-small"


def _texts() -> tuple[bytes, bytes, str]:
    """(train text, text to repeat, what they are)."""
    if SHARED.is_dir():
        return (SHARED / "valid.txt").read_bytes(), (SHARED / "test.txt").read_bytes(), \
            "WikiText-2 valid (train) and test (repeated)"
    corpus = ROOT / "data" / "shakespeare"
    return lzma.decompress((corpus / "valid.txt.xz").read_bytes()), \
        lzma.decompress((corpus / "test.txt.xz").read_bytes()), "embedded Shakespeare valid (train) and test (repeated)"


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def build(workdir: Path, size_mb: int, updates: int) -> tuple[Path, Path, str]:
    """(data-bin, checkpoint, description), made once and reused."""
    workdir.mkdir(parents=True, exist_ok=True)
    data, ckpt_dir = workdir / f"wiki{size_mb}mb-bin", workdir / f"ckpt{size_mb}mb"
    train, repeat, what = _texts()
    if not (data / "test.bin").is_file():
        (workdir / "train.txt").write_bytes(train)
        with open(workdir / "big.txt", "wb") as f:
            while f.tell() < size_mb * 1_000_000:
                f.write(repeat)
        _run([sys.executable, "-m", "lmtie.cli.preprocess", "--trainpref", str(workdir / "train.txt"),
              "--testpref", str(workdir / "big.txt"), "--destdir", str(data), "--nwordssrc", "4096", "--workers", "2"])
    ckpt = ckpt_dir / "checkpoint_last.safetensors"
    if not ckpt.is_file():
        _run([sys.executable, "-m", "lmtie.cli.train", str(data), "--arch", "transformer_lm_tiny",
              "--share-decoder-input-output-embed", "--max-update", str(updates), "--lr", "2e-3",
              "--warmup-updates", "5", "--tokens-per-sample", "256", "--valid-subset", "", "--save-dir", str(ckpt_dir)])
    return data, ckpt, what


def time_v(cmd: list[str], env: dict, cwd: Path) -> tuple[str, dict]:
    """(stdout, /usr/bin/time -v fields we report) of ``cmd``."""
    p = _run(["/usr/bin/time", "-v", *cmd], env=env, cwd=cwd)
    fields = dict(re.findall(r"^\s*(.+?): (.+)$", p.stderr, re.M))
    return p.stdout, {"peak_rss_mb": round(int(fields["Maximum resident set size (kbytes)"]) / 1024, 1),
                      "wall": fields["Elapsed (wall clock) time (h:mm:ss or m:ss)"]}


def bench_tree(tree: Path, data: Path, ckpt: Path, extra: list[str]) -> dict:
    tree = tree.resolve()  # run in the tree too: python -m puts the working directory before PYTHONPATH
    env = dict(os.environ, PYTHONPATH=str(tree) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    commit = _run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"]).stdout.strip()
    imported = _run([sys.executable, "-c", "import lmtie; print(lmtie.__file__)"], env=env, cwd=tree).stdout.strip()
    out, mem = time_v([sys.executable, "-m", "lmtie.cli.eval_lm", str(data.resolve()), "--path", str(ckpt.resolve()),
                       "--gen-subset", "test", "--device", "cpu", *extra], env, tree)
    m = json.loads(out.strip().splitlines()[-1])
    return {"tree": str(tree), "commit": commit, "lmtie": imported, "tokens": m["tokens"], "seconds": round(m["seconds"], 1),
            "tokens_per_s": round(m["tokens"] / m["seconds"], 1), **mem, "ppl": m["ppl"],
            "total_nll_nats": m["total_nll_nats"], "word_ppl": m["word_ppl"], "bits_per_byte": m["bits_per_byte"],
            "load_avg_1min": os.getloadavg()[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default=str(ROOT / "runs" / "eval_stream"), help="where the corpus and model go")
    p.add_argument("--size-mb", type=int, default=50, help="size of the test split's text in MB")
    p.add_argument("--updates", type=int, default=20, help="training updates of the model")
    p.add_argument("--trees", nargs="+", default=[str(ROOT)], help="source trees to benchmark, in order")
    p.add_argument("--eval-args", default="", help="extra lmtie-eval-lm flags, one string")
    p.add_argument("--build-only", action="store_true", help="make the data-bin and the model, then stop")
    args = p.parse_args()
    data, ckpt, what = build(Path(args.workdir), args.size_mb, args.updates)
    manifest = json.loads((data / "manifest.json").read_text())
    print(json.dumps({"data": str(data), "text": what, "test_bytes": manifest["splits"]["test"]["bytes"],
                      "test_tokens": manifest["splits"]["test"]["tokens"], "vocab": manifest["vocab_size"],
                      "checkpoint": str(ckpt), "cpus": os.cpu_count()}), flush=True)
    for tree in [] if args.build_only else args.trees:
        print(json.dumps(bench_tree(Path(tree), data, ckpt, args.eval_args.split())), flush=True)


if __name__ == "__main__":
    main()
