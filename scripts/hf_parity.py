"""Export a checkpoint to Hugging Face and measure the copy against lmtie on a data-bin split.

    python scripts/hf_parity.py data-bin/shakespeare --path checkpoints/tiny/checkpoint_best.safetensors \
        --out hf/tiny [--split test] [--max-windows 0]

Runs both models on lmtie-eval-lm's windows (the same inputs, ``--context-window 0``) and prints
one JSON line: the largest absolute logit difference outside the ``<pad>`` column, lmtie's
perplexity, transformers' with the ``<pad>`` column masked and without (relative differences),
and whether greedy generation agrees token for token. Needs ``transformers`` (``pip install
'lmtie[hf]'``).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch


def parity(data: str, path: str, out: str, split: str, max_windows: int, new_tokens: int) -> dict:
    from transformers import AutoModelForCausalLM

    from lmtie.checkpoint import load_model
    from lmtie.evaluation.corpus import read_split
    from lmtie.evaluation.evaluate import window_settings
    from lmtie.evaluation.generation import generate
    from lmtie.evaluation.scoring import _batch_tensors
    from lmtie.evaluation.windows import text_windows
    from lmtie.interop import export_hf

    start = time.perf_counter()
    export_hf(path, out, overwrite=True)
    export_seconds = time.perf_counter() - start
    model, ckpt = load_model(path)
    model.eval()
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    d = ckpt.dictionary
    text = read_split(data, split, ckpt, None)
    T, mode = window_settings(model, ckpt, None, None)
    windows = list(text_windows(text.line_sizes, mode, T, 0))
    tokens = text.scored_tokens(mode)
    windows = windows[:max_windows] if max_windows else windows
    keep = torch.arange(len(d)) != d.pad()
    max_diff, nll = 0.0, {"lmtie": 0.0, "hf_masked": 0.0, "hf_raw": 0.0}
    n = 0
    with torch.inference_mode():
        for i in range(0, len(windows), 16):
            inputs, targets, scored = _batch_tensors(tokens, windows[i:i + 16], d.eos(), d.pad())
            ours, theirs = model(inputs), hf(inputs).logits
            max_diff = max(max_diff, (ours[scored][:, keep] - theirs[scored][:, keep]).abs().max().item())
            masked = theirs.index_fill(-1, torch.tensor([d.pad()]), float("-inf"))
            for name, logits in (("lmtie", ours), ("hf_masked", masked), ("hf_raw", theirs)):
                lp = logits.double().log_softmax(-1).gather(-1, targets[..., None])[..., 0]
                nll[name] -= lp[scored].sum().item()
            n += int(scored.sum())
        prompt = text.tokens[:8].tolist()
        ours_gen = generate(model, [d.eos(), *prompt], new_tokens, greedy=True)[0].tolist()
        theirs_gen = hf.generate(torch.tensor([[d.eos(), *prompt]]), max_new_tokens=new_tokens, do_sample=False,
                                 eos_token_id=None)[0, 9:].tolist()
    ppl = {k: math.exp(v / n) for k, v in nll.items()}
    return {"checkpoint": path, "hf_class": type(hf).__name__, "tied": hf.config.tie_word_embeddings,
            "split": split, "tokens": n, "windows": len(windows), "export_seconds": round(export_seconds, 2),
            "max_abs_logit_diff": max_diff, "ppl_lmtie": ppl["lmtie"], "ppl_hf_pad_masked": ppl["hf_masked"],
            "ppl_hf_raw": ppl["hf_raw"], "rel_diff_masked": ppl["hf_masked"] / ppl["lmtie"] - 1,
            "rel_diff_raw": ppl["hf_raw"] / ppl["lmtie"] - 1, "greedy_identical": ours_gen == theirs_gen,
            "greedy_tokens": new_tokens}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("--path", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--max-windows", type=int, default=0, help="score only the first N windows (0 = all)")
    p.add_argument("--new-tokens", type=int, default=64)
    args = p.parse_args()
    print(json.dumps(parity(args.data, args.path, args.out, args.split, args.max_windows, args.new_tokens)))


if __name__ == "__main__":
    main()
