"""The tokenizer files of an export (filled in below)."""

from __future__ import annotations


def tokenizer_files(ckpt, config: dict) -> dict[str, bytes]:
    files = {"dict.txt": ckpt.dictionary.to_text().encode("utf-8")}
    if ckpt.tokenizer_model is not None:
        files["spm.model"] = ckpt.tokenizer_model
    return files
