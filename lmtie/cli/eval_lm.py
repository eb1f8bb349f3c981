"""``lmtie-eval-lm``: perplexity of a checkpoint on a data-bin split or a raw text file (fairseq-eval-lm flags).

Prints fairseq's summary line, word-level perplexity and bits per byte, then the metrics as one
JSON line; ``--results-path DIR`` also writes them to ``DIR/<split>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from lmtie.config import add_dataclass_args, from_args
from lmtie.errors import UserError, cli_main
from lmtie.evaluation.config import EvalLMConfig
from lmtie.evaluation.corpus import EvalText, checkpoint_tokenizer, read_input_file, read_split
from lmtie.evaluation.evaluate import default_device, evaluate, window_settings
from lmtie.evaluation.metrics import LN2, format_metrics
from lmtie.io import atomic_write_text
from lmtie.checkpoint import load_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmtie-eval-lm", description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=None, metavar="DATA_BIN",
                        help="preprocessed data directory (omit when scoring --input FILE)")
    add_dataclass_args(parser, EvalLMConfig, "evaluation")
    return parser


def _load_text(data: str | None, cfg: EvalLMConfig, ckpt) -> EvalText:
    if (data is None) == (cfg.input is None):
        raise UserError("give exactly one of DATA_BIN (with --gen-subset) or --input FILE")
    if cfg.input is not None:
        return read_input_file(cfg.input, checkpoint_tokenizer(ckpt))
    tokenizer = checkpoint_tokenizer(ckpt) if (ckpt.tokenizer or {}).get("name") else None
    return read_split(data, cfg.gen_subset, ckpt, tokenizer)


def word_prob_lines(text: EvalText, logprobs, dictionary) -> list[str]:
    """One line per text line: each token with its log2 probability, as fairseq's --output-word-probs."""
    lines, pos = [], 0
    tokens, lp2 = text.tokens.tolist(), (logprobs / LN2).tolist()
    for i, size in enumerate(int(s) for s in text.line_sizes):
        pairs = " ".join(f"{dictionary[t]} [{p:.2f}]" for t, p in zip(tokens[pos:pos + size], lp2[pos:pos + size]))
        lines.append(f"{i}\t{pairs}")
        pos += size
    return lines


def _write_results(results_path: str, name: str, metrics: dict, word_probs: list[str] | None) -> Path:
    out = Path(results_path)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{name}.json", json.dumps(metrics, indent=2) + "\n")
    if word_probs is not None:
        atomic_write_text(out / f"{name}.word_probs.txt", "\n".join(word_probs) + "\n")
    return out / f"{name}.json"


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = from_args(EvalLMConfig, args)
    cfg.validate()
    device = default_device(cfg.device)
    model, ckpt = load_model(cfg.path, device)
    text = _load_text(args.data, cfg, ckpt)
    T, mode = window_settings(model, ckpt, cfg.tokens_per_sample, cfg.sample_break_mode)
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        logprobs, metrics = evaluate(model, text, ckpt.dictionary.eos(), ckpt.dictionary.pad(), T,
                                     cfg.context_window, mode, cfg.batch_size, cfg.max_tokens, cfg.softmax_batch)
    seconds = time.perf_counter() - start
    metrics.update(source=text.name, checkpoint=str(ckpt.path), seconds=seconds)
    word_probs = word_prob_lines(text, logprobs, ckpt.dictionary) if cfg.output_word_probs else None
    for line in word_probs or []:
        print(line)
    print(f"Evaluated {metrics['tokens']} tokens of {text.name} in {seconds:.1f}s "
          f"({metrics['tokens'] / max(seconds, 1e-9):.2f} tokens/s)")
    print(format_metrics(metrics))
    if cfg.results_path:
        name = "input" if cfg.input else cfg.gen_subset
        print(f"wrote {_write_results(cfg.results_path, name, metrics, word_probs)}")
    print(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
