"""Training speed on the path users run: ``lmtie-train`` itself, a bare loop of the same model step, and
Hugging Face ``transformers.Trainer`` with ``GPT2LMHeadModel`` at the same dims, blocks and batch.

Each (config, tie) runs the three systems in interleaved rounds (the order alternates, so load from
other processes on the shared cores falls on all alike); every run is a fresh process, so its peak
RSS is its own. Throughput is the steady-state median over per-window timings after the first
windows (start-up, allocation and the first steps excluded):
- ``lmtie-train``: the command a user types (its data path, logging, end-of-run validation and
  checkpoint), with its own per-window ``tokens_per_s`` from metrics.jsonl (``--log-interval``);
- bare loop: the same model, fused loss, backward, clip and AdamW on the same blocks already in
  memory, timed per window with ``perf_counter``: the lower bound of the trainer's step;
- HF Trainer: ``GPT2LMHeadModel`` (gelu_new, learned positions, tie as lmtie's) fed the same
  blocks through a torch Dataset, timed per window by a callback.
Trainer overhead = 1 - lmtie-train / bare loop. Data: the embedded corpus (data/shakespeare), char
level for CFG-CHAR, SentencePiece 8192 for CFG-BPE, preprocessed once into --work.

    python scripts/bench_train.py                       # CFG-CHAR tied, CFG-BPE tied and untied
    python scripts/bench_train.py --configs CFG-CHAR --rounds 5

Needs the ``bench`` extra (transformers).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a clean clone runs without installing lmtie


from scripts.bench import CONFIGS as BENCH_CONFIGS  # noqa: E402  the reference dims, shared with bench.py
from scripts.bench import BenchConfig as TrainConfig  # noqa: E402

CONFIGS = {name: BENCH_CONFIGS[name] for name in ("CFG-CHAR", "CFG-BPE")}
TOKENIZERS = {"CFG-CHAR": {"tokenizer": "char"}, "CFG-BPE": {"tokenizer": "spm", "spm_vocab_size": 8192}}
SYSTEMS = ("lmtie-train", "bare-loop", "hf-trainer")
LR = 1e-3


def data_bin(c: TrainConfig, work: Path) -> Path:
    """The embedded corpus preprocessed for ``c`` (reused when already there)."""
    from lmtie.data import PreprocessConfig, preprocess

    corpus = ROOT / "data" / "shakespeare"
    return preprocess(PreprocessConfig(trainpref=str(corpus / "train.txt.xz"), validpref=str(corpus / "valid.txt.xz"),
                                       destdir=str(work / f"data-{c.name}"), **TOKENIZERS[c.name]))


def model_flags(c: TrainConfig, tied: bool) -> list[str]:
    """lmtie-train flags that make the fairseq-family model GPT-2's function."""
    return ["--arch", "transformer_lm", "--decoder-layers", str(c.layers), "--decoder-attention-heads", str(c.heads),
            "--decoder-embed-dim", str(c.d), "--decoder-ffn-embed-dim", str(c.ffn), "--decoder-learned-pos",
            "--no-scale-embedding", "--activation-fn", "gelu_accurate", "--dropout", "0",
            "--max-target-positions", str(c.T),
            "--share-decoder-input-output-embed" if tied else "--no-share-decoder-input-output-embed"]


# --- the three systems, each run in a child process --------------------------------------------------
def run_lmtie_train(job: dict) -> dict:
    c, save = TrainConfig(**job["config"]), Path(job["save"])
    cmd = [sys.executable, "-m", "lmtie.cli.train", job["data"], *model_flags(c, job["tied"]),
           "--tokens-per-sample", str(c.T), "--batch-size", str(c.batch), "--lr", str(LR), "--clip-norm", "1.0",
           "--max-update", str(job["steps"]), "--log-interval", str(job["window"]), "--log-format", "none",
           "--save-dir", str(save), "--no-epoch-checkpoints", "--seed", "1"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"lmtie-train failed:\n{proc.stderr[-3000:]}")
    records = [json.loads(line) for line in (save / "metrics.jsonl").read_text().splitlines()]
    rates = [r["tokens_per_s"] for r in records if r["type"] == "train"]
    return {"window_tokens_per_s": rates, "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def _blocks(job: dict):
    """The first ``steps`` batches of (source, target) blocks, as lmtie-train cuts them."""
    import torch

    from lmtie.data import LanguageModelDataset

    c = TrainConfig(**job["config"])
    ds = LanguageModelDataset(job["data"], "train", c.T)
    batches = []
    for s in range(job["steps"]):
        b = ds.batch([(s * c.batch + i) % len(ds) for i in range(c.batch)])
        batches.append((b["source"], b["target"]))
    return batches, ds.dictionary, torch


def run_bare_loop(job: dict) -> dict:
    from lmtie.models import build_config, build_model
    from lmtie.training.config import OptimizationConfig
    from lmtie.training.criterion import lm_loss
    from lmtie.training.optim import build_optimizer, scale_and_clip_

    batches, d, torch = _blocks(job)
    c = TrainConfig(**job["config"])
    torch.manual_seed(1)
    cfg = build_config("transformer_lm", vocab_size=len(d), padding_idx=d.pad(), decoder_layers=c.layers,
                       decoder_attention_heads=c.heads, decoder_embed_dim=c.d, decoder_ffn_embed_dim=c.ffn,
                       decoder_learned_pos=True, no_scale_embedding=True, activation_fn="gelu_accurate", dropout=0.0,
                       max_target_positions=c.T, share_decoder_input_output_embed=job["tied"])
    model = build_model("transformer_lm", cfg).train()
    opt = build_optimizer(model, OptimizationConfig(lr=LR))
    rates, start = [], time.perf_counter()
    for step, (source, target) in enumerate(batches, 1):
        loss, n = lm_loss(model, source, target, d.pad())
        loss.backward()
        scale_and_clip_([p for p in model.parameters() if p.grad is not None], 1.0 / n, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % job["window"] == 0:
            now = time.perf_counter()
            rates.append(job["window"] * c.batch * c.T / (now - start))
            start = now
    return {"window_tokens_per_s": rates, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_hf_trainer(job: dict) -> dict:
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

    batches, d, torch = _blocks(job)
    c = TrainConfig(**job["config"])
    torch.manual_seed(1)
    model = GPT2LMHeadModel(GPT2Config(
        vocab_size=len(d), n_positions=c.T, n_embd=c.d, n_layer=c.layers, n_head=c.heads, n_inner=c.ffn,
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=job["tied"], attn_implementation="sdpa", bos_token_id=d.eos(), eos_token_id=d.eos(),
        pad_token_id=d.pad()))
    rows = [(s, t) for source, target in batches for s, t in zip(source, target)]

    class Blocks(torch.utils.data.Dataset):
        """The same blocks: labels are lmtie's targets, already shifted (``shift_labels``)."""

        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            s, t = rows[i]
            t = t.masked_fill(t == d.pad(), -100)
            return {"input_ids": s, "labels": t, "shift_labels": t}

    rates: list[float] = []

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 1 or state.global_step % job["window"] == 0:
                now = time.perf_counter()
                if state.global_step > 1:
                    rates.append(job["window"] * c.batch * c.T / (now - self.start))
                self.start = now

    args = TrainingArguments(output_dir=job["save"], per_device_train_batch_size=c.batch, max_steps=job["steps"],
                             learning_rate=LR, max_grad_norm=1.0, lr_scheduler_type="constant", logging_steps=10 ** 9,
                             save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0, seed=1,
                             disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=Blocks(), callbacks=[Timer()]).train()
    return {"window_tokens_per_s": rates, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


RUNNERS = {"lmtie-train": run_lmtie_train, "bare-loop": run_bare_loop, "hf-trainer": run_hf_trainer}


def _child(job: dict) -> dict:
    """One system's run in a fresh Python process (its own RSS peak, its own threads)."""
    out = Path(job["save"]) / "result.json"
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); sys.argv = ['bench_train']; "
            f"import scripts.bench_train as b; json.dump(b.RUNNERS[{job['system']!r}](json.loads({json.dumps(job)!r})), "
            f"open({str(out)!r}, 'w'))")
    env = dict(os.environ, OMP_NUM_THREADS=str(job["threads"]))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{job['system']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


# --- orchestration -------------------------------------------------------------------------------------
def run_cell(c: TrainConfig, tied: bool, args, work: Path) -> dict:
    data = data_bin(c, work)
    per_round: dict[str, list[dict]] = {s: [] for s in SYSTEMS}
    for r in range(args.rounds):
        for system in (SYSTEMS if r % 2 == 0 else SYSTEMS[::-1]):
            save = work / "runs" / f"{c.name}-{'tied' if tied else 'untied'}-{system}-{r}"
            if save.exists():
                import shutil

                shutil.rmtree(save)
            save.mkdir(parents=True)
            job = {"system": system, "config": asdict(c), "tied": tied, "data": str(data), "save": str(save),
                   "steps": args.steps, "window": args.window, "threads": args.threads}
            per_round[system].append(_child(job))
    out = {}
    for system, runs in per_round.items():
        medians = [statistics.median(run["window_tokens_per_s"][args.skip_windows:]) for run in runs]
        out[system] = {"tokens_per_s": statistics.median(medians), "min": min(medians), "max": max(medians),
                       "rounds": medians, "peak_rss_mb": max(run["peak_rss_mb"] for run in runs)}
    return out


def flops_per_token(c: TrainConfig, vocab: int) -> float:
    """6 x matmul parameters (blocks and output layer) + 12 x layers x d x T (attention)."""
    return 6 * (c.layers * (4 * c.d * c.d + 2 * c.d * c.ffn) + vocab * c.d) + 12 * c.layers * c.d * c.T


def table(results: list[dict], peak: float) -> str:
    lines = ["| config | tie | system | tokens/s (median) | spread over rounds | MFU | peak RSS MB | vs HF Trainer |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        hf = r["systems"]["hf-trainer"]["tokens_per_s"]
        for system in SYSTEMS:
            s = r["systems"][system]
            mfu = s["tokens_per_s"] * r["flops_per_token"] / (peak * 1e9)
            lines.append(f"| {r['config']} | {'tied' if r['tied'] else 'untied'} | {system} | {s['tokens_per_s']:,.0f} | "
                         f"{s['min']:,.0f}-{s['max']:,.0f} | {mfu:.2f} | {s['peak_rss_mb']:,.0f} | "
                         f"{s['tokens_per_s'] / hf:.2f}x |")
        lines.append(f"| {r['config']} | {'tied' if r['tied'] else 'untied'} | trainer overhead | "
                     f"{r['trainer_overhead']:.1%} | | | | |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (each system once per round)")
    p.add_argument("--steps", type=int, default=0, help="updates per run (0: 150 at CFG-CHAR, 40 at CFG-BPE)")
    p.add_argument("--window", type=int, default=5, help="updates per timing window (lmtie-train's --log-interval)")
    p.add_argument("--skip-windows", type=int, default=2, help="windows dropped at the start of each run")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of every run")
    p.add_argument("--work", default="runs/bench_train", help="data-bins and run directories")
    p.add_argument("--out", default="runs/bench_train/bench_train.json")
    args = p.parse_args()
    import torch
    import transformers

    from scripts.bench import _cpu_name, matmul_peak_gflops

    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    work = Path(args.work).resolve()
    info = {"date": datetime.datetime.now().isoformat(timespec="minutes"), "cpu": _cpu_name(),
            "threads": args.threads, "torch": torch.__version__, "transformers": transformers.__version__,
            "command": " ".join(["python scripts/bench_train.py", *sys.argv[1:]]),
            "matmul_peak_gflops": matmul_peak_gflops(cpu, False)}
    print(json.dumps(info), flush=True)
    results = []
    for name in args.configs:
        c = CONFIGS[name]
        steps = args.steps or (150 if name == "CFG-CHAR" else 40)
        run_args = argparse.Namespace(**{**vars(args), "steps": steps})
        vocab = len(__import__("lmtie").Dictionary.load(data_bin(c, work) / "dict.txt"))
        for tied in c.ties:
            systems = run_cell(c, tied, run_args, work)
            overhead = 1 - systems["lmtie-train"]["tokens_per_s"] / systems["bare-loop"]["tokens_per_s"]
            results.append({"config": name, "tied": tied, "vocab": vocab, "steps": steps,
                            "flops_per_token": flops_per_token(c, vocab), "systems": systems,
                            "trainer_overhead": overhead})
            print(f"  {name} {'tied' if tied else 'untied'}: " + ", ".join(
                f"{s} {systems[s]['tokens_per_s']:,.0f}" for s in SYSTEMS) + f", overhead {overhead:.1%}", flush=True)
    info["matmul_peak_gflops_end"] = matmul_peak_gflops(cpu, False)  # load from other processes shows as a drop
    peak = max(info["matmul_peak_gflops"], info["matmul_peak_gflops_end"])
    md = table(results, peak)
    print(f"\n{info['date']}, {info['cpu']}, {args.threads} threads, torch {info['torch']}, transformers {info['transformers']}, "
          f"fp32, matmul peak {peak:.1f} GFLOP/s\n\n{md}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "results": results, "table": md}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
