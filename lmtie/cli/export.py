"""``lmtie-export``: write a checkpoint as a Hugging Face directory that transformers loads without lmtie."""

from __future__ import annotations

import argparse

from lmtie.config import add_dataclass_args, from_args
from lmtie.errors import cli_main
from lmtie.interop import export_hf
from lmtie.interop.config import ExportConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmtie-export", description=__doc__.splitlines()[0], allow_abbrev=False)
    add_dataclass_args(parser, ExportConfig, "export")
    return parser


@cli_main
def main(argv: list[str] | None = None) -> int:
    cfg = from_args(ExportConfig, build_parser().parse_args(argv))
    cfg.validate()
    out = export_hf(cfg.path, cfg.out, overwrite=cfg.overwrite)
    print(f"wrote {out} (load it with transformers.AutoModelForCausalLM.from_pretrained({str(out)!r}))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
