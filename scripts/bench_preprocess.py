"""Throughput and peak memory of ``lmtie-preprocess --tokenizer spm`` with an already-trained model.

Builds corpora of the requested sizes by repeating the shared corpora (``../shared/data`` when
present, else the embedded Shakespeare text), trains one SentencePiece model on the embedded
corpus, then times binarising each corpus with 1 and 2 workers in a fresh process, sampling
the memory of that process and its workers every 20 ms (summed PSS, largest RSS).

    python scripts/bench_preprocess.py --sizes-mb 10 50 100 --workers 1 2
"""

from __future__ import annotations

import argparse
import lzma
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def seed_text() -> bytes:
    files = sorted(SHARED.glob("*/*.txt")) if SHARED.is_dir() else []
    if files:
        return b"".join(f.read_bytes() for f in files)
    return lzma.decompress((ROOT / "data" / "shakespeare" / "train.txt.xz").read_bytes())


def make_corpus(path: Path, size_mb: int, seed: bytes) -> None:
    with open(path, "wb") as f:
        while f.tell() < size_mb * 1_000_000:
            f.write(seed)


def tree_memory_mb(pid: int) -> tuple[float, float]:
    """(summed PSS, largest single RSS) in MB over ``pid`` and its descendants.

    PSS splits pages shared between the parent and its forked workers, so the sum is the real
    footprint; summing RSS would count the shared torch/numpy pages once per worker.
    """
    pss, rss, todo = 0, 0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()[1:])
            pss += int(fields["Pss"].split()[0])
            rss = max(rss, int(fields["Rss"].split()[0]))
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except (OSError, KeyError, ValueError):
            continue
    return pss / 1024, rss / 1024


def timed_run(args: list[str]) -> tuple[float, float, float, float]:
    """(wall s, CPU s of the process tree, peak PSS MB, peak single RSS MB) of ``lmtie-preprocess args``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "lmtie.cli.preprocess", *args], env=env,
                            stdout=subprocess.DEVNULL)
    peak_pss = peak_rss = 0.0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        pss, rss = tree_memory_mb(proc.pid)
        peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
        time.sleep(0.02)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"lmtie-preprocess {' '.join(args)} failed ({proc.returncode})")
    return wall, usage.ru_utime + usage.ru_stime, peak_pss, peak_rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    seed = seed_text()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        secs = timed_run(["--destdir", str(tmp / "default")])[0]
        print(f"trained spm-4096 on the embedded corpus in {secs:.1f} s")
        model = tmp / "default" / "spm.model"
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        print("| corpus MB | workers | wall s | MB/s | CPU s | peak PSS MB (all processes) | peak RSS MB (one process) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for size in args.sizes_mb:
            corpus = tmp / f"corpus{size}.txt"
            make_corpus(corpus, size, seed)
            mb = corpus.stat().st_size / 1e6
            for w in args.workers:
                out = tmp / f"bin{size}_{w}"
                wall, cpu, pss, rss = timed_run(["--trainpref", str(corpus), "--tokenizer", "spm", "--spm-model",
                                                 str(model), "--workers", str(w), "--destdir", str(out)])
                print(f"| {mb:.1f} | {w} | {wall:.1f} | {mb / wall:.1f} | {cpu:.1f} | {pss:.0f} | {rss:.0f} |",
                      flush=True)
                subprocess.run(["rm", "-rf", str(out)], check=True)
            corpus.unlink()


if __name__ == "__main__":
    main()
