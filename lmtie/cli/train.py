"""lmtie-train: train a tied or untied Transformer LM (fairseq-train's flags)."""

from __future__ import annotations

import argparse
import json
import sys

from lmtie.config import add_dataclass_args, from_args
from lmtie.errors import cli_main
from lmtie.models import TransformerLMConfig
from lmtie.training import CheckpointConfig, DataConfig, OptimizationConfig, RunConfig, train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmtie-train", description=__doc__)
    p.add_argument("data", nargs="?", default=None,
                   help="DATA_BIN from lmtie-preprocess or fairseq-preprocess (default: the embedded corpus)")
    add_dataclass_args(p, RunConfig, "run")
    add_dataclass_args(p, TransformerLMConfig, "model", suppress_defaults=True)
    add_dataclass_args(p, DataConfig, "data")
    add_dataclass_args(p, OptimizationConfig, "optimization")
    add_dataclass_args(p, CheckpointConfig, "checkpoint")
    return p


def model_overrides(args: argparse.Namespace) -> dict:
    """Only the model flags given on the command line (the rest come from --arch)."""
    import dataclasses

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TransformerLMConfig) if hasattr(args, f.name)}


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    summary = train(model_overrides(args), from_args(DataConfig, args), from_args(OptimizationConfig, args),
                    from_args(CheckpointConfig, args), from_args(RunConfig, args))
    if summary is not None and args.log_format != "none":
        print(_final_lines(summary), file=sys.stderr if args.log_format == "json" else sys.stdout)
    return 0


def _final_lines(s: dict) -> str:
    p = s["parameters"]
    lines = [f"parameters: {p['total']:,} unique ({p['embedding']:,} embedding, {p['non_embedding']:,} non-embedding)",
             f"updates: {s['updates']}  tokens seen: {s['tokens_seen']:,}  wall time: {s['wall_seconds']:.1f} s "
             f"(updates {s['update_seconds']:.1f} s at {s['tokens_per_s']:,.0f} tokens/s, validation "
             f"{s['valid_seconds']:.1f} s, checkpoints {s['checkpoint_seconds']:.1f} s)"]
    if s["best_valid_loss"] is not None:
        lines.append(f"best valid loss {s['best_valid_loss']:.3f} (base 2), "
                     f"valid ppl {s['best_valid_ppl']:.2f}")
    lines.append(f"checkpoints: {s['save_dir']}/checkpoint_best.safetensors, checkpoint_last.safetensors")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
