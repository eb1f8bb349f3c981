"""Raw text or a Hugging Face dataset -> ``dict.txt`` + mmap ``{split}.bin/.idx`` + ``manifest.json``.

Everything is built in a hidden directory beside ``--destdir`` and renamed into place at
the end, so a failed or interrupted run leaves no half-written split and never damages an
existing destdir. A destdir that already holds the same corpus (same fingerprint) is reused.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from lmtie.config import field, to_dict, validate_ranges
from lmtie.data.binarize import SplitStats, TokenizerSpec, binarize_file, count_symbols, train_counts
from lmtie.data.dictionary import Dictionary
from lmtie.data.indexed_dataset import best_dtype
from lmtie.data.manifest import FORMAT, MANIFEST, load_manifest, write_manifest
from lmtie.data.sources import check_input_file, decompress_if_needed, export_hf_dataset, sha256_file
from lmtie.data.tokenizers import TOKENIZERS, Tokenizer, tokenizer_class
from lmtie.errors import UserError
from lmtie.io import is_disk_full
from lmtie.lock import DirLock, acquire

SPLITS = ("train", "valid", "test")
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "data" / "shakespeare"
DEFAULT_DESTDIR = Path("data-bin") / "shakespeare"
DEFAULT_SPM_VOCAB = 4096


@dataclass
class PreprocessConfig:
    """Options of ``lmtie-preprocess``; names follow ``fairseq-preprocess`` where one exists."""

    only_source: bool = field(True, "language-model data has only a source side (fairseq's flag; on unless "
                                    "--source-lang/--target-lang give a translation layout)")
    source_lang: Optional[str] = field(None, "source language: read PREF.SRC beside PREF.TGT and write fairseq's "
                                             "translation layout (dict.SRC.txt, SPLIT.SRC-TGT.SRC.bin/.idx)",
                                       aliases=("-s",))
    target_lang: Optional[str] = field(None, "target language (with --source-lang)", aliases=("-t",))
    joined_dictionary: bool = field(False, "one dictionary (and one SentencePiece model) for both languages, "
                                           "as --share-all-embeddings needs")
    tgtdict: Optional[str] = field(None, "reuse this dict.txt for the target side")
    thresholdtgt: int = field(0, "target side: drop words seen fewer times than this in train", min=0)
    nwordstgt: int = field(-1, "target side: keep at most this many symbols, specials included", min=-1)
    trainpref: Optional[str] = field(None, "train text file (.xz/.gz/.bz2 are unpacked); none of "
                                           "--trainpref/--dataset: use the embedded Shakespeare corpus")
    validpref: Optional[str] = field(None, "valid text file")
    testpref: Optional[str] = field(None, "test text file")
    destdir: Optional[str] = field(None, "output directory (default data-bin, or data-bin/shakespeare "
                                         "for the embedded corpus)")
    workers: int = field(1, "worker processes; each binarises one byte range of a file", min=1)
    tokenizer: Optional[str] = field(None, f"one of {', '.join(TOKENIZERS)}; default space (words), or spm "
                                           "(SentencePiece) for the embedded corpus")
    thresholdsrc: int = field(0, "drop words seen fewer times than this in train (space/char)", min=0)
    nwordssrc: int = field(-1, "keep at most this many symbols, specials included (space/char)", min=-1)
    padding_factor: int = field(8, "pad the dictionary length to a multiple of this", min=1)
    srcdict: Optional[str] = field(None, "reuse this dict.txt instead of building one")
    spm_vocab_size: int = field(DEFAULT_SPM_VOCAB, "SentencePiece vocabulary size to train", min=1)
    spm_model_type: Literal["bpe", "unigram"] = field("bpe", "SentencePiece model type to train")
    spm_model: Optional[str] = field(None, "reuse this SentencePiece .model instead of training one")
    spm_sample_sentences: int = field(1_000_000, "train SentencePiece on at most this many sampled lines", min=1)
    spm_character_coverage: float = field(0.9995, "share of characters SentencePiece covers; the rest fall "
                                                  "back to bytes, so text still round-trips", gt=0, max=1)
    dataset: Optional[str] = field(None, "Hugging Face dataset name or builder (text, json, parquet, csv)")
    dataset_config: Optional[str] = field(None, "Hugging Face dataset configuration name")
    dataset_files: Optional[str] = field(None, "data_files for --dataset: PATH (train) or SPLIT=PATH,SPLIT=PATH")
    text_column: str = field("text", "column of --dataset holding the text")
    valid_fraction: float = field(0.0, "carve this share of train off as valid when --dataset has none", min=0, lt=1)
    test_fraction: float = field(0.0, "carve this share of train off as test when --dataset has none", min=0, lt=1)
    seed: int = field(1, "seed for carving splits and for SentencePiece sampling", min=0, max=2**32 - 1)
    utf8_errors: Literal["strict", "replace"] = field(
        "strict", "invalid UTF-8 input: strict (default) fails naming the file and byte offset; "
                  "replace substitutes U+FFFD and counts replacements in the manifest (utf8_replacements)")
    overwrite: bool = field(False, "replace a --destdir that holds a different corpus")

    def __post_init__(self) -> None:
        validate_ranges(self)


def uses_default_corpus(cfg: PreprocessConfig) -> bool:
    return not (cfg.trainpref or cfg.validpref or cfg.testpref or cfg.dataset)


def resolved(cfg: PreprocessConfig) -> PreprocessConfig:
    """Fill the defaults that depend on the input: the embedded corpus gets spm-4096."""
    if not cfg.only_source and not cfg.source_lang:
        raise UserError("--no-only-source: a translation layout needs --source-lang and --target-lang")
    if cfg.workers < 1:
        raise UserError(f"--workers {cfg.workers}: must be at least 1")
    values = dict(vars(cfg))
    if uses_default_corpus(cfg):
        values.update(trainpref=str(DEFAULT_CORPUS / "train.txt.xz"), validpref=str(DEFAULT_CORPUS / "valid.txt.xz"),
                      testpref=str(DEFAULT_CORPUS / "test.txt.xz"), tokenizer=cfg.tokenizer or "spm",
                      destdir=cfg.destdir or str(DEFAULT_DESTDIR))
        if not DEFAULT_CORPUS.is_dir():
            raise UserError(f"embedded corpus {DEFAULT_CORPUS} not found (it ships with a clone of lmtie); "
                            "pass --trainpref/--validpref/--testpref or --dataset")
    values["tokenizer"] = values["tokenizer"] or "space"
    values["destdir"] = values["destdir"] or "data-bin"
    return PreprocessConfig(**values)


def preprocess(cfg: PreprocessConfig, wait_for_lock: bool = False) -> Path:
    """Build (or reuse) the data-bin described by ``cfg``; return its directory.

    One process at a time per destdir (a lock beside it): another one is refused, naming its
    pid, or with ``wait_for_lock`` waited for (then its result is usually reused).
    """
    cfg = resolved(cfg)
    destdir = Path(cfg.destdir)
    _check_options(cfg)
    destdir.parent.mkdir(parents=True, exist_ok=True)
    with _lock(destdir, wait_for_lock):
        try:
            return _build_and_install(cfg, destdir)
        except OSError as e:
            if not is_disk_full(e):
                raise
            kept = f"the existing {destdir} is untouched" if destdir.exists() else f"no {destdir} was made"
            raise UserError(f"{destdir.parent}: no space left on device while building --destdir {destdir} "
                            f"({e.filename or e.strerror}); nothing half-written is left and {kept}; free some "
                            "space or choose another --destdir") from None


def _build_and_install(cfg: PreprocessConfig, destdir: Path) -> Path:
    for stale in destdir.parent.glob(f".{glob.escape(destdir.name)}.tmp-*"):  # of killed runs: we hold the lock
        shutil.rmtree(stale, ignore_errors=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{destdir.name}.tmp-", dir=destdir.parent))
    try:
        inputs = _gather_inputs(cfg, workdir / "scratch")
        fingerprint = _fingerprint(cfg, inputs)
        if _already_done(destdir, fingerprint, cfg.overwrite):
            return destdir
        _build(cfg, inputs, fingerprint, workdir)
        shutil.rmtree(workdir / "scratch")
        _make_readable(workdir)
        _install(workdir, destdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return destdir


def _lock(destdir: Path, wait: bool) -> DirLock:
    """``.DESTNAME.lock`` beside ``destdir`` (inside it, the lock would be renamed away with it)."""
    try:
        return acquire(destdir.parent / f".{destdir.name}.lock", f"--destdir {destdir}",
                       "wait for it to finish or choose another --destdir", wait=wait)
    except OSError as e:
        raise UserError(f"--destdir {destdir}: cannot write beside it in {destdir.parent} ({e.strerror}); "
                        "choose a writable place") from None


def _check_options(cfg: PreprocessConfig) -> None:
    tok = tokenizer_class(cfg.tokenizer)
    if cfg.source_lang or cfg.target_lang:
        check_pair_options(cfg, tok)
    if cfg.dataset and (cfg.trainpref or cfg.validpref or cfg.testpref):
        raise UserError("--dataset and --trainpref/--validpref/--testpref exclude each other; pick one input")
    if cfg.srcdict and tok.fixed_vocabulary:
        raise UserError(f"--srcdict does not apply to --tokenizer {tok.name} (its vocabulary is fixed); drop it")
    if cfg.spm_model and not tok.model_file:
        with_model = " or ".join(name for name, t in TOKENIZERS.items() if t.model_file)
        raise UserError(f"--spm-model needs --tokenizer {with_model}")
    reused = cfg.spm_model if tok.model_file else cfg.srcdict  # a model tokeniser needs its model, not a dict
    if not (tok.fixed_vocabulary or reused or cfg.trainpref or cfg.dataset):
        raise UserError(f"--tokenizer {cfg.tokenizer} learns its vocabulary from --trainpref; "
                        "pass --trainpref, or reuse one with --srcdict / --spm-model")
    for flag, v in (("--valid-fraction", cfg.valid_fraction), ("--test-fraction", cfg.test_fraction)):
        if not 0.0 <= v < 1.0:
            raise UserError(f"{flag} {v}: must be in [0, 1)")


@dataclass
class Input:
    """One split's text: the file as given (hashed) and the plain file that is read."""

    split: str
    flag: str
    given: Path
    plain: Path | None = None
    sha256: str = ""
    lang: str | None = None  # the language of a translation layout's side

    @property
    def key(self) -> str:
        return self.split if self.lang is None else f"{self.split}.{self.lang}"


def _gather_inputs(cfg: PreprocessConfig, scratch: Path) -> list[Input]:
    scratch.mkdir()
    if cfg.dataset:
        files = export_hf_dataset(cfg.dataset, cfg.dataset_config, cfg.dataset_files, cfg.text_column,
                                  cfg.valid_fraction, cfg.test_fraction, cfg.seed, scratch)
        inputs = [Input(s, f"--dataset {cfg.dataset} [{s}]", check_input_file(files[s], f"--dataset {cfg.dataset} [{s}]"))
                  for s in SPLITS if s in files]
    else:
        prefs = {"train": cfg.trainpref, "valid": cfg.validpref, "test": cfg.testpref}
        if cfg.source_lang:
            inputs = [Input(s, f"--{s}pref", pair_file(p, lang, f"--{s}pref", cfg), lang=lang)
                      for s, p in prefs.items() if p for lang in (cfg.source_lang, cfg.target_lang)]
        else:
            inputs = [Input(s, f"--{s}pref", check_input_file(p, f"--{s}pref")) for s, p in prefs.items() if p]
    for inp in inputs:
        inp.sha256 = sha256_file(inp.given)
    return inputs


def _fingerprint(cfg: PreprocessConfig, inputs: list[Input]) -> str:
    """What decides the output: input contents, reused files, and the options that shape ids."""
    keys = ("tokenizer", "thresholdsrc", "nwordssrc", "padding_factor", "spm_vocab_size", "spm_model_type",
            "spm_sample_sentences", "spm_character_coverage", "seed", "utf8_errors", "text_column")
    if cfg.source_lang:
        keys += ("source_lang", "target_lang", "joined_dictionary", "thresholdtgt", "nwordstgt")
    doc = {k: getattr(cfg, k) for k in keys}
    doc["inputs"] = {i.key: i.sha256 for i in inputs}
    for k in ("srcdict", "spm_model") + (("tgtdict",) if cfg.source_lang else ()):
        path = getattr(cfg, k)
        doc[k] = sha256_file(check_input_file(path, "--" + k.replace("_", "-"))) if path else None
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _already_done(destdir: Path, fingerprint: str, overwrite: bool) -> bool:
    """True when ``destdir`` holds this very corpus; refuse a different one unless ``overwrite``."""
    if not destdir.exists() or (destdir.is_dir() and not any(destdir.iterdir())):
        return False
    if not destdir.is_dir():
        raise UserError(f"--destdir {destdir}: is a file; choose a directory")
    same = (destdir / MANIFEST).is_file() and _manifest_fingerprint(destdir) == fingerprint
    if same and not overwrite:
        return True
    if not ((destdir / MANIFEST).is_file() or (destdir / "dict.txt").is_file()):
        raise UserError(f"--destdir {destdir}: holds files that are not a data-bin (no {MANIFEST} or dict.txt); "
                        "choose another --destdir (--overwrite only replaces a data-bin)")
    if not overwrite:
        raise UserError(f"--destdir {destdir}: already holds a different corpus; pass --overwrite to "
                        "replace it or choose another --destdir")
    return False


def _manifest_fingerprint(destdir: Path) -> str | None:
    try:
        return load_manifest(destdir).get("fingerprint")
    except UserError:
        return None


def _make_readable(workdir: Path) -> None:
    """Temporary files are created private (0600/0700); the result gets the usual umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(workdir, 0o777 & ~umask)
    for f in workdir.iterdir():
        os.chmod(f, 0o666 & ~umask)


def _install(workdir: Path, destdir: Path) -> None:
    """Swap the finished directory into place; the old one is removed only after the swap."""
    if not destdir.exists():
        os.replace(workdir, destdir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{destdir.name}.old-", dir=destdir.parent))
    os.replace(destdir, old / destdir.name)
    os.replace(workdir, destdir)
    shutil.rmtree(old)


def _build(cfg: PreprocessConfig, inputs: list[Input], fingerprint: str, workdir: Path) -> None:
    for inp in inputs:
        inp.plain = decompress_if_needed(inp.given, workdir / "scratch", inp.flag)
    if cfg.source_lang:
        return build_pairs(cfg, inputs, fingerprint, workdir)
    train = next((i for i in inputs if i.split == "train"), None)
    dictionary, spec = _vocabulary(cfg, train, workdir)
    dtype = best_dtype(len(dictionary))
    stats = {inp.split: binarize_file(inp.plain, workdir / inp.split, spec, dtype, cfg.workers,
                                      cfg.utf8_errors, inp.flag) for inp in inputs}
    if spec.dict_path is None:  # the tokeniser made the dictionary: its counts are its ids in train
        if train is not None:
            dictionary.count = [int(c) for c in train_counts(workdir / "train.bin", dtype, len(dictionary))]
        dictionary.save(workdir / "dict.txt")
    _check_nonempty(cfg, inputs, stats, dictionary)
    write_manifest(workdir, _manifest(cfg, inputs, stats, dictionary, dtype, fingerprint, workdir))


def _check_nonempty(cfg: PreprocessConfig, inputs: list[Input], stats: dict, dictionary: Dictionary) -> None:
    for inp in inputs:
        if stats[inp.split].tokens <= stats[inp.split].lines:
            raise UserError(f"{inp.flag} {inp.given}: holds no text (only empty lines); give a non-empty corpus")


@dataclass(frozen=True)
class Side:
    """Where one vocabulary goes and what shapes it: the language model's only one, or a side of a
    translation layout (``dict.de.txt``; ``--tgtdict``, ``--thresholdtgt`` ...)."""

    dict_file: str = "dict.txt"
    model_file: str | None = None  # the tokeniser's model file name in the data-bin (default: its own)
    reuse: str | None = None  # a dict.txt to reuse (--srcdict / --tgtdict)
    reuse_flag: str = "--srcdict"
    threshold: int = 0
    nwords: int = -1


def lm_side(cfg: PreprocessConfig) -> Side:
    return Side(reuse=cfg.srcdict, threshold=cfg.thresholdsrc, nwords=cfg.nwordssrc)


def _vocabulary(cfg: PreprocessConfig, train: Input | None, workdir: Path,
                side: Side | None = None) -> tuple[Dictionary, TokenizerSpec]:
    """The dictionary and the recipe workers use to rebuild the tokeniser. A dictionary given or
    counted is saved now, for the workers; one the tokeniser makes is saved after binarising."""
    side = side or lm_side(cfg)
    tok = tokenizer_class(cfg.tokenizer)
    d = _load_srcdict(side.reuse, side.reuse_flag) if side.reuse else None
    model = _tokenizer_model(cfg, tok, train, workdir, side.model_file or tok.model_file)
    if d is None and not (tok.fixed_vocabulary or model):
        d = _count_dictionary(cfg, tok, train, side)
    dictionary = tok.build(d, model).dictionary  # built here too, so a bad model fails before any worker
    if d is None:
        return dictionary, TokenizerSpec(tok.name, None, model)
    d.save(workdir / side.dict_file)
    return d, TokenizerSpec(tok.name, str(workdir / side.dict_file), model)


def _tokenizer_model(cfg: PreprocessConfig, tok: type[Tokenizer], train: Input | None, workdir: Path,
                     name: str | None) -> str | None:
    """The tokeniser's model file (if it has one), copied from --spm-model or trained on train."""
    if not tok.model_file:
        return None
    model = workdir / name
    if cfg.spm_model:
        shutil.copyfile(check_input_file(cfg.spm_model, "--spm-model"), model)
    else:
        tok.train_model(cfg, train, model)
    return str(model)


def _load_srcdict(path: str, flag: str = "--srcdict") -> Dictionary:
    try:
        d = Dictionary.load(check_input_file(path, flag))
    except UserError as e:
        raise UserError(f"{flag} {e}" if str(e).startswith(str(path)) else str(e))
    if len(d) <= d.nspecial:
        raise UserError(f"{flag} {path}: holds no symbols; pass a dict.txt with one 'symbol count' per line")
    return d


def _count_dictionary(cfg: PreprocessConfig, tok: type[Tokenizer], train: Input, side: Side) -> Dictionary:
    counts = count_symbols(train.plain, tok.symbols, tok.line_cut, cfg.workers, cfg.utf8_errors, train.flag)
    counts = {tok.dict_symbol(sym): n for sym, n in counts.items()}
    if not counts:
        raise UserError(f"{train.flag} {train.given}: holds no text (only empty lines); give a non-empty corpus")
    d = Dictionary()
    for sym, n in sorted(counts.items()):
        d.add_symbol(sym, n=n)
    d.finalize(side.threshold, side.nwords, cfg.padding_factor)
    return d


def _manifest(cfg: PreprocessConfig, inputs: list[Input], stats: dict[str, SplitStats], dictionary: Dictionary,
              dtype, fingerprint: str, workdir: Path) -> dict:
    model = tokenizer_class(cfg.tokenizer).model_file
    splits = {inp.split: {**vars(stats[inp.split]), "input": str(inp.given), "input_sha256": inp.sha256}
              for inp in inputs}
    return {
        "format": FORMAT, "version": 1, "source": "lmtie", "tokenizer": cfg.tokenizer,
        "tokenizer_model": model, "vocab_size": len(dictionary),
        "dtype": dtype.name, "splits": splits, "fingerprint": fingerprint,
        "hashes": {"dict": sha256_file(workdir / "dict.txt"), "inputs": {i.split: i.sha256 for i in inputs},
                   "tokenizer_model": sha256_file(workdir / model) if model else None},
        "config": to_dict(cfg),
    }


def ensure_default_data_bin(destdir: str | Path | None = None) -> Path:
    """Preprocess the embedded Shakespeare corpus (SentencePiece BPE, 4096) once; reuse it after."""
    return preprocess(PreprocessConfig(destdir=str(destdir) if destdir is not None else None), wait_for_lock=True)


from lmtie.data.pairs import build_pairs, check_pair_options, pair_file  # noqa: E402  (uses Side, _vocabulary)
