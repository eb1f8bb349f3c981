"""lmtie-ablate: train arms x seeds (tied vs untied) on one corpus and report paired differences.

Takes every lmtie-train flag (model, data, optimisation, checkpointing, run) for the base
config; each arm changes it (e.g. the tie), each seed sets --seed, --seed + 1, ... Run the same
command again after an interruption: finished runs are kept, unfinished ones resume.
"""

from __future__ import annotations

import argparse
import sys

from lmtie.ablation import AblationConfig, run_ablation
from lmtie.cli.train import build_parser as train_parser
from lmtie.cli.train import model_overrides
from lmtie.cli.fairseq_flags import TRAIN, translate
from lmtie.config import add_dataclass_args, from_args
from lmtie.errors import cli_main
from lmtie.training import CheckpointConfig, DataConfig, OptimizationConfig, RunConfig


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """lmtie-train's parser (so every training flag is accepted), plus the ablation's own flags."""
    p = train_parser(argv)
    p.prog, p.description = "lmtie-ablate", __doc__
    add_dataclass_args(p, AblationConfig, "ablation")
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    argv = translate(TRAIN, sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    run_ablation(from_args(AblationConfig, args), model_overrides(args), from_args(DataConfig, args),
                 from_args(OptimizationConfig, args),
                 from_args(CheckpointConfig, args), from_args(RunConfig, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
