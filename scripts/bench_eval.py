"""Evaluation and generation throughput of the reference config (random weights, synthetic tokens).

Reference: ``transformer_lm_small`` (4 layers, 4 heads, d=256, ffn 1024), vocabulary 8192,
256 tokens per sample. Throughput does not depend on the text, so a random token stream is used.
Reports tokens scored per second with ``--context-window 0`` and ``T/2``, and tokens generated
per second for 256 new tokens with and without the key/value cache.

    python scripts/bench_eval.py --tokens 32768 --repeats 3 --device cpu
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from lmtie.evaluation.corpus import EvalText
from lmtie.evaluation.evaluate import evaluate
from lmtie.evaluation.generation import generate
from lmtie.models import TransformerLanguageModel, build_config

VOCAB, T, EOS, PAD = 8192, 256, 2, 1


def reference_model(device: str, tied: bool) -> TransformerLanguageModel:
    torch.manual_seed(0)
    cfg = build_config("transformer_lm_small", vocab_size=VOCAB, dropout=0.0, max_target_positions=1024,
                       share_decoder_input_output_embed=tied)
    return TransformerLanguageModel(cfg).to(device).eval()


def _rates(run, repeats: int) -> dict:
    """Median and range of ``run()`` tokens per second (``run`` returns how many tokens it did);
    the cores are shared, so a single timing can be off by a factor of several."""
    run()  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        n = run()
        rates.append(n / (time.perf_counter() - start))
    return {"tokens_per_s": round(float(np.median(rates)), 1), "min": round(min(rates), 1),
            "max": round(max(rates), 1), "repeats": repeats}


def bench_eval(model, n_tokens: int, context_window: int, max_tokens: int, repeats: int) -> dict:
    """Tokens scored per second over a synthetic stream of lines of 100 tokens."""
    n_tokens -= n_tokens % 100
    stream = torch.randint(4, VOCAB, (n_tokens,), generator=torch.Generator().manual_seed(1))
    stream[99::100] = EOS
    text = EvalText(stream, np.full(n_tokens // 100, 100), None, None, "synthetic")

    def run() -> int:
        _, m = evaluate(model, text, EOS, PAD, T, context_window, "none", None, max_tokens)
        _sync(model)
        return m["tokens"]

    return {"context_window": context_window, "tokens": n_tokens, **_rates(run, repeats)}


def bench_generate(model, new_tokens: int, use_cache: bool, repeats: int) -> dict:
    """Greedy tokens per second from a one-token prompt (latency-bound: one token per step)."""

    def run() -> int:
        out = generate(model, [EOS], new_tokens, greedy=True, use_cache=use_cache)
        _sync(model)
        return out.size(1)

    return {"kv_cache": use_cache, "new_tokens": new_tokens, **_rates(run, repeats)}


def _sync(model) -> None:
    if next(model.parameters()).is_cuda:
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=32768, help="tokens in the synthetic stream to score")
    p.add_argument("--new-tokens", type=int, default=256, help="tokens to generate")
    p.add_argument("--max-tokens", type=int, default=8192, help="padded tokens per evaluation batch")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per setting (median and range reported)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--untied", action="store_true", help="benchmark the untied model instead")
    args = p.parse_args()
    model = reference_model(args.device, tied=not args.untied)
    info = {"device": args.device, "load_avg_1min": os.getloadavg()[0], "threads": torch.get_num_threads(), "torch": torch.__version__,
            "params": model.num_parameters(), "tied": not args.untied, "tokens_per_sample": T}
    print(json.dumps(info))
    for c in (0, T // 2):
        print(json.dumps({"eval": bench_eval(model, args.tokens, c, args.max_tokens, args.repeats)}))
    for use_cache in (True, False):
        print(json.dumps({"generate": bench_generate(model, args.new_tokens, use_cache, args.repeats)}))


if __name__ == "__main__":
    main()
