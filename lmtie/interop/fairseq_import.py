"""A fairseq ``transformer_lm`` checkpoint (``.pt``, a pickle) -> an lmtie safetensors checkpoint.

lmtie never unpickles by default; this import is the one explicit exception, and it runs no code
from the file: it is ``torch.load(weights_only=True)`` (torch's restricted unpickler, which builds
only tensors, storages, containers, numbers and strings) with ``argparse.Namespace`` allowed too,
the class of fairseq's ``args``. Any other class (``os.system`` behind a ``__reduce__``, an
omegaconf ``DictConfig``, a numpy array) is refused by name before anything of it runs.
fairseq >= 0.10 saves ``cfg`` through ``OmegaConf.to_container``, i.e. as plain dicts, which load;
its model section may be a dict or a Namespace, and ``${...}`` interpolations left in it are resolved.

fairseq's checkpoint holds no dictionary: ``--dict`` gives the ``dict.txt`` of the data-bin it
was trained on (default: a ``dict.txt`` beside the checkpoint); its size must match the embedding.
The tokenizer recorded is ``space``, fairseq-preprocess's whitespace split, as for a fairseq data-bin:
raw text must be tokenised (BPE'd) as the training text was.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from lmtie.checkpoint import Checkpoint, build_model, save
from lmtie.config import to_dict
from lmtie.data.dictionary import Dictionary
from lmtie.data.sources import sha256_file
from lmtie.errors import UserError
from lmtie.io import file_mode
from lmtie.models import get_family
from lmtie.models.transformer_lm_fairseq import from_fairseq

CHECKPOINT_NAME = "checkpoint_best.safetensors"
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")  # torch names the refused class after GLOBAL


def read_fairseq_pickle(path: Path) -> dict:
    """The checkpoint's dict, built by torch's weights-only unpickler plus ``argparse.Namespace``."""
    if not path.is_file():
        raise UserError(f"{path}: no such file; pass a fairseq checkpoint (.pt)")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            value = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = _GLOBAL.search(str(e))
        if found is None:
            raise UserError(f"{path}: refused by the restricted unpickler ({str(e).splitlines()[0][:160]})")
        name = found.group(1)
        hint = (" (an omegaconf config: load and re-save it with fairseq's checkpoint_utils, which stores cfg as "
                "plain dicts)" if name.startswith("omegaconf.") else "")
        raise UserError(f"{path}: holds a {name} object, which lmtie does not unpickle (it admits only tensors, "
                        f"containers, numbers, strings and argparse.Namespace){hint}; nothing of it was run")
    except Exception as e:  # junk bytes fail anywhere in the unpickler (KeyError, IndexError, ...); none ran code
        why = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise UserError(f"{path}: not a readable torch checkpoint ({why}); pass a fairseq checkpoint (.pt)")
    if not isinstance(value, dict) or not isinstance(value.get("model"), dict):
        raise UserError(f"{path}: not a fairseq checkpoint (expected a dict with a 'model' state dict)")
    return value


def _resolve(value: Any, cfg: dict, depth: int = 0) -> Any:
    """``${task.tokens_per_sample}`` -> its value in ``cfg``, as OmegaConf would."""
    m = re.fullmatch(r"\$\{([\w.]+)\}", value) if isinstance(value, str) else None
    if m is None or depth > 8:
        return value
    node: Any = cfg
    for part in m.group(1).split("."):
        node = vars(node) if isinstance(node, argparse.Namespace) else node
        if not isinstance(node, dict) or part not in node:
            raise UserError(f"cfg interpolation {value} names nothing in the checkpoint's cfg")
        node = node[part]
    return _resolve(node, cfg, depth + 1)


def model_args(ckpt: dict, path: Path) -> dict:
    """fairseq's model options as a dict: ``args`` (legacy) or ``cfg['model']`` (fairseq >= 0.10)."""
    args = ckpt.get("args")
    if isinstance(args, argparse.Namespace):
        return vars(args)
    cfg = ckpt.get("cfg")
    model = cfg.get("model") if isinstance(cfg, dict) else None
    model = vars(model) if isinstance(model, argparse.Namespace) else model
    if not isinstance(model, dict):
        raise UserError(f"{path}: has neither 'args' nor cfg['model']; not a fairseq model checkpoint")
    task = cfg.get("task") if isinstance(cfg.get("task"), dict) else {}
    merged = {"tokens_per_sample": task.get("tokens_per_sample"), **model}
    return {k: _resolve(v, cfg) for k, v in merged.items()}


def checkpoint_from_fairseq(path: str | os.PathLike, dict_path: str | os.PathLike | None = None) -> Checkpoint:
    """The lmtie checkpoint of a fairseq ``transformer_lm`` ``.pt`` and its ``dict.txt``."""
    path = Path(path)
    raw = read_fairseq_pickle(path)
    args = model_args(raw, path)
    dict_path = Path(dict_path) if dict_path else path.with_name("dict.txt")
    if not dict_path.is_file():
        raise UserError(f"--dict {dict_path}: not found; pass the dict.txt of the data-bin the model was trained on")
    dictionary = Dictionary.load(dict_path)
    state = {k: v for k, v in raw["model"].items() if isinstance(v, torch.Tensor)}
    try:
        fields, lmtie_state = from_fairseq(args, state, dictionary.pad())
        vocab = lmtie_state["decoder.embed_tokens.weight"].shape[0]
        if vocab != len(dictionary):
            raise UserError(f"the embedding has {vocab} rows but --dict {dict_path} gives {len(dictionary)} symbols "
                            "(with fairseq's 4 specials); pass the dictionary the model was trained with")
        family = get_family("transformer_lm")
        cfg = family.config_class(**fields, vocab_size=len(dictionary), padding_idx=dictionary.pad())
    except (TypeError, ValueError) as e:
        raise UserError(f"{path}: an option of its args has an unexpected value ({e})")
    except UserError as e:
        raise UserError(f"{path}: {e}")
    tokenizer = {"name": "space", "model_file": None, "model_sha256": None,  # fairseq-preprocess splits on spaces
                 "dict_sha256": sha256_file(dict_path), "data_fingerprint": None}
    ckpt = Checkpoint(model_state=lmtie_state, config={"model_family": family.name, "model": to_dict(cfg)},
                      dictionary=dictionary, tokenizer=tokenizer, path=path)
    build_model(ckpt)  # every tensor has the shape the config builds, or a one-line error now
    return ckpt


def import_fairseq(path: str | os.PathLike, out: str | os.PathLike, dict_path: str | os.PathLike | None = None) -> Path:
    """Write ``out/checkpoint_best.safetensors`` and ``out/dict.txt``; ``out`` must be new or empty."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: exists and is not an empty directory; choose a new one")
    ckpt = checkpoint_from_fairseq(path, dict_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        save(tmp / CHECKPOINT_NAME, ckpt)
        ckpt.dictionary.save(tmp / "dict.txt")
        os.chmod(tmp, file_mode() | (file_mode() & 0o444) >> 2)  # mkdtemp makes 0700
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out / CHECKPOINT_NAME
