"""``lmtie-import-fairseq``: a fairseq ``transformer_lm`` checkpoint (.pt) -> an lmtie safetensors checkpoint."""

from __future__ import annotations

import argparse

from lmtie.errors import cli_main
from lmtie.interop.fairseq_import import import_fairseq


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmtie-import-fairseq", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument("path", help="fairseq checkpoint (checkpoint_best.pt); loaded without running code from it")
    parser.add_argument("--out", required=True, help="directory to write (new or empty): checkpoint_best.safetensors "
                                                     "and dict.txt")
    parser.add_argument("--dict", help="dict.txt of the data-bin the model was trained on (default: dict.txt beside "
                                       "the checkpoint)")
    return parser


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = import_fairseq(args.path, args.out, args.dict)
    print(f"wrote {out} (evaluate it with lmtie-eval-lm DATA --path {out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
