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
import struct
import sys
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
        write_safetensors(tmp, tensors, meta)
    return path


_ST_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
              torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
              torch.bool: "BOOL", torch.complex64: "C64"}
_ST_DTYPES.update({getattr(torch, t): n for t, n in (("uint16", "U16"), ("uint32", "U32"), ("uint64", "U64"),
                                                      ("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2"))
                   if hasattr(torch, t)})
_ST_ORDER = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16", "F16",
             "BF16", "I32", "U32", "F32", "C64", "F64", "I64", "U64"]  # the order of safetensors' Dtype enum


def write_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write ``tensors`` (contiguous, on the CPU) and ``metadata`` to ``path`` in the safetensors format.

    safetensors' own ``save_file`` writes a private (0600) ``.tmpXXXXXX`` file of its own beside
    ``path`` and renames it over ``path``: the checkpoint lost the umask's mode, a kill mid-write
    left a full-size temporary file no lmtie run recognises, and a full disk surfaced as a
    SafetensorError. Writing the (simple, stable) format here into the file :func:`atomic_path`
    made avoids all three, without a copy of the tensors in memory. ``safe_open`` reads it back.
    """
    if sys.byteorder != "little":  # the format is little-endian; let safetensors convert
        save_file(tensors, str(path), metadata=metadata)
        return
    # safetensors' order (its dtype enum descending, then the name): the bytes are those of its save()
    order = sorted(tensors, key=lambda k: (-_ST_ORDER.index(_ST_DTYPES.get(tensors[k].dtype, "BOOL")), k))
    header: dict = {"__metadata__": metadata}
    offset = 0
    for k in order:
        t = tensors[k]
        if t.dtype not in _ST_DTYPES:
            raise ValueError(f"{k}: dtype {t.dtype} has no safetensors name")
        nbytes = t.numel() * t.element_size()
        header[k] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for k in order:
            t = tensors[k]
            if t.numel():
                f.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))


def load(path: str | os.PathLike, with_training_state: bool = True) -> Checkpoint:
    """Read a checkpoint without unpickling anything; every problem is a one-line UserError naming the file.

    The header is checked here (each entry present where required, valid JSON of the right shape, the
    config's sections known and within their fields' ranges), so whatever reads a Checkpoint later may
    trust its types; :func:`build_model` checks the weights against the config before building.
    """
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
    """``(model, checkpoint)`` for inference: weights only, no optimiser or RNG state.

    A directory is a Hugging Face ``save_pretrained`` one, imported by :mod:`lmtie.interop.hf_import`.
    """
    if Path(path).is_dir():
        from lmtie.interop.hf_import import checkpoint_from_hf

        ckpt = checkpoint_from_hf(path)
    else:
        ckpt = load(path, with_training_state=False)
    return build_model(ckpt, device), ckpt
