"""Self-describing checkpoints in one safetensors file: no pickle, atomic writes.

Layout of ``checkpoint_*.safetensors``:
- tensors ``model.<name>``: the model's state_dict; a tied matrix is one key
  (e.g. ``decoder.embed_tokens.weight``) because the tied model registers it once;
- tensors ``optim.<param>.<slot>``: optimiser state, keyed by parameter *name*, not position;
- tensors ``rng.*``: torch CPU/CUDA generator states; ``tokenizer.model``: the tokenizer's
  model bytes (SentencePiece), so a checkpoint can encode raw text on its own;
- header metadata (JSON strings): ``config`` (every component's config and ``model_family``,
  the registered name that rebuilds the model), ``dictionary``
  (dict.txt text), ``tokenizer`` (name and hash), ``train_state`` (step, epoch, data position,
  best metric, Python/NumPy RNG), ``optim_groups`` (hyper-parameters per group).

Loading reads only safetensors, which cannot execute code; a file that is anything else
(a pickle, a truncated write) is refused with a one-line error.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from lmtie.data.dictionary import Dictionary
from lmtie.errors import UserError
from lmtie.io import atomic_path

FORMAT = "lmtie-checkpoint"
VERSION = "1"
SUFFIX = ".safetensors"


@dataclass
class Checkpoint:
    """Everything a checkpoint holds, as plain Python and tensors."""

    model_state: dict[str, torch.Tensor]
    config: dict
    dictionary: Dictionary
    tokenizer: dict = field(default_factory=dict)
    tokenizer_model: bytes | None = None
    train_state: dict = field(default_factory=dict)
    optim_state: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    optim_groups: list[dict] = field(default_factory=list)
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    path: Path | None = None


def resolve(path: str | os.PathLike) -> Path:
    """Accept ``checkpoint_last``, ``checkpoint_last.pt`` (fairseq habit) or the real file name."""
    p = Path(path)
    if p.suffix == ".pt" and not p.exists():
        p = p.with_suffix(SUFFIX)
    if not p.exists() and p.suffix != SUFFIX:
        p = p.with_name(p.name + SUFFIX)
    return p


def save(path: str | os.PathLike, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` atomically (temp file, fsync, rename); the old file survives any crash."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in ckpt.model_state.items()}
    for pname, slots in ckpt.optim_state.items():
        for slot, t in slots.items():
            tensors[f"optim.{pname}.{slot}"] = t.detach().contiguous().cpu()
    tensors.update({f"rng.{k}": v.contiguous().cpu() for k, v in ckpt.rng.items()})
    if ckpt.tokenizer_model is not None:
        tensors["tokenizer.model"] = torch.frombuffer(bytearray(ckpt.tokenizer_model), dtype=torch.uint8)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "config": json.dumps(ckpt.config),
        "dictionary": ckpt.dictionary.to_text(),
        "tokenizer": json.dumps(ckpt.tokenizer),
        "train_state": json.dumps(ckpt.train_state),
        "optim_groups": json.dumps(ckpt.optim_groups),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def load(path: str | os.PathLike, with_training_state: bool = True) -> Checkpoint:
    """Read a checkpoint without unpickling anything; errors name the file and the fix."""
    p = resolve(path)
    if not p.is_file():
        raise UserError(f"{path}: checkpoint not found{' (it is a directory)' if p.is_dir() else ''}; "
                        "pass a checkpoint_*.safetensors file written by lmtie-train")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise UserError(f"{p}: a safetensors file but not an lmtie checkpoint (no '{FORMAT}' header)")
            keys = [k for k in f.keys() if with_training_state or not k.startswith(("optim.", "rng."))]
            tensors = {k: f.get_tensor(k) for k in keys}
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
        raise UserError(f"{p}: not a readable lmtie checkpoint ({_short(e)}); it may be truncated, corrupted or a "
                        "pickle, which lmtie never loads; use checkpoint_best or another checkpoint_*.safetensors")
    return _from_parts(p, meta, tensors)


def _from_parts(path: Path, meta: dict, tensors: dict[str, torch.Tensor]) -> Checkpoint:
    optim: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            pname, slot = k[len("optim."):].rsplit(".", 1)
            optim.setdefault(pname, {})[slot] = v
    dictionary = Dictionary()
    for lineno, line in enumerate(meta["dictionary"].splitlines(), start=1):
        dictionary._add_file_line(path, lineno, line)
    blob = tensors.get("tokenizer.model")
    return Checkpoint(
        model_state={k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
        config=json.loads(meta["config"]),
        dictionary=dictionary,
        tokenizer=json.loads(meta.get("tokenizer", "{}")),
        tokenizer_model=None if blob is None else blob.numpy().tobytes(),
        train_state=json.loads(meta.get("train_state", "{}")),
        optim_state=optim,
        optim_groups=json.loads(meta.get("optim_groups", "[]")),
        rng={k[len("rng."):]: v for k, v in tensors.items() if k.startswith("rng.")},
        path=path,
    )


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:120] if str(e) else type(e).__name__


def dictionary_hash(d: Dictionary) -> str:
    return hashlib.sha256(d.to_text().encode("utf-8")).hexdigest()[:16]


def model_family(ckpt: Checkpoint) -> str:
    """The family a checkpoint's model belongs to (lmtie 0.1 wrote only ``transformer_lm``, without the key)."""
    from lmtie.models import DEFAULT_FAMILY

    return ckpt.config.get("model_family", DEFAULT_FAMILY)


def model_config(ckpt: Checkpoint):
    """The saved model config as its family's dataclass; a bad one is a UserError naming the file."""
    from lmtie.config import from_dict
    from lmtie.models import get_family

    family = get_family(model_family(ckpt))
    try:
        return from_dict(family.config_class, ckpt.config["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{ckpt.path}: the saved model config does not fit family {family.name!r} ({_short(e)}); "
                        "the checkpoint is inconsistent or from another program")


def build_model(ckpt: Checkpoint, device: str | torch.device = "cpu"):
    """The model a checkpoint describes, with its weights, re-tied by construction and checked."""
    from lmtie.models import build_model as build

    cfg = model_config(ckpt)
    if cfg.vocab_size != len(ckpt.dictionary):
        raise UserError(f"{ckpt.path}: model vocabulary {cfg.vocab_size} != its dictionary's {len(ckpt.dictionary)}; "
                        "the checkpoint is inconsistent")
    model = build(model_family(ckpt), cfg)
    try:
        model.load_state_dict(ckpt.model_state, strict=True)
    except RuntimeError as e:
        raise UserError(f"{ckpt.path}: weights do not match the saved config ({_short(e)})")
    model.to(device)
    model.check_tie()
    return model


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """``(model, checkpoint)`` for inference: weights only, no optimiser or RNG state."""
    ckpt = load(path, with_training_state=False)
    return build_model(ckpt, device), ckpt
