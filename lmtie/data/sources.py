"""Raw text in: checked paths, compressed files, Hugging Face datasets, and byte-range chunks.

Everything is streamed: a file is read line by line inside a byte range (fairseq's
"offsets"), so any number of workers can share one file and memory does not grow with it.
A line is the bytes up to ``\\n``; its ``</s>`` stands for that newline when counting bytes.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import shutil
from pathlib import Path
from typing import Iterator

from lmtie.errors import UserError

_OPENERS = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}
_BATCH_BYTES = 1 << 20  # text is decoded and tokenised about a megabyte at a time
HF_SPLIT_NAMES = {"train": ("train",), "valid": ("validation", "valid", "dev"), "test": ("test",)}


def check_input_file(path: str | os.PathLike, flag: str) -> Path:
    """A readable, non-empty regular file, or a UserError naming the flag and the fix."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{flag} {p}: file not found; check the path (raw text, one line per sentence)")
    if p.is_dir():
        raise UserError(f"{flag} {p}: is a directory; pass the text file itself")
    if p.stat().st_size == 0:
        raise UserError(f"{flag} {p}: file is empty; give a corpus with at least one line of text")
    return p


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def decompress_if_needed(path: Path, workdir: Path, flag: str) -> Path:
    """``.xz``/``.gz``/``.bz2`` inputs are unpacked (streamed) into ``workdir``; others are used in place."""
    opener = _OPENERS.get(path.suffix)
    if opener is None:
        return path
    out = workdir / (path.stem + ".raw")
    try:
        with opener(path, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise UserError(f"{flag} {path}: cannot decompress ({e}); check the file is a complete {path.suffix} archive")
    if out.stat().st_size == 0:
        raise UserError(f"{flag} {path}: decompresses to nothing; give a corpus with at least one line of text")
    return out


def chunk_offsets(path: Path, n: int) -> list[tuple[int, int]]:
    """Split ``path`` into ``n`` byte ranges that start at line starts (some may be empty)."""
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as f:
        for i in range(1, n):
            f.seek(max(size * i // n, cuts[-1]))
            if f.tell() > 0:
                f.seek(f.tell() - 1)
                f.readline()  # finish the line we landed in
            cuts.append(max(f.tell(), cuts[-1]))
    cuts.append(size)
    return list(zip(cuts[:-1], cuts[1:]))


def read_line_batches(path: Path, start: int, end: int, errors: str, flag: str
                      ) -> Iterator[tuple[list[str], int, int]]:
    """Yield (lines, their UTF-8 byte count incl. newlines, U+FFFD replacements) ~1 MB at a time.

    ``start``/``end`` must be line starts (or EOF). With ``errors="strict"`` invalid UTF-8
    raises a UserError with the file and byte offset.
    """
    with open(path, "rb") as f:
        pos = start
        while pos < end:
            f.seek(pos)
            block = f.read(min(_BATCH_BYTES, end - pos))
            if pos + len(block) < end:  # cut after the last newline; a longer line is read whole
                cut = block.rfind(b"\n") + 1
                block = block[:cut] if cut else block + f.readline()
            yield _decode(block, pos, path, errors, flag)
            pos += len(block)


def _decode(block: bytes, pos: int, path: Path, errors: str, flag: str) -> tuple[list[str], int, int]:
    try:
        text, replaced = block.decode("utf-8"), 0
    except UnicodeDecodeError as e:
        if errors == "strict":
            raise UserError(f"{flag} {path}: invalid UTF-8 at byte offset {pos + e.start}; fix the file "
                            "or pass --utf8-errors replace to substitute U+FFFD and count replacements")
        text = block.decode("utf-8", errors="replace")
        replaced = text.count("\ufffd") - block.decode("utf-8", errors="ignore").count("\ufffd")
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return lines, len(block) + (0 if block.endswith(b"\n") else 1), replaced


def export_hf_dataset(name: str, config: str | None, data_files: str | None, text_column: str,
                      valid_fraction: float, test_fraction: float, seed: int, workdir: Path) -> dict[str, Path]:
    """Write each split's ``text_column`` to ``workdir/hf_{split}.txt``, one row per line.

    Missing valid/test splits are carved off train by ``*_fraction`` with ``seed``.
    """
    splits = _load_hf_splits(name, config, data_files)
    train = splits.get("train")
    if train is None:
        raise UserError(f"--dataset {name}: has no train split (found {sorted(splits)}); "
                        "pass --dataset-files train=PATH")
    for split, frac in (("test", test_fraction), ("valid", valid_fraction)):
        if split not in splits and frac > 0:
            parts = train.train_test_split(test_size=frac, seed=seed, shuffle=True)
            train, splits[split] = parts["train"], parts["test"]
    splits["train"] = train
    return {split: _write_column(ds, text_column, workdir / f"hf_{split}.txt", name) for split, ds in splits.items()}


def _load_hf_splits(name: str, config: str | None, data_files: str | None) -> dict:
    import datasets

    files = _parse_data_files(data_files)
    try:
        loaded = datasets.load_dataset(name, config, data_files=files)
    except Exception as e:  # datasets raises many types (FileNotFoundError, DatasetNotFoundError, ...)
        raise UserError(f"--dataset {name}: cannot load ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                        "check the name, --dataset-config and --dataset-files (hub names need network)")
    out = {}
    for ours, theirs in HF_SPLIT_NAMES.items():
        found = [s for s in theirs if s in loaded]
        if found:
            out[ours] = loaded[found[0]]
    return out


def _parse_data_files(spec: str | None) -> dict[str, str] | None:
    """``train=a.jsonl,validation=b.jsonl`` or a single path (used as train)."""
    if not spec:
        return None
    if "=" not in spec:
        return {"train": spec}
    files = {}
    for part in spec.split(","):
        split, _, path = part.partition("=")
        if not path:
            raise UserError(f"--dataset-files {spec!r}: expected SPLIT=PATH[,SPLIT=PATH]")
        files[split.strip()] = path.strip()
    return files


def _write_column(ds, column: str, out: Path, name: str) -> Path:
    if column not in ds.column_names:
        raise UserError(f"--dataset {name}: no column {column!r} (columns: {ds.column_names}); "
                        "pass --text-column")
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for batch in ds.iter(batch_size=1000):
            for text in batch[column]:
                text = "" if text is None else str(text)
                f.write((text[:-1] if text.endswith("\n") else text) + "\n")
    return out
