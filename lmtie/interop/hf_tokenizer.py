"""The tokenizer files of an export (filled in below)."""

from __future__ import annotations


def tokenizer_files(ckpt, config: dict) -> dict[str, bytes]:
    name = (ckpt.tokenizer or {}).get("name")
    if name == "hf":  # imported from HF: its own tokenizer.json goes back
        return {"tokenizer.json": ckpt.tokenizer_model} if ckpt.tokenizer_model is not None else {}
    from lmtie.data.tokenizers import tokenizer_class

    files = {"dict.txt": ckpt.dictionary.to_text().encode("utf-8")}
    if name and ckpt.tokenizer_model is not None and tokenizer_class(name).model_file:
        files[tokenizer_class(name).model_file] = ckpt.tokenizer_model
    return files
