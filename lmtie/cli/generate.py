"""``lmtie-generate``: continue a prompt with a checkpoint (sampling or greedy, with a key/value cache).

With a translation checkpoint, ``lmtie-generate DATA --path CKPT`` is fairseq-generate instead: beam
search over a split, scored by sacrebleu (:mod:`lmtie.cli.translate`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lmtie.config import add_dataclass_args, from_args
from lmtie.errors import UserError, cli_main
from lmtie.evaluation.config import GenerateConfig
from lmtie.hub import load


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmtie-generate", description=__doc__.splitlines()[0], allow_abbrev=False)
    add_dataclass_args(parser, GenerateConfig, "generation")
    return parser


def _translation_checkpoint(argv: list[str]) -> bool:
    """Whether ``--path`` names a translation model's checkpoint (then DATA and the beam flags apply)."""
    from lmtie import checkpoint as ckpt_io
    from lmtie.models import get_family

    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--path")
    path = pre.parse_known_args(argv)[0].path
    if not path or Path(path).is_dir() or not ckpt_io.resolve(path).is_file():
        return False  # the LM path reports a missing or unreadable --path
    ckpt = ckpt_io.load(ckpt_io.resolve(path), with_training_state=False)
    return getattr(get_family(ckpt_io.model_family(ckpt)), "task", "language_modeling") == "translation"


@cli_main
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if _translation_checkpoint(argv):
        from lmtie.cli.translate import generate

        return generate(argv)
    if argv and not argv[0].startswith("-") and Path(argv[0]).is_dir():
        raise UserError(f"{argv[0]}: a DATA_BIN is for translation models, and --path is a language model; continue a "
                        "prompt with --prompt TEXT, or score the split with lmtie-eval-lm DATA --path CKPT")
    cfg = from_args(GenerateConfig, build_parser().parse_args(argv))
    cfg.validate()
    lm = load(cfg.path, cfg.device)
    start = time.perf_counter()
    texts, per_sample = lm.generate(cfg.prompt, cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p,
                                    cfg.greedy, cfg.seed, cfg.num_samples, cfg.kv_cache, return_count=True)
    seconds = time.perf_counter() - start
    for i, text in enumerate([texts] if isinstance(texts, str) else texts):
        print(f"=== sample {i} ===")
        print(text)
    new = per_sample * cfg.num_samples
    per = f" ({cfg.num_samples} x {per_sample})" if cfg.num_samples > 1 else ""
    capped = (f"; {cfg.max_new_tokens:,} per sample were asked, but the model's positions ran out"
              if per_sample < cfg.max_new_tokens else "")
    print(f"generated {new} new tokens{per} in {seconds:.2f}s ({new / max(seconds, 1e-9):.1f} tokens/s, "
          f"kv cache {'on' if cfg.kv_cache else 'off'}){capped}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
