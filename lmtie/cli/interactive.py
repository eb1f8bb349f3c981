"""``lmtie-interactive DATA --path CKPT``: translate stdin, one sentence per line (fairseq-interactive)."""

from __future__ import annotations

import sys

from lmtie.errors import cli_main


@cli_main
def main(argv: list[str] | None = None) -> int:
    from lmtie.cli.translate import interactive

    return interactive(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
