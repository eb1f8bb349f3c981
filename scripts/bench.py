"""Training, evaluation and generation speed of lmtie against Hugging Face, side by side.

``--family transformer_lm`` (default) compares lmtie's fairseq-style decoder with ``GPT2LMHeadModel``;
``--family llama`` compares lmtie's Llama-style decoder with ``LlamaForCausalLM`` at the same dims,
with half as many key/value heads as query heads (grouped-query attention) in both.

Every (config, system, tie) cell runs in a fresh spawned process with the same thread count,
so its peak RSS is its own; the machine's fp32 matmul peak is measured in the same run, so MFU
is relative to this machine. Token streams are synthetic: throughput does not depend on text.

    python scripts/bench.py                      # the CPU configs, table + runs/bench/bench.json
    python scripts/bench.py --configs CFG-CHAR --repeats 3 --profile
    python scripts/bench.py --family llama --configs CFG-BPE
    python scripts/bench.py --device cuda --bf16 --compile --configs CFG-GPT2S   # the GPU run of issue 7

Needs the ``bench`` extra (``pip install -e .[bench]``) for the transformers peer.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import datetime
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

EOS, PAD = 2, 1
LR, WEIGHT_DECAY = 5e-4, 0.01


@dataclass(frozen=True)
class BenchConfig:
    """A reference config (issue 7): keep these fixed so figures stay comparable over time."""

    name: str
    vocab: int
    layers: int
    heads: int
    d: int
    ffn: int
    T: int
    batch: int
    ties: tuple = (True, False)


CONFIGS = {c.name: c for c in (
    BenchConfig("CFG-CHAR", 65, 4, 4, 128, 512, 64, 12, ties=(True,)),
    BenchConfig("CFG-BPE", 8192, 4, 4, 256, 1024, 256, 16),
    BenchConfig("CFG-32K", 32768, 4, 4, 256, 1024, 256, 16),
    BenchConfig("CFG-GPT2S", 32768, 12, 12, 768, 3072, 1024, 8),  # GPT-2 small with a 32k vocabulary: for GPUs
)}
CPU_CONFIGS = ["CFG-CHAR", "CFG-BPE", "CFG-32K"]
MAX_POSITIONS = 1024  # T of CFG-GPT2S; room for 256 generated tokens at every config


MIN_TOKENS = 8192  # per timed repeat: CFG-CHAR's 768-token batches would otherwise time ~0.1 s


def batches_per_repeat(c: BenchConfig, at_least: int) -> int:
    """Batches in one timed repeat: ``at_least``, and enough for MIN_TOKENS tokens."""
    return max(at_least, -(-MIN_TOKENS // (c.batch * c.T)))


def flops_per_token(c: BenchConfig, family: str) -> float:
    """Training FLOPs per token: 6 x matmul parameters + 12 x layers x d x T (attention); the matmul
    parameters are the Linear weights of lmtie's model (built on the meta device) and the output layer."""
    with torch.device("meta"):
        model = build_lmtie(c, True, family)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return 6 * (linear + c.vocab * c.d) + 12 * c.layers * c.d * c.T


def matmul_peak_gflops(device: torch.device, bf16: bool, repeats: int = 5) -> float:
    """Best GFLOP/s of a large square matmul on this device, thread count and dtype (bf16 or fp32)."""
    n = 8192 if device.type == "cuda" else 2048
    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b  # warm-up
    best = 0.0
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timing covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def precision(job: dict):
    """bfloat16 autocast (both systems alike) with ``--bf16``, else a no-op."""
    return torch.autocast(job["device"], dtype=torch.bfloat16) if job["bf16"] else contextlib.nullcontext()


# --- the two systems -----------------------------------------------------------------------------
FAMILY_FIELDS = {  # what makes lmtie's family the same function as its HF peer
    "transformer_lm": lambda c: dict(decoder_learned_pos=True, activation_fn="gelu_accurate"),
    "llama": lambda c: dict(decoder_kv_heads=c.heads // 2),
}


def build_lmtie(c: BenchConfig, tied: bool, family: str):
    from lmtie.models import build_model, get_family

    cfg = get_family(family).config_class(
        vocab_size=c.vocab, padding_idx=PAD, decoder_embed_dim=c.d, decoder_ffn_embed_dim=c.ffn,
        decoder_layers=c.layers, decoder_attention_heads=c.heads, dropout=0.0, max_target_positions=MAX_POSITIONS,
        share_decoder_input_output_embed=tied, **FAMILY_FIELDS[family](c))
    return build_model(family, cfg)


def build_hf(c: BenchConfig, tied: bool, family: str):
    if family == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        return LlamaForCausalLM(LlamaConfig(
            vocab_size=c.vocab, hidden_size=c.d, intermediate_size=c.ffn, num_hidden_layers=c.layers,
            num_attention_heads=c.heads, num_key_value_heads=c.heads // 2, max_position_embeddings=MAX_POSITIONS,
            rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=tied, attn_implementation="sdpa",
            bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD))
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=c.vocab, n_positions=MAX_POSITIONS, n_embd=c.d, n_layer=c.layers, n_head=c.heads,
                     n_inner=c.ffn, activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     tie_word_embeddings=tied, attn_implementation="sdpa", bos_token_id=EOS, eos_token_id=EOS,
                     pad_token_id=PAD)
    return GPT2LMHeadModel(cfg)


def lmtie_step(model, optimizer, source, target, clip: float) -> None:
    """One update as lmtie's Trainer does it: summed loss, grads scaled by 1/ntokens, clip, step."""
    from lmtie.training.criterion import lm_loss
    from lmtie.training.optim import scale_and_clip_

    loss, ntokens = lm_loss(model, source, target, PAD)
    loss.backward()
    scale_and_clip_([p for p in model.parameters() if p.grad is not None], 1.0 / ntokens, clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def hf_step(model, optimizer, source, target, clip: float) -> None:
    """One update of the plain PyTorch loop a transformers user writes."""
    logits = model(input_ids=source).logits  # (B, T, V)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def build_optimizer(system: str, model):
    if system == "lmtie":
        from lmtie.training.config import OptimizationConfig
        from lmtie.training.optim import build_optimizer as lmtie_optimizer

        return lmtie_optimizer(model, OptimizationConfig(lr=LR, weight_decay=WEIGHT_DECAY))
    return torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)


# --- measurements ------------------------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def interleaved_rates(runs: dict, repeats: int, warmups: dict | None = None) -> dict:
    """Median tokens/s of each ``runs[name]()`` (which returns its token count) after a warm-up
    (``warmups[name]()`` when given, else one untimed run).

    Systems take turns within every repeat, in alternating order, so load from other processes on
    the shared cores falls on both alike instead of on whichever ran second.
    """
    for name, run in runs.items():
        (warmups or runs)[name]()
    rates: dict = {name: [] for name in runs}
    for r in range(repeats):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            start = time.perf_counter()
            n = runs[name]()
            rates[name].append(n / (time.perf_counter() - start))
    return {name: {"tokens_per_s": statistics.median(v), "min": min(v), "max": max(v), "repeats": len(v)}
            for name, v in rates.items()}


def train_runner(system: str, model, c: BenchConfig, steps: int, job: dict):
    """A callable doing ``steps`` training updates on synthetic batches; returns the tokens trained."""
    g = torch.Generator().manual_seed(0)
    data = [torch.randint(4, c.vocab, (c.batch, c.T + 1), generator=g).to(job["device"]) for _ in range(4)]
    batches = [(x[:, :-1].contiguous(), x[:, 1:].contiguous()) for x in data]
    optimizer = build_optimizer(system, model)
    step = lmtie_step if system == "lmtie" else hf_step

    def run() -> int:
        model.train()
        for i in range(steps):
            with precision(job):
                step(model, optimizer, *batches[i % len(batches)], clip=1.0)
        synchronize(torch.device(job["device"]))
        return steps * c.batch * c.T

    return run


def eval_runner(system: str, model, c: BenchConfig, job: dict):
    """Scoring batches of windows (at least 4, MIN_TOKENS tokens): lmtie's eval-lm path vs a transformers
    forward pass + log_softmax."""
    import numpy as np

    n = batches_per_repeat(c, 4) * c.batch * c.T
    stream = torch.randint(4, c.vocab, (n,), generator=torch.Generator().manual_seed(1))
    if system == "hf":
        score = lambda: _hf_score(model, stream.to(job["device"]), c)  # noqa: E731
    else:
        from lmtie.evaluation.corpus import EvalText
        from lmtie.evaluation.evaluate import evaluate

        text = EvalText(stream, np.array([n]), None, None, "synthetic")
        score = lambda: evaluate(model, text, EOS, PAD, c.T, 0, "none", None, c.batch * c.T)  # noqa: E731

    def run() -> int:
        with precision(job):
            score()
        synchronize(torch.device(job["device"]))
        return n

    return run


def _hf_score(model, stream: torch.Tensor, c: BenchConfig) -> None:
    """log p of every token with the transformers model, ``c.batch`` windows of T at a time."""
    model.eval()
    inputs = torch.cat([stream.new_tensor([EOS]), stream[:-1]]).view(-1, c.T)  # (N, T)
    targets = stream.view(-1, c.T)
    with torch.inference_mode():
        for s in range(0, len(inputs), c.batch):
            logits = model(input_ids=inputs[s:s + c.batch]).logits.float()  # (B, T, V)
            torch.log_softmax(logits, -1).gather(-1, targets[s:s + c.batch, :, None])


def generate_runner(system: str, model, new_tokens: int, use_cache: bool, job: dict):
    """Greedy generation of ``new_tokens`` from a one-token prompt, batch 1; returns the tokens made."""
    if system == "lmtie":
        from lmtie.evaluation.generation import generate

        make = lambda: generate(model, [EOS], new_tokens, greedy=True, use_cache=use_cache).size(1)  # noqa: E731
    else:
        def make() -> int:
            model.eval()
            with torch.inference_mode():
                out = model.generate(torch.tensor([[EOS]], device=job["device"]), max_new_tokens=new_tokens,
                                     min_new_tokens=new_tokens, do_sample=False, use_cache=use_cache,
                                     pad_token_id=PAD)
            return out.size(1) - 1

    def run() -> int:
        with precision(job):
            n = make()
        synchronize(torch.device(job["device"]))
        return n

    return run


def profile_run(run, device: str, rows: int = 15) -> str:
    """torch.profiler table of one ``run()`` (after one warm-up), by self time on the device."""
    from torch.profiler import ProfilerActivity, profile

    run()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def _setup_child(job: dict) -> BenchConfig:
    torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    return BenchConfig(**job["config"])


def _build(system: str, c: BenchConfig, job: dict):
    """(the model to train and score, possibly compiled; the plain model, for generation)."""
    model = SYSTEMS[system](c, job["tied"], job["family"]).to(job["device"])
    return (torch.compile(model) if job["compile"] else model), model


def memory_cell(job: dict) -> dict:
    """Peak memory a few training updates add to a fresh process (spawned per system: RSS peaks
    never reset); on a GPU, the peak of ``torch.cuda.max_memory_allocated`` over the start.
    Always eager: compiling here would cost minutes per cell."""
    c = _setup_child(job)
    if job["system"] == "hf":
        import transformers  # noqa: F401  (imports before the baseline, like lmtie's own below)
    import lmtie.training.criterion  # noqa: F401
    import lmtie.training.optim  # noqa: F401
    cuda = job["device"] == "cuda"
    base = torch.cuda.memory_allocated() / 2 ** 20 if cuda else _rss_mb()
    model = SYSTEMS[job["system"]](c, job["tied"], job["family"]).to(job["device"])
    train_runner(job["system"], model, c, 2, job)()
    peak = torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else _peak_rss_mb()
    return {"peak_mb": peak, "added_mb": peak - base}


def speed_cell(job: dict) -> dict:
    """Training, evaluation and generation tokens/s of both systems, interleaved, in one process."""
    c = _setup_child(job)
    built = {system: _build(system, c, job) for system in SYSTEMS}
    models = {s: m for s, (m, _) in built.items()}
    out: dict = {"load_avg_1min": os.getloadavg()[0]}
    if job["profile"]:
        kinds = {"2 training updates": lambda s: train_runner(s, models[s], c, 2, job),
                 "evaluation": lambda s: eval_runner(s, models[s], c, job),
                 "64 cached generation steps": lambda s: generate_runner(s, built[s][1], 64, True, job)}
        out["profile"] = {f"{kind} {s}": profile_run(make(s), job["device"]) for s in models for kind, make in kinds.items()}
    steps = job["steps"] or batches_per_repeat(c, 2)
    out["train"] = interleaved_rates({s: train_runner(s, m, c, steps, job) for s, m in models.items()},
                                     job["repeats"])
    out["eval"] = interleaved_rates({s: eval_runner(s, m, c, job) for s, m in models.items()}, job["repeats"])
    if job["generate"]:
        plain = {s: m for s, (_, m) in built.items()}  # decoding shapes change every step: never compiled
        for cached in (True, False):  # uncached decoding is slow: time it once, after a short warm-up
            runs = {s: generate_runner(s, m, job["new_tokens"], cached, job) for s, m in plain.items()}
            warm = {s: generate_runner(s, m, 8, cached, job) for s, m in plain.items()}
            out[f"generate_{'cache' if cached else 'nocache'}"] = interleaved_rates(
                runs, job["gen_repeats"] if cached else 1, warm)
    out["load_avg_1min_end"] = os.getloadavg()[0]
    return out


SYSTEMS = {"lmtie": build_lmtie, "hf": build_hf}


# --- orchestration and report -----------------------------------------------------------------------
def _in_child(fn, job: dict) -> dict:
    """``fn(job)`` in a fresh spawned process (its own RSS peak, no state left from earlier cells)."""
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, job).result()


def run_all(args) -> list[dict]:
    """One speed process per (config, tie), then one memory process per system."""
    results = []
    for name in args.configs:
        c = CONFIGS[name]
        for tied in c.ties:
            job = {"config": asdict(c), "tied": tied, "threads": args.threads, "steps": args.steps,
                   "repeats": args.repeats, "profile": args.profile, "generate": tied,
                   "new_tokens": args.new_tokens, "gen_repeats": args.gen_repeats, "device": args.device,
                   "bf16": args.bf16, "compile": args.compile, "family": args.family}
            res = {"config": name, "family": args.family, "tied": tied, **_in_child(speed_cell, job)}
            res["memory"] = {s: _in_child(memory_cell, {**job, "system": s}) for s in SYSTEMS}
            for what, prof in res.pop("profile", {}).items():
                print(f"profile of {what}, {name} {'tied' if tied else 'untied'}:\n{prof}")
            print(f"  {name} {'tied' if tied else 'untied'}: train tok/s " + ", ".join(
                f"{s} {res['train'][s]['tokens_per_s']:.0f}" for s in SYSTEMS), flush=True)
            results.append(res)
    return results


PEERS = {"transformer_lm": "HF GPT-2", "llama": "HF Llama"}


def table(results: list[dict], peak: float, device: str, family: str) -> str:
    """Markdown: one row per (config, tie, metric), lmtie | HF | ratio."""
    lines = [f"| config | tie | metric | lmtie ({family}) | {PEERS[family]} | lmtie / HF |", "|---|---|---|---:|---:|---:|"]
    for r in results:
        for metric, get, fmt in _metrics(CONFIGS[r["config"]], peak, device, family):
            if get(r, "lmtie") is None:
                continue
            a, b = get(r, "lmtie"), get(r, "hf")
            lines.append(f"| {r['config']} | {'tied' if r['tied'] else 'untied'} | {metric} | {fmt.format(a)} | "
                         f"{fmt.format(b)} | {a / b:.2f}x |")
    return "\n".join(lines)


def _metrics(c: BenchConfig, peak: float, device: str, family: str) -> list:
    rate = lambda key: lambda r, s: r[key][s]["tokens_per_s"] if key in r else None  # noqa: E731

    def speedup(r, s):
        return r["generate_cache"][s]["tokens_per_s"] / r["generate_nocache"][s]["tokens_per_s"] \
            if "generate_cache" in r else None

    return [
        ("train tokens/s", rate("train"), "{:,.0f}"),
        ("train MFU", lambda r, s: r["train"][s]["tokens_per_s"] * flops_per_token(c, family) / (peak * 1e9), "{:.2f}"),
        (f"train memory MB ({'peak CUDA memory' if device == 'cuda' else 'peak RSS added'})",
         lambda r, s: r["memory"][s]["added_mb"], "{:,.0f}"),
        ("eval tokens/s", rate("eval"), "{:,.0f}"),
        ("generate tokens/s, KV cache", rate("generate_cache"), "{:,.1f}"),
        ("generate tokens/s, no cache", rate("generate_nocache"), "{:,.1f}"),
        ("generate: cache / no cache", speedup, "{:.1f}x"),
    ]


def machine(args) -> dict:
    import transformers

    gpu = torch.cuda.get_device_name() if args.device == "cuda" else None
    return {"date": datetime.date.today().isoformat(), "cpu": _cpu_name(), "gpu": gpu, "threads": args.threads,
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "precision": "bf16 autocast" if args.bf16 else "fp32", "compile": args.compile,
            "load_avg_1min": os.getloadavg()[0]}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=CPU_CONFIGS, choices=list(CONFIGS))
    p.add_argument("--family", default="transformer_lm", choices=list(FAMILY_FIELDS),
                   help="lmtie's model family; the HF peer is GPT-2 or Llama at the same dims")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for both systems (peak measured in bf16)")
    p.add_argument("--compile", action="store_true", help="torch.compile both models for training and scoring")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads in every cell")
    p.add_argument("--steps", type=int, default=0,
                   help=f"training updates per timed repeat (0: at least 2 and {MIN_TOKENS} tokens)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up (median reported)")
    p.add_argument("--new-tokens", type=int, default=256, help="tokens to generate")
    p.add_argument("--gen-repeats", type=int, default=3, help="timed repeats of cached generation (uncached: 1)")
    p.add_argument("--profile", action="store_true", help="print a torch.profiler table of training per cell")
    p.add_argument("--out", default="runs/bench/bench.json", help="where to write the JSON results")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available on this machine; use --device cpu")
    torch.set_num_threads(args.threads)
    info = {**machine(args), "command": " ".join(["python scripts/bench.py", *sys.argv[1:]])}
    device = torch.device(args.device)
    info["matmul_peak_gflops"] = matmul_peak_gflops(device, args.bf16)
    print(json.dumps(info), flush=True)
    results = run_all(args)
    info["matmul_peak_gflops_end"] = matmul_peak_gflops(device, args.bf16)  # load from other processes shows as a drop
    peak = max(info["matmul_peak_gflops"], info["matmul_peak_gflops_end"])
    md = table(results, peak, args.device, args.family)
    where = info["gpu"] or f"{info['cpu']}, {args.threads} threads"
    print(f"\n{info['date']}, {where}, torch {info['torch']}, transformers {info['transformers']}, "
          f"{info['precision']}{', compiled' if args.compile else ''}, matmul peak {peak:.1f} GFLOP/s\n\n{md}")
    _write_json(Path(args.out), {"machine": info, "results": results, "table": md})


def _write_json(path: Path, obj: dict) -> None:
    from lmtie.io import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(obj, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a clean clone runs without installing lmtie
    main()
