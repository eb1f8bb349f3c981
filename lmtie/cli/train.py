"""lmtie-train: train a tied or untied language model (fairseq-train's flags; --arch picks the model family)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lmtie.cli.fairseq_flags import TRAIN, epilog, translate
from lmtie.config import add_dataclass_args, from_args
from lmtie.checkpoint import SUFFIX
from lmtie.errors import cli_main
from lmtie.models import archs_of, family_of_arch
from lmtie.training import CheckpointConfig, DataConfig, OptimizationConfig, RunConfig, train


def arch_of(argv: list[str] | None) -> str:
    """``--arch`` alone, read first: it picks the model family, whose config gives the model flags."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--arch", default=RunConfig.arch)
    return pre.parse_known_args(argv)[0].arch


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The flags of every training config; the model flags are those of the ``--arch`` in ``argv``."""
    family = family_of_arch(arch_of(argv))
    p = argparse.ArgumentParser(prog="lmtie-train", description=__doc__, epilog=epilog(TRAIN), allow_abbrev=False)
    p.add_argument("data", nargs="?", default=None,
                   help="DATA_BIN from lmtie-preprocess or fairseq-preprocess (default: the embedded corpus)")
    add_dataclass_args(p, RunConfig, "run")
    title = f"model: family {family.name} (--arch {', '.join(archs_of(family.name))})"
    add_dataclass_args(p, family.config_class, title, suppress_defaults=True)
    add_dataclass_args(p, DataConfig, "data")
    add_dataclass_args(p, OptimizationConfig, "optimization")
    add_dataclass_args(p, CheckpointConfig, "checkpoint")
    return p


def model_overrides(args: argparse.Namespace) -> dict:
    """Only the model flags given on the command line (the rest come from --arch)."""
    import dataclasses

    fields = dataclasses.fields(family_of_arch(args.arch).config_class)
    return {f.name: getattr(args, f.name) for f in fields if hasattr(args, f.name)}


@cli_main
def main(argv: list[str] | None = None) -> int:
    argv = translate(TRAIN, sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    summary = train(model_overrides(args), from_args(DataConfig, args), from_args(OptimizationConfig, args),
                    from_args(CheckpointConfig, args), from_args(RunConfig, args))
    if summary.get("updates") is None:  # SIGTERM/SIGUSR1 during start-up: said so, nothing written; exit 0
        return 0
    if args.log_format != "none":
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
    written = [n for n in ("checkpoint_best", "checkpoint_last") if (Path(s["save_dir"]) / f"{n}{SUFFIX}").exists()]
    lines.append(f"checkpoints: {s['save_dir']}/{', '.join(n + SUFFIX for n in written)}" if written
                 else f"checkpoints: none written in {s['save_dir']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
