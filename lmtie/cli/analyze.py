"""lmtie-analyze: the embedding matrices of trained checkpoints, and Press & Wolf's check.

``lmtie-analyze runs/tied-seed1/checkpoint_best.safetensors runs/untied-seed1/checkpoint_best.safetensors
--output analysis/``: singular-value spectra, matching-row cosines, pad-row norms, and the Spearman
correlation of pairwise word similarities between every two matrices (one dictionary).
"""

from __future__ import annotations

import argparse
import sys

from lmtie.analysis import AnalyzeConfig, analyze
from lmtie.analysis.report import fmt
from lmtie.config import add_dataclass_args, from_args
from lmtie.errors import cli_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmtie-analyze", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="lmtie checkpoints (or HF directories)")
    add_dataclass_args(p, AnalyzeConfig, "analysis")
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = analyze(args.checkpoints, from_args(AnalyzeConfig, args))
    print(f"wrote {args.output}/analysis.json, analysis.md" + "".join(f", {p}" for p in result["plots"]))
    for p in result["press_wolf"]:
        print(f"Press & Wolf: {p['tied']} vs {p['untied']}: rho(output) {fmt(p['vs_output'])}, "
              f"rho(input) {fmt(p['vs_input'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
