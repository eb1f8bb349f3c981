"""Self-describing checkpoints in one safetensors file: no pickle, atomic writes.

Layout of ``checkpoint_*.safetensors``:
- tensors ``model.<name>``: the model's state_dict; a tied matrix is one key
  (e.g. ``decoder.embed_tokens.weight``) because the tied model registers it once;
- tensors ``optim.<param>.<slot>``: optimiser state, keyed by parameter *name*, not position;
- tensors ``rng.*``: torch CPU/CUDA generator states; ``tokenizer.model``: the tokenizer's
  model bytes (SentencePiece), so a checkpoint can encode raw text on its own;
- header metadata (JSON strings): ``config`` (every component's config and ``model_family``,
  the registered name that rebuilds the model), ``dictionary`` (dict.txt text; the target
  side's for a translation model), ``src_dictionary`` (a translation model's source dict.txt,
  absent for language models and joined dictionaries), ``tokenizer`` (name and hash),
  ``train_state`` (step, epoch, data position, best metric, Python/NumPy RNG), ``optim_groups``
  (hyper-parameters per group).

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
    src_dictionary: Dictionary | None = None  # a translation model's source side (``dictionary`` is the target's)


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
    if ckpt.src_dictionary is not None:
        meta["src_dictionary"] = ckpt.src_dictionary.to_text()
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
    except (SafetensorError, OSError, ValueError, TypeError, RuntimeError, OverflowError) as e:
        raise UserError(f"{p}: not a readable lmtie checkpoint ({_short(e)}); it may be truncated, corrupted or a "
                        "pickle, which lmtie never loads; use checkpoint_best or another checkpoint_*.safetensors")
    return _from_parts(p, meta, tensors)


# the config sections lmtie-train writes (TrainSetup.config_dict), checked against their dataclasses
_SECTIONS = ("model_family", "model", "data", "optimization", "checkpoint", "run")


def _from_parts(path: Path, meta: dict, tensors: dict[str, torch.Tensor]) -> Checkpoint:
    config = _header_json(path, meta, "config", dict, required=True)
    _check_config(path, config)
    if not isinstance(meta.get("dictionary"), str):
        raise UserError(f"{path}: the header has no 'dictionary'; the checkpoint is incomplete or not written by "
                        "lmtie-train")
    if not isinstance(meta.get("src_dictionary", ""), str):
        raise UserError(f"{path}: header 'src_dictionary' is not dict.txt text; the checkpoint is damaged")
    tokenizer = _header_json(path, meta, "tokenizer", dict)
    if not isinstance(tokenizer.get("name", ""), str):
        raise UserError(f"{path}: header 'tokenizer' has a name that is not a string ({tokenizer['name']!r})")
    optim: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            pname, dot, slot = k[len("optim."):].rpartition(".")
            if not (dot and pname and slot):
                raise UserError(f"{path}: tensor {k!r} is not named optim.<parameter>.<slot>; the checkpoint is "
                                "damaged or not written by lmtie-train")
            optim.setdefault(pname, {})[slot] = v
    blob = tensors.get("tokenizer.model")
    if blob is not None and (blob.dtype != torch.uint8 or blob.dim() != 1):
        raise UserError(f"{path}: tensor 'tokenizer.model' is {blob.dtype} of shape {list(blob.shape)}, not the "
                        "bytes of a tokenizer model (uint8, one dimension)")
    return Checkpoint(
        model_state={k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
        config=config,
        dictionary=_dictionary(path, meta["dictionary"]),
        src_dictionary=_dictionary(path, meta["src_dictionary"]) if "src_dictionary" in meta else None,
        tokenizer=tokenizer,
        tokenizer_model=None if blob is None else blob.numpy().tobytes(),
        train_state=_header_json(path, meta, "train_state", dict),
        optim_state=optim,
        optim_groups=_header_json(path, meta, "optim_groups", list),
        rng={k[len("rng."):]: v for k, v in tensors.items() if k.startswith("rng.")},
        path=path,
    )


def _dictionary(path: Path, text: str) -> Dictionary:
    d = Dictionary()
    for lineno, line in enumerate(text.splitlines(), start=1):
        d._add_file_line(path, lineno, line)
    return d


def _header_json(path: Path, meta: dict, key: str, kind: type, required: bool = False) -> Any:
    """Header entry ``key`` parsed as JSON of type ``kind`` (empty when absent and not required)."""
    if key not in meta:
        if required:
            raise UserError(f"{path}: the header has no {key!r}; the checkpoint is incomplete or not written by "
                            "lmtie-train")
        return kind()
    try:
        value = json.loads(meta[key])
    except (json.JSONDecodeError, RecursionError) as e:
        raise UserError(f"{path}: header {key!r} is not valid JSON ({_short(e)}); the checkpoint is damaged")
    if not isinstance(value, kind):
        raise UserError(f"{path}: header {key!r} is a JSON {type(value).__name__}, not a"
                        f"{'n object' if kind is dict else ' list'}; the checkpoint is damaged")
    return value


def _check_config(path: Path, config: dict) -> None:
    """Known sections only, each a valid instance of its dataclass (the model's is checked by model_config)."""
    from lmtie.training.config import CheckpointConfig, DataConfig, OptimizationConfig, RunConfig

    unknown = sorted(set(config) - set(_SECTIONS))
    if unknown:
        raise UserError(f"{path}: unknown config section(s) {unknown} (known: {', '.join(_SECTIONS)}); the "
                        "checkpoint is from another program or a newer lmtie")
    if not isinstance(config.get("model"), dict):
        raise UserError(f"{path}: the config has no 'model' section (an object); the checkpoint cannot be rebuilt")
    if not isinstance(config.get("model_family", ""), str):
        raise UserError(f"{path}: config 'model_family' is {config['model_family']!r}, not a family name")
    for name, cls in (("data", DataConfig), ("optimization", OptimizationConfig),
                      ("checkpoint", CheckpointConfig), ("run", RunConfig)):
        if name in config:
            _config_section(path, name, cls, config[name])


def _config_section(path: Path, name: str, cls: type, values: Any):
    from lmtie.config import from_dict

    try:
        return from_dict(cls, values)
    except (TypeError, ValueError) as e:
        raise UserError(f"{path}: the saved {name} config is invalid ({_short(e)}); the checkpoint is damaged or "
                        "from another program")
    except UserError as e:
        raise UserError(f"{path}: the saved {name} config is invalid ({e}); the checkpoint is damaged or from "
                        "another program")


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
    from lmtie.models import get_family

    try:
        family = get_family(model_family(ckpt))
    except UserError as e:
        raise UserError(f"{ckpt.path}: {e}")
    if not isinstance(ckpt.config.get("model"), dict):
        raise UserError(f"{ckpt.path}: the config has no 'model' section (an object); the checkpoint cannot be rebuilt")
    return _config_section(ckpt.path, f"{family.name} model", family.config_class, ckpt.config["model"])


# tables a model derives from its config rather than storing (sinusoidal positions, masks) may be this large
# even when the weights are smaller; beyond it the config is refused, not allocated
_DERIVED_BYTES_LIMIT = 1 << 30


def check_sizes(ckpt: Checkpoint, cfg) -> None:
    """Refuse a config whose model would not match the weights in the file, before allocating anything.

    The model is built on the meta device (shapes, no memory) and every state_dict entry is compared with
    the file's tensor of that name; what the model derives instead of storing must not outgrow the file.
    """
    from lmtie.models import build_model as build

    try:
        with torch.device("meta"):
            shell = build(model_family(ckpt), cfg)
    except (RuntimeError, ValueError, TypeError, OverflowError) as e:
        raise UserError(f"{ckpt.path}: the saved model config cannot be built ({_short(e)}); the checkpoint is "
                        "inconsistent")
    expected = shell.state_dict()
    missing = [k for k in expected if k not in ckpt.model_state]
    unexpected = [k for k in ckpt.model_state if k not in expected]
    if missing or unexpected:
        what = (f"lacks {_few(missing)}" if missing else "") + (" and " if missing and unexpected else "") + \
               (f"has unexpected {_few(unexpected)}" if unexpected else "")
        raise UserError(f"{ckpt.path}: the weights do not match the saved config: the file {what}; "
                        "the checkpoint is inconsistent")
    for k, want in expected.items():
        got = ckpt.model_state[k]
        if tuple(got.shape) != tuple(want.shape):
            raise UserError(f"{ckpt.path}: tensor model.{k} has shape {list(got.shape)} but the saved config needs "
                            f"{list(want.shape)}; the config and the weights disagree (the checkpoint is inconsistent)")
        if want.is_floating_point() and not got.is_floating_point():
            raise UserError(f"{ckpt.path}: tensor model.{k} is {got.dtype}, not floating point; the checkpoint "
                            "is damaged")
    stored = sum(t.numel() * t.element_size() for t in ckpt.model_state.values())
    derived = {name: b.numel() * b.element_size() for name, b in shell.named_buffers() if name not in expected}
    if sum(derived.values()) > max(stored, _DERIVED_BYTES_LIMIT):
        biggest = max(derived, key=derived.get)
        raise UserError(f"{ckpt.path}: the saved config would need {sum(derived.values()) / 2**30:.1f} GiB of "
                        f"derived tables ({biggest}: max_target_positions={getattr(cfg, 'max_target_positions', '?')}) "
                        f"for {stored / 2**20:.1f} MiB of weights; the checkpoint is inconsistent")


def _few(keys: list[str]) -> str:
    shown = ", ".join(f"model.{k}" for k in keys[:3])
    return shown + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")


def build_model(ckpt: Checkpoint, device: str | torch.device = "cpu"):
    """The model a checkpoint describes, with its weights, re-tied by construction and checked.

    Sizes are checked against the file's tensors first (:func:`check_sizes`), so a damaged config is a
    one-line error, never an attempt to allocate what it claims.
    """
    from lmtie.models import build_model as build

    cfg = model_config(ckpt)
    _check_vocabularies(ckpt, cfg)
    check_sizes(ckpt, cfg)
    model = build(model_family(ckpt), cfg)
    try:
        model.load_state_dict(ckpt.model_state, strict=True)
    except RuntimeError as e:
        raise UserError(f"{ckpt.path}: weights do not match the saved config ({_short(e)})")
    model.to(device)
    model.check_tie()
    return model


def _check_vocabularies(ckpt: Checkpoint, cfg) -> None:
    """The config's vocabulary sizes and <pad> are those of the dictionaries in the file: a language model's
    one, or a translation model's two (a checkpoint without a source dictionary has a joined one)."""
    from lmtie.models import get_family

    sides = [("", "vocab_size", ckpt.dictionary)]
    if get_family(model_family(ckpt)).task == "translation":
        src = ckpt.dictionary if ckpt.src_dictionary is None else ckpt.src_dictionary
        sides = [("target ", "tgt_vocab_size", ckpt.dictionary), ("source ", "src_vocab_size", src)]
    for side, name, d in sides:
        if getattr(cfg, name) != len(d):
            raise UserError(f"{ckpt.path}: model {side}vocabulary {getattr(cfg, name)} != its {side}dictionary's "
                            f"{len(d)}; the checkpoint is inconsistent")
        if cfg.padding_idx != d.pad():
            raise UserError(f"{ckpt.path}: model padding_idx {cfg.padding_idx} is not its {side}dictionary's <pad> "
                            f"({d.pad()}); the checkpoint is inconsistent")


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
