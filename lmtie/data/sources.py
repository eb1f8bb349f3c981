"""Raw text in: checked paths, compressed files, Hugging Face datasets, and byte-range chunks.

Everything is streamed: a file is read line by line inside a byte range (fairseq's
"offsets"), so any number of workers can share one file and memory does not grow with it.
A line ends at ``\\n``, ``\\r\\n`` or a lone ``\\r``, as in fairseq, which reads text files with Python's
universal newlines; its ``</s>`` stands for those bytes when counting them.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import re
import shutil
from pathlib import Path
from typing import BinaryIO, Iterator, NamedTuple

from lmtie.errors import UserError

_OPENERS = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}
_BATCH_BYTES = 1 << 20  # text is decoded and tokenised about a megabyte at a time
LINE_END = re.compile(r"\r\n|\r|\n")  # where a line ends: fairseq's universal newlines
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


class LineBatch(NamedTuple):
    """Lines read together: ``lines`` (text without newlines), their UTF-8 bytes (newlines included,
    or the one a file's last line lacks), U+FFFD replacements, and whether the last line continues in
    the next batch (``open_end``: it is a piece of a line longer than a batch, cut where ``cut`` allows;
    its bytes hold no newline yet)."""

    lines: list[str]
    nbytes: int
    replaced: int
    open_end: bool


def read_line_batches(path: Path, start: int, end: int, errors: str, flag: str,
                      cut: bytes | None = None) -> Iterator[LineBatch]:
    """Yield the lines of ``path[start:end]`` ~1 MB at a time (:class:`LineBatch`).

    ``start``/``end`` must be line starts (or EOF). A line longer than a batch is cut into ~1 MB
    pieces right before a byte the regex ``cut`` matches (a tokeniser's ``line_cut``), so memory
    stays bounded; without ``cut``, or where none matches, it is read whole (one copy of its bytes).
    With ``errors="strict"`` invalid UTF-8 raises a UserError with the file and byte offset.
    """
    last = re.compile(rb"(?s).*(" + cut + rb")") if cut else None  # greedy: the last match in a block
    with open(path, "rb") as f:
        pos = start
        while pos < end:
            f.seek(pos)
            block = f.read(min(_BATCH_BYTES, end - pos))
            open_end = False
            if pos + len(block) < end:  # cut after the last line end (a final \r may be half of \r\n)
                nl = max(block.rfind(b"\n"), block.rfind(b"\r", 0, len(block) - 1)) + 1
                if nl:
                    block = block[:nl]
                elif last is not None and (m := last.match(block, 1)) is not None:
                    block, open_end = block[:m.start(1)], True
                else:  # a line longer than a batch that cannot be cut: read it whole, once
                    block = _read_line(f, pos, len(block))
            n = len(block)
            batch = _decode(block, pos, path, errors, flag, open_end)
            del block  # not held while the caller encodes the batch
            yield batch
            pos += n


def _read_line(f: BinaryIO, pos: int, scanned: int) -> bytes:
    """The line starting at ``pos`` (``scanned`` bytes of it already seen to hold no line end but maybe a
    last ``\\r``), with its line end, in one read: finding the end first means no second copy of a long line."""
    f.seek(pos + scanned - 1)
    length = scanned - 1
    while chunk := f.read(_BATCH_BYTES):
        m = re.search(rb"[\r\n]", chunk)
        if m is not None:
            length += m.start() + 1
            if chunk[m.start():m.start() + 1] == b"\r" and (chunk[m.start() + 1:m.start() + 2] or f.read(1)) == b"\n":
                length += 1
            break
        length += len(chunk)
    f.seek(pos)
    return f.read(length)


def _decode(block: bytes, pos: int, path: Path, errors: str, flag: str, open_end: bool = False) -> LineBatch:
    ending = 2 if block.endswith(b"\r\n") else 1 if block.endswith((b"\n", b"\r")) else 0
    newline = ending > 0
    view = memoryview(block)[:len(block) - ending]  # the text, without copying the bytes
    if errors == "strict":
        try:
            text, replaced = str(view, "utf-8"), 0
        except UnicodeDecodeError as e:
            raise UserError(f"{flag} {path}: invalid UTF-8 at byte offset {pos + e.start}; fix the file "
                            "or pass --utf8-errors replace to substitute U+FFFD and count replacements")
    else:  # U+FFFD already in the file (its bytes EF BF BD can be nothing else) is not a replacement
        text = str(view, "utf-8", "replace")
        replaced = text.count("\ufffd") - block.count(b"\xef\xbf\xbd")
    del view
    lines = LINE_END.split(text) if "\r" in text else text.split("\n")  # one line: the string itself, not a copy
    del text
    return LineBatch(lines, len(block) + (0 if newline or open_end else 1), replaced, open_end)


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
