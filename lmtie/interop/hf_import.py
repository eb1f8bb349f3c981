"""A local Hugging Face ``save_pretrained`` directory -> an lmtie :class:`~lmtie.checkpoint.Checkpoint`.

Only files are read, never the hub, and never a pickle: the weights must be safetensors
(``model.safetensors`` or the shards of ``model.safetensors.index.json``). The family comes from
``model_type`` through the converters (``models/*_hf.py``).

The tie is read from ``tie_word_embeddings`` (the HF class's default when save_pretrained left it
out) and checked against the weights: a tied config whose file holds an ``lm_head.weight`` unlike
the embedding is refused, an untied one without ``lm_head.weight`` too.

Vocabulary. A directory that lmtie exported carries lmtie's ``dict.txt`` (and tokenizer model),
so the import has exactly the checkpoint's dictionary and tokenizer. Any other directory gets a
dictionary of the HF ids (symbols from ``tokenizer.json``; ``</s>`` is ``eos_token_id``) and the
``hf`` tokenizer. lmtie needs a ``<pad>`` that is never a target: the config's ``pad_token_id``
when it is a token of its own; otherwise one zero row is appended (embedding and untied head) as
``<pad>``, whose logit lmtie masks, so every other logit and probability is the HF model's.
Export removes that row again. Weights are read as float32 (exact for fp16 and bf16 sources).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from lmtie.checkpoint import Checkpoint
from lmtie.config import to_dict
from lmtie.data.dictionary import Dictionary
from lmtie.errors import UserError
from lmtie.interop.hf_export import ADDED_PAD
from lmtie.models import get_family
from lmtie.models.hf_registry import hf_converter_for

WEIGHTS, INDEX = "model.safetensors", "model.safetensors.index.json"


def is_hf_directory(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise UserError(f"{path}: not readable JSON ({str(e).splitlines()[0][:120]})")
    if not isinstance(value, dict):
        raise UserError(f"{path}: a JSON {type(value).__name__}, not an object")
    return value


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the directory's safetensors file(s), as float32; a pickle-only directory is refused."""
    from safetensors import SafetensorError, safe_open

    if (directory / WEIGHTS).is_file():
        files = [directory / WEIGHTS]
    elif (directory / INDEX).is_file():
        weight_map = read_json(directory / INDEX).get("weight_map", {})
        files = [directory / name for name in sorted(set(weight_map.values()))]
    else:
        pickled = [p.name for p in directory.glob("*.bin")] + [p.name for p in directory.glob("*.pt")]
        hint = (f" ({', '.join(sorted(pickled))} is a pickle, which lmtie never loads; re-save with "
                "save_pretrained(DIR, safe_serialization=True))" if pickled else "")
        raise UserError(f"{directory}: no {WEIGHTS} or {INDEX}{hint}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as st:
                state.update({k: st.get_tensor(k) for k in st.keys()})
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise UserError(f"{f}: not a readable safetensors file ({str(e).splitlines()[0][:120]})")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _resolve_head(directory: Path, config: dict, state: dict, embed_key: str, tied: bool) -> None:
    """Keep ``lm_head.weight`` in ``state`` only when untied; refuse a config the weights contradict."""
    if embed_key not in state:
        raise UserError(f"{directory}: the weights lack {embed_key!r}, the input embedding of a {config['model_type']}")
    head = state.get("lm_head.weight")
    if tied and head is not None:
        if head.shape != state[embed_key].shape or not torch.equal(head, state[embed_key]):
            raise UserError(f"{directory}: config.json says tie_word_embeddings=true but lm_head.weight differs from "
                            f"{embed_key}; the two disagree (fix the config, or untie it: tie_word_embeddings=false)")
        del state["lm_head.weight"]
    if not tied and head is None:
        raise UserError(f"{directory}: config.json says tie_word_embeddings=false but the weights have no "
                        "lm_head.weight (set tie_word_embeddings=true if the embedding is the head)")


def _vocab_tokens(directory: Path) -> tuple[dict[int, str], int | None]:
    """(id -> token, unk id) from tokenizer.json, read as JSON (BPE/WordPiece dicts, Unigram lists)."""
    path = directory / "tokenizer.json"
    if not path.is_file():
        return {}, None
    spec = read_json(path)
    model = spec.get("model") or {}
    vocab = model.get("vocab") or {}
    tokens = ({i: t for t, i in vocab.items()} if isinstance(vocab, dict)
              else {i: pair[0] for i, pair in enumerate(vocab)})
    tokens.update({t["id"]: t["content"] for t in spec.get("added_tokens", []) if "id" in t and "content" in t})
    unk = model.get("unk_token")
    unk_id = model.get("unk_id") if isinstance(model.get("unk_id"), int) else \
        next((i for i, t in tokens.items() if t == unk), None) if unk else None
    return tokens, unk_id


def _special_id(config: dict, key: str, vocab: int) -> int | None:
    value = config.get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, int) and 0 <= value < vocab else None


def _hf_dictionary(directory: Path, config: dict, vocab: int) -> tuple[Dictionary, bool]:
    """The HF ids as a Dictionary (specials where the config puts them); True when a <pad> row must be added."""
    tokens, unk = _vocab_tokens(directory)
    eos = _special_id(config, "eos_token_id", vocab)
    eos = eos if eos is not None else _special_id(config, "bos_token_id", vocab)
    if eos is None:
        raise UserError(f"{directory}/config.json: no eos_token_id (or bos_token_id) within the vocabulary; lmtie "
                        "ends every line with it and starts every sequence with it")
    bos = _special_id(config, "bos_token_id", vocab)
    pad = _special_id(config, "pad_token_id", vocab)
    add_pad = pad is None or pad in (eos, bos)  # a pad that is also eos/bos is a target: lmtie must not mask it
    d = Dictionary()
    d.symbols = [tokens.get(i, f"<hf:{i}>") for i in range(vocab)] + ([ADDED_PAD] if add_pad else [])
    d.count = [0] * len(d.symbols)
    d.indices = {}
    for i, s in enumerate(d.symbols):
        d.indices.setdefault(s, i)
    d.eos_index, d.bos_index = eos, bos if bos is not None else eos
    d.pad_index = len(d.symbols) - 1 if add_pad else pad
    d.unk_index = unk if unk is not None else d.pad_index  # byte-level BPE has no unknowns: nothing is counted
    d.nspecial = 0
    return d, add_pad


def _lmtie_vocabulary(directory: Path, config: dict) -> tuple[Dictionary, dict, bytes | None] | None:
    """The dictionary, tokenizer identity and model bytes an lmtie export left, if this is one."""
    info = config.get("lmtie_tokenizer")
    if not (directory / "dict.txt").is_file() or not isinstance(info, dict):
        return None
    from lmtie.data.tokenizers import tokenizer_class

    model_file = tokenizer_class(info.get("name", "")).model_file if info.get("name") else None
    blob = (directory / model_file).read_bytes() if model_file and (directory / model_file).is_file() else None
    return Dictionary.load(directory / "dict.txt"), info, blob


def _append_pad_row(state: dict, keys: list[str]) -> None:
    for key in keys:
        if key in state:
            t = state[key]
            state[key] = torch.cat([t, t.new_zeros(1, t.size(1))])


def checkpoint_from_hf(path: str | os.PathLike) -> Checkpoint:
    """The lmtie checkpoint of a local HF model directory (weights, model config, dictionary, tokenizer)."""
    directory = Path(path)
    checkpoints = sorted(p.name for p in directory.glob("checkpoint*.safetensors"))
    if checkpoints:  # lmtie-train's --save-dir (it has a config.json too)
        best = "checkpoint_best.safetensors" if "checkpoint_best.safetensors" in checkpoints else checkpoints[-1]
        raise UserError(f"{directory}: an lmtie --save-dir, not a Hugging Face directory; pass one of its "
                        f"checkpoints, e.g. {directory / best}")
    if not is_hf_directory(directory):
        raise UserError(f"{directory}: not a Hugging Face model directory (no config.json); pass a "
                        "checkpoint_*.safetensors file or a save_pretrained directory")
    config = read_json(directory / "config.json")
    if "model_type" not in config:
        raise UserError(f"{directory}/config.json has no model_type; it is not a Hugging Face model config")
    converter = hf_converter_for(str(config.get("model_type")))
    tied = bool(config.get("tie_word_embeddings", converter.tie_default))
    state = read_weights(directory)
    _resolve_head(directory, config, state, converter.embed_key, tied)
    vocab = int(state[converter.embed_key].shape[0])
    lmtie_vocab = _lmtie_vocabulary(directory, config)
    if lmtie_vocab is not None:
        dictionary, tokenizer, blob = lmtie_vocab
    else:
        dictionary, add_pad = _hf_dictionary(directory, config, vocab)
        if add_pad:
            _append_pad_row(state, [converter.embed_key, "lm_head.weight"])
        has_json = (directory / "tokenizer.json").is_file()
        tokenizer = {"name": "hf"} if has_json else {}
        blob = (directory / "tokenizer.json").read_bytes() if has_json else None
    if len(dictionary) != state[converter.embed_key].shape[0]:
        raise UserError(f"{directory}: the vocabulary ({len(dictionary)} symbols) and the embedding "
                        f"({vocab} rows) disagree")
    try:
        fields, lmtie_state = converter.from_hf(config, state)
    except UserError as e:
        raise UserError(f"{directory}: {e}")
    family = get_family(converter.family)
    try:
        cfg = family.config_class(**fields, vocab_size=len(dictionary), padding_idx=dictionary.pad(),
                                  share_decoder_input_output_embed=tied)
    except UserError as e:
        raise UserError(f"{directory}/config.json: no lmtie {family.name} model has this shape ({e})")
    saved = config.get("lmtie_config") if isinstance(config.get("lmtie_config"), dict) else {}
    run_config = {"model_family": family.name, "model": to_dict(cfg),
                  **({"data": saved["data"]} if isinstance(saved.get("data"), dict) else {})}
    return Checkpoint(model_state=lmtie_state, config=run_config, dictionary=dictionary, tokenizer=tokenizer,
                      tokenizer_model=blob, path=directory)
