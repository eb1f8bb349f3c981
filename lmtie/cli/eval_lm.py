"""``lmtie-eval-lm``: perplexity of a checkpoint on a data-bin split or a raw text file (fairseq-eval-lm flags).

Prints fairseq's summary line, word-level perplexity and bits per byte, then the metrics as one
JSON line; ``--results-path DIR`` also writes them to ``DIR/<split>.json``. A split is streamed
from its memory map and its scores summed as they come, so memory does not grow with the split;
``--output-word-probs`` prints (and writes) each line's scores as soon as the line is scored.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path

import torch

from lmtie.cli.fairseq_flags import EVAL, epilog, translate
from lmtie.config import add_dataclass_args, from_args
from lmtie.errors import UserError, cli_main
from lmtie.evaluation.config import EvalLMConfig
from lmtie.evaluation.corpus import EvalText, checkpoint_tokenizer, read_input_file, read_split
from lmtie.evaluation.evaluate import default_device, evaluate, window_settings
from lmtie.evaluation.metrics import LN2, format_metrics
from lmtie.evaluation.scoring import token_slice
from lmtie.evaluation.windows import scored_line
from lmtie.io import atomic_path, atomic_write_text
from lmtie.checkpoint import load_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmtie-eval-lm", description=__doc__.splitlines()[0], epilog=epilog(EVAL),
                                     allow_abbrev=False)
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
    return read_split(data, cfg.gen_subset, ckpt, tokenizer, cfg.bytes_from)


class WordProbWriter:
    """``--output-word-probs`` as the scores come, as fairseq prints them: one line per text line,
    each token with its log2 probability, printed and, given a path, written to that file
    (atomically, when :meth:`finish` is reached). Only the current line is held; a line that is
    not scored (``complete_doc``'s empty lines) is printed empty."""

    def __init__(self, text: EvalText, dictionary, stack: contextlib.ExitStack, path: Path | None = None,
                 mode: str = "none"):
        self.tokens, self.dictionary, self.stack, self.path = text.scored_tokens(mode), dictionary, stack, path
        self.mode = mode
        self.sizes = (int(s) for s in text.line_sizes)
        self.line, self.pairs, self.file = -1, [], None
        self.left = 0
        self._next_line()

    def __call__(self, start: int, logprobs: torch.Tensor) -> None:
        ids = token_slice(self.tokens, start, start + len(logprobs)).tolist()
        lp2 = (logprobs / LN2).tolist()
        i = 0
        while i < len(ids):
            if self.left is None:
                raise RuntimeError(f"scores for token {start + i} lie past the last line")
            take = min(self.left, len(ids) - i)
            self.pairs.extend(f"{self.dictionary[t]} [{p:.2f}]" for t, p in zip(ids[i:i + take], lp2[i:i + take]))
            i, self.left = i + take, self.left - take
            if self.left == 0:
                self._emit()
                self._next_line()

    def _next_line(self) -> None:
        """Move to the next scored line with tokens, emitting empty ones (a data-bin may hold size-0 lines)."""
        while True:
            self.line += 1
            self.left = next(self.sizes, None)
            if self.left is None or (self.left != 0 and scored_line(self.left, self.mode)):
                return
            self._emit()

    def _emit(self) -> None:
        line = f"{self.line}\t{' '.join(self.pairs)}"
        self.pairs = []
        print(line)
        if self.path is not None:
            if self.file is None:  # made on the first line: a run refused before scoring writes nothing
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.stack.enter_context(atomic_path(self.path))
                self.file = self.stack.enter_context(open(tmp, "w", encoding="utf-8"))
            self.file.write(line + "\n")

    def finish(self) -> None:
        if self.left is not None:
            raise RuntimeError(f"line {self.line} was never completely scored")


def _write_results(results_path: str, name: str, metrics: dict) -> Path:
    out = Path(results_path)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{name}.json", json.dumps(metrics, indent=2) + "\n")
    return out / f"{name}.json"


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(translate(EVAL, sys.argv[1:] if argv is None else argv))
    cfg = from_args(EvalLMConfig, args)
    cfg.validate()
    device = default_device(cfg.device)
    model, ckpt = load_model(cfg.path, device)
    text = _load_text(args.data, cfg, ckpt)
    T, mode = window_settings(model, ckpt, cfg.tokens_per_sample, cfg.sample_break_mode)
    name = "input" if cfg.input else cfg.gen_subset
    with contextlib.ExitStack() as stack:  # the word-probs file is installed when the stack closes, after finish()
        writer = None
        if cfg.output_word_probs:
            path = Path(cfg.results_path) / f"{name}.word_probs.txt" if cfg.results_path else None
            writer = WordProbWriter(text, ckpt.dictionary, stack, path, mode)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            _, metrics = evaluate(model, text, ckpt.dictionary.eos(), ckpt.dictionary.pad(), T, cfg.context_window,
                                  mode, cfg.batch_size, cfg.max_tokens, cfg.softmax_batch, keep_scores=False,
                                  on_scores=writer, window_alignment=cfg.window_alignment)
        seconds = time.perf_counter() - start
        if writer is not None:
            writer.finish()
    metrics.update(source=text.name, checkpoint=str(ckpt.path), seconds=seconds)
    print(f"Evaluated {metrics['tokens']} tokens of {text.name} in {seconds:.1f}s "
          f"({metrics['tokens'] / max(seconds, 1e-9):.2f} tokens/s)")
    print(format_metrics(metrics))
    if cfg.results_path:
        print(f"wrote {_write_results(cfg.results_path, name, metrics)}")
    print(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
