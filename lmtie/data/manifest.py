"""``manifest.json``: what a data-bin holds, so later stages can check and reuse it.

The evaluator reads UTF-8 byte counts for bits-per-byte; checkpoints record the dict hash
for a vocabulary check. A plain fairseq data-bin (no manifest) still loads: a minimal
manifest is derived from ``dict.txt`` and the ``.idx`` files, with bytes unknown (None).
"""

from __future__ import annotations

import json
from pathlib import Path

from lmtie.data.indexed_dataset import read_index_header
from lmtie.errors import UserError
from lmtie.io import atomic_write_text

MANIFEST = "manifest.json"
FORMAT = "lmtie-data-bin"


def write_manifest(destdir: Path, manifest: dict) -> None:
    atomic_write_text(destdir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def load_manifest(data_bin: str | Path) -> dict:
    """The manifest of ``data_bin`` (a minimal one for a fairseq data-bin without one)."""
    d = Path(data_bin)
    if not d.is_dir():
        raise UserError(f"{d}: data directory not found; run lmtie-preprocess --destdir {d} first")
    path = d / MANIFEST
    if path.is_file():
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: unreadable manifest ({e}); re-run lmtie-preprocess with --overwrite")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise UserError(f"{path}: not an lmtie manifest; re-run lmtie-preprocess with --overwrite")
        return manifest
    if (d / "dict.txt").is_file():
        return _fairseq_manifest(d)
    pair = _fairseq_pair_dict(d)
    if pair is not None:
        return _fairseq_manifest(d, pair)
    raise UserError(f"{d}: not a preprocessed data directory (no {MANIFEST} or dict.txt); "
                    f"run lmtie-preprocess --destdir {d}")


def _fairseq_pair_dict(d: Path) -> Path | None:
    """The target dictionary of a fairseq translation data-bin (``dict.SRC.txt``, ``dict.TGT.txt`` and
    ``SPLIT.SRC-TGT.LANG.idx``), or None when ``d`` is not one."""
    for idx in sorted(d.glob("*.*-*.*.idx")):
        pair = idx.name.split(".")[1]
        tgt = pair.split("-")[-1]
        if (d / f"dict.{tgt}.txt").is_file():
            return d / f"dict.{tgt}.txt"
    return None


def _fairseq_manifest(d: Path, dictionary: Path | None = None) -> dict:
    """What can be known of a fairseq data-bin: word-level ids, counts from the indexes. ``dictionary`` is
    the target side's of a translation data-bin (default ``dict.txt``)."""
    from lmtie.data.dictionary import Dictionary

    dictionary = dictionary or d / "dict.txt"
    vocab = len(Dictionary.load(dictionary))
    splits = {}
    for idx in sorted(d.glob("*.idx")):
        dtype, count, _ = read_index_header(idx)
        bin_size = idx.with_suffix(".bin").stat().st_size if idx.with_suffix(".bin").exists() else 0
        splits[idx.stem] = {"lines": count, "tokens": bin_size // dtype.itemsize, "bytes": None}
    from lmtie.data.sources import sha256_file

    return {"format": FORMAT, "version": 1, "source": "fairseq", "tokenizer": "space",
            "tokenizer_model": None, "vocab_size": vocab, "splits": splits,
            "hashes": {"dict": sha256_file(dictionary), "tokenizer_model": None, "inputs": {}}}


def load_tokenizer(data_bin: str | Path):
    """The tokeniser a data-bin was built with, mapping text to its ``dict.txt`` ids and back."""
    from lmtie.data.dictionary import Dictionary
    from lmtie.data.tokenizers import make_tokenizer

    d = Path(data_bin)
    manifest = load_manifest(d)
    model = manifest.get("tokenizer_model")
    if model and not (d / model).is_file():
        raise UserError(f"{d / model}: tokenizer model missing from the data-bin; re-run lmtie-preprocess")
    return make_tokenizer(manifest["tokenizer"], Dictionary.load(d / "dict.txt"), d / model if model else None)


def tokenizer_identity(data_bin: str | Path) -> tuple[dict, bytes | None]:
    """What a checkpoint records of the data-bin's tokeniser (name, model file, hashes), and the
    model file's bytes (None without one), so the checkpoint alone can encode text."""
    d = Path(data_bin)
    manifest = load_manifest(d)
    hashes = manifest.get("hashes", {})
    model_file = manifest.get("tokenizer_model")
    info = {"name": manifest.get("tokenizer", "space"), "model_file": model_file,
            "model_sha256": hashes.get("tokenizer_model"), "dict_sha256": hashes.get("dict"),
            "data_fingerprint": manifest.get("fingerprint")}
    blob = (d / model_file).read_bytes() if model_file else None
    return info, blob
