"""``lmtie-preprocess``: fairseq-preprocess flags over :func:`lmtie.data.preprocess`.

With no data arguments it binarises the embedded Shakespeare corpus into data-bin/shakespeare.
"""

from __future__ import annotations

import argparse
import sys

from lmtie.cli.fairseq_flags import PREP, epilog, translate
from lmtie.config import add_dataclass_args, from_args
from lmtie.data.manifest import load_manifest
from lmtie.data.preprocess import PreprocessConfig, preprocess
from lmtie.errors import cli_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmtie-preprocess", epilog=epilog(PREP), allow_abbrev=False,
        description="Binarise raw text or a Hugging Face dataset into a fairseq-compatible data-bin "
                    "(dict.txt, {split}.bin/.idx, manifest.json). With no data arguments it builds "
                    "data-bin/shakespeare from the embedded corpus.")
    add_dataclass_args(parser, PreprocessConfig, "preprocessing")
    return parser


@cli_main
def main(argv: list[str] | None = None) -> int:
    argv = translate(PREP, sys.argv[1:] if argv is None else argv)
    cfg = from_args(PreprocessConfig, build_parser().parse_args(argv))
    destdir = preprocess(cfg)
    manifest = load_manifest(destdir)
    print(f"{destdir}: tokenizer {manifest['tokenizer']}, vocab {manifest['vocab_size']}")
    for split, s in manifest["splits"].items():
        print(f"  {split}: {s['lines']} lines, {s['tokens']} tokens, {s['bytes']} bytes")
    for split, p in manifest.get("translation", {}).get("pairs", {}).items():
        print(f"  {split}: {p['pairs']} pairs ({p['dropped_empty_pairs']} with an empty side dropped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
