"""lmtie checkpoint -> a Hugging Face ``save_pretrained`` directory that ``transformers`` loads without lmtie.

The directory holds ``config.json`` (the family converter's exact HF class, ``tie_word_embeddings``
as trained), ``model.safetensors`` (the tied matrix once, as HF itself saves it),
``generation_config.json``, the tokenizer (``tokenizer.json`` and ``tokenizer_config.json``, see
:mod:`.hf_tokenizer`), lmtie's own ``dict.txt`` (and ``spm.model``) so an import restores the exact
tokenizer, and a model card (``README.md``). It is written into a temporary directory beside the
target and renamed into place: a failed or killed export leaves the old directory (or none).

The ``<pad>`` column. lmtie gives ``<pad>`` a -inf logit (it is never a target); HF models have
no logit mask, so the exported model gives it ``h . w_pad``: exactly 0 when tied (the pad row is
zero), the untouched initial row when untied. ``generation_config.json`` lists it in
``suppress_tokens``, so ``generate`` never emits it (the same -inf, applied at sampling time).
A perplexity computed with transformers from raw logits spreads a little probability onto it;
mask column ``pad_token_id`` with -inf before the softmax to get lmtie's figure exactly.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch

from lmtie.errors import UserError
from lmtie.io import file_mode, fsync_dir
from lmtie.models.hf_registry import hf_converter

ADDED_PAD = "<pad:added-by-lmtie-import>"  # the pad symbol an import appends to a vocabulary without one


def hf_model_files(model, dictionary, bos: int | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json fields, tensors) of ``model`` as its family's HF class; ``bos_token_id`` is ``</s>``
    (what lmtie starts every sequence with) unless ``bos`` says otherwise."""
    converter = hf_converter(model.family)
    if getattr(model, "output_projection", None) is not None:
        raise UserError("--output-projection: the Hugging Face class has no projection before its output layer, so "
                        "the export would compute another function; export a model trained without it")
    config, tensors = converter.to_hf(model.cfg, model.state_dict())
    vocab, pad = len(dictionary), dictionary.pad()
    if dictionary[pad] == ADDED_PAD and pad == vocab - 1:  # an import added this row: give the model back without it
        vocab, pad = vocab - 1, None
        for key in (converter.embed_key, "lm_head.weight"):
            if key in tensors:
                tensors[key] = tensors[key][:vocab]
    config.update(vocab_size=vocab, tie_word_embeddings=model.tied,
                  bos_token_id=dictionary.eos() if bos is None else bos,
                  eos_token_id=dictionary.eos(), pad_token_id=pad, torch_dtype="float32", dtype="float32")
    if model.tied and "lm_head.weight" in tensors:
        raise AssertionError("a tied export must hold the matrix once")
    return config, {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}


def generation_config(config: dict) -> dict:
    """HF generation defaults: stop at ``</s>`` (end of a line in lmtie) and never emit ``<pad>``."""
    pad = config["pad_token_id"]
    return {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"], "pad_token_id": pad,
            **({"suppress_tokens": [pad]} if pad is not None else {})}


def export_hf(path: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Export the checkpoint (or HF directory) at ``path`` to the directory ``out``; return ``out``."""
    from lmtie.checkpoint import load_model
    from lmtie.interop.hf_tokenizer import lmtie_tokenizer, tokenizer_files

    out = Path(out)
    _check_target(out, overwrite)
    model, ckpt = load_model(path)
    # an lmtie model, not one imported from HF (whose dictionary holds HF's ids, without lmtie's specials)
    native = (ckpt.tokenizer or {}).get("name") != "hf" and ckpt.dictionary.nspecial > 0
    config, tensors = hf_model_files(model, ckpt.dictionary, None if native else ckpt.dictionary.bos())
    if native:  # what an import needs to restore lmtie's own dictionary, tokenizer and data settings
        config.update(lmtie_tokenizer=ckpt.tokenizer or {}, lmtie_config=ckpt.config)
    files = {"config.json": _json(config), "generation_config.json": _json(generation_config(config)),
             **tokenizer_files(ckpt, config, lmtie_tokenizer(ckpt) if native else None)}
    files["README.md"] = model_card(model, ckpt, config, files).encode("utf-8")
    _write_dir(out, files, tensors)
    return out


def _json(value) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; pass a directory (it is created)")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--out {out}: the directory is not empty; pass --overwrite to replace it or choose another")


def _write_dir(out: Path, files: dict[str, bytes], tensors: dict[str, torch.Tensor]) -> None:
    """Write everything into a temporary sibling directory, fsync it, then rename it over ``out``."""
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(tmp, file_mode() | (file_mode() & 0o444) >> 2)  # mkdtemp makes 0700: x wherever the umask gives r
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        for p in tmp.iterdir():
            os.chmod(p, file_mode())
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(tmp)
        old = None
        if out.exists():  # moved aside, not deleted, until the new directory is in place
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
        try:
            os.replace(tmp, out)
        except OSError:
            if old is not None:
                os.replace(old / out.name, out)
            raise
        fsync_dir(out.parent)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def model_card(model, ckpt, config: dict, files: dict[str, bytes]) -> str:
    """A README.md: what the model is, how it was trained (the full config) and what it measured."""
    counts = model.num_parameters()
    state = ckpt.train_state or {}
    best = state.get("best_valid_loss")
    lines = [
        "---", "library_name: transformers", "tags: [lmtie, tied-embeddings]", "---", "",
        f"# lmtie {model.family} ({Path(str(ckpt.path)).name})", "",
        f"An lmtie `{model.family}` model exported as `{config['architectures'][0]}` "
        f"(`tie_word_embeddings={str(model.tied).lower()}`: the input embedding "
        f"{'is' if model.tied else 'is not'} the output layer).", "",
        f"Parameters: {counts['total']:,} unique ({counts['embedding']:,} embedding"
        f"{', the tied matrix counted once' if model.tied else ''}; {counts['non_embedding']:,} non-embedding).", "",
        "## Use", "", "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "tok = AutoTokenizer.from_pretrained(DIR)", "model = AutoModelForCausalLM.from_pretrained(DIR)",
        'ids = tok("ROMEO:", return_tensors="pt").input_ids   # starts with </s>, as lmtie feeds every sequence',
        "model.generate(ids, max_new_tokens=40, do_sample=False)", "```", "",
        "- lmtie starts every sequence with `</s>` and ends every line with it; the tokenizer prepends it "
        "(`bos_token` is `</s>`), and `generate` stops at it (the end of a line) unless `eos_token_id=None`.",
        f"- `<pad>` (id {config['pad_token_id']}) is never a target: lmtie masks its logit, this model does not, "
        "and `generation_config.json` suppresses it. For lmtie's perplexity, set that logit column to -inf "
        "before the softmax." if config["pad_token_id"] is not None else "- the model has no `<pad>` token.",
        "- Dropout is a training setting; GPT-2 has no dropout after the feed-forward activation and Llama none on "
        "residual branches, so those lmtie settings do not carry over (inference is unaffected).",
        "", "## Training", "",
    ]
    if state:
        lines += [f"- updates: {state.get('step', 0):,}; tokens seen: {state.get('tokens_seen', 0):,}",
                  f"- best valid loss: {best / math.log(2):.4f} bits, perplexity {math.exp(best):.2f}"
                  if best is not None else "- no validation was run", ""]
    lines += ["Full lmtie configuration (as the checkpoint holds it):", "", "```json",
              json.dumps(ckpt.config, indent=2, sort_keys=True), "```", "",
              f"Files: {', '.join(sorted([*files, 'model.safetensors', 'README.md']))}.", ""]
    return "\n".join(lines)
