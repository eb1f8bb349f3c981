"""fairseq's translation layout: ``PREF.SRC`` / ``PREF.TGT`` line-aligned text -> ``dict.SRC.txt``,
``dict.TGT.txt`` and ``SPLIT.SRC-TGT.LANG.bin/.idx`` (``fairseq_cli/preprocess.py``'s names), so a
data-bin made here trains in fairseq and one made by fairseq trains here.

Each side is binarised by the language-model path (:func:`binarize_file`, any tokeniser,
``--workers``); what is added is the pairing: both files must have the same number of lines
(refused otherwise, naming both counts), and a pair with an empty side is dropped from both files,
and counted, before binarising, so line i of one side is still line i of the other.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from lmtie.data.binarize import SplitStats, binarize_file, train_counts
from lmtie.data.dictionary import Dictionary
from lmtie.data.indexed_dataset import best_dtype
from lmtie.data.manifest import FORMAT, write_manifest
from lmtie.data.preprocess import Input, PreprocessConfig, Side, _vocabulary
from lmtie.data.sources import check_input_file, sha256_file
from lmtie.data.tokenizers import Tokenizer, tokenizer_class
from lmtie.config import to_dict
from lmtie.errors import UserError


def pair_prefix(split: str, src: str, tgt: str) -> str:
    """``train.de-en``: the prefix of a split's two sides, ``train.de-en.de`` and ``train.de-en.en``."""
    return f"{split}.{src}-{tgt}"


def check_pair_options(cfg: PreprocessConfig, tok: type[Tokenizer]) -> None:
    if not (cfg.source_lang and cfg.target_lang):
        raise UserError("--source-lang and --target-lang go together: pass both (or neither, for language-model data)")
    if cfg.source_lang == cfg.target_lang:
        raise UserError(f"--source-lang and --target-lang are both {cfg.source_lang!r}; the two sides need two names")
    for flag, lang in (("--source-lang", cfg.source_lang), ("--target-lang", cfg.target_lang)):
        if not lang.replace("_", "").isalnum():
            raise UserError(f"{flag} {lang!r}: use a language code of letters and digits, such as de or en_US")
    if cfg.dataset:
        raise UserError("--dataset gives one text column; a translation layout reads --trainpref PREF.SRC/PREF.TGT")
    if cfg.joined_dictionary and cfg.tgtdict:
        raise UserError("--joined-dictionary uses one dictionary for both sides: --srcdict (if given); drop --tgtdict")
    if cfg.tgtdict and tok.fixed_vocabulary:
        raise UserError(f"--tgtdict does not apply to --tokenizer {tok.name} (its vocabulary is fixed); drop it")


def pair_file(pref: str, lang: str, flag: str, cfg: PreprocessConfig) -> Path:
    """``PREF.LANG``, or an error that names the files that do exist for ``PREF``."""
    path = Path(f"{pref}.{lang}")
    if not path.exists():
        found = sorted(p.suffix[1:] for p in Path(pref).parent.glob(Path(pref).name + ".*") if p.is_file())
        have = f"found suffixes {', '.join(found)}" if found else f"no {pref}.* file exists"
        raise UserError(f"{flag} {pref}: no {path} for language {lang!r} ({have}); the files must be PREF.SRC and "
                        f"PREF.TGT: check --source-lang {cfg.source_lang} / --target-lang {cfg.target_lang}")
    return check_input_file(path, flag)


@dataclasses.dataclass
class PairStats:
    pairs: int = 0
    dropped_empty_pairs: int = 0


def _count_lines(path: Path) -> int:
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            n, last = n + block.count(b"\n"), block[-1:]
    return n + (last != b"\n")


def align(src: Input, tgt: Input, scratch: Path) -> PairStats:
    """Check the two sides have as many lines; drop the pairs with an empty (whitespace-only) side
    from both, writing the kept pairs to ``scratch`` (``src.plain``/``tgt.plain`` then point there)."""
    n_src, n_tgt = _count_lines(src.plain), _count_lines(tgt.plain)
    if n_src != n_tgt:
        raise UserError(f"{src.flag}: {src.given} has {n_src} lines but {tgt.given} has {n_tgt}; the two sides of a "
                        "translation corpus must be line-aligned (line i of one translates line i of the other)")
    stats = PairStats()
    outs = [scratch / f"{src.split}.kept.{src.lang}", scratch / f"{tgt.split}.kept.{tgt.lang}"]
    with open(src.plain, "rb") as fs, open(tgt.plain, "rb") as ft, open(outs[0], "wb") as os_, \
            open(outs[1], "wb") as ot:
        for a, b in zip(fs, ft):
            if not a.strip() or not b.strip():
                stats.dropped_empty_pairs += 1
                continue
            stats.pairs += 1
            os_.write(a if a.endswith(b"\n") else a + b"\n")
            ot.write(b if b.endswith(b"\n") else b + b"\n")
    if stats.pairs == 0:
        raise UserError(f"{src.flag}: {src.given} and {tgt.given} hold no pair with text on both sides; give a "
                        "non-empty parallel corpus")
    src.plain, tgt.plain = outs
    return stats


def _sides(cfg: PreprocessConfig, tok: type[Tokenizer]) -> dict[str, Side]:
    """The Side of each language; with --joined-dictionary both are the source's (one dict, one model)."""
    s, t = cfg.source_lang, cfg.target_lang
    model = tok.model_file
    if cfg.joined_dictionary:
        joint = Side(f"dict.{s}.txt", model, cfg.srcdict, "--srcdict", cfg.thresholdsrc, cfg.nwordssrc)
        return {s: joint, t: joint}
    per_lang = lambda lang: None if model is None else f"{Path(model).stem}.{lang}{Path(model).suffix}"  # noqa: E731
    return {s: Side(f"dict.{s}.txt", per_lang(s), cfg.srcdict, "--srcdict", cfg.thresholdsrc, cfg.nwordssrc),
            t: Side(f"dict.{t}.txt", per_lang(t), cfg.tgtdict, "--tgtdict", cfg.thresholdtgt, cfg.nwordstgt)}


def _joint_train(train: list[Input], scratch: Path) -> Input:
    """Both train sides in one file: a joined dictionary (or model) is learnt from their union."""
    out = scratch / "train.joined"
    with open(out, "wb") as f:
        for inp in train:
            with open(inp.plain, "rb") as part:
                shutil.copyfileobj(part, f, 1 << 20)
    return Input("train", train[0].flag, Path(" + ".join(str(i.given) for i in train)), plain=out)


def build_pairs(cfg: PreprocessConfig, inputs: list[Input], fingerprint: str, workdir: Path) -> None:
    """Write the translation layout of ``inputs`` (two per split, decompressed) into ``workdir``."""
    s, t = cfg.source_lang, cfg.target_lang
    scratch = workdir / "scratch"
    by_split: dict[str, dict[str, Input]] = {}
    for inp in inputs:
        by_split.setdefault(inp.split, {})[inp.lang] = inp
    pairs = {split: align(sides[s], sides[t], scratch) for split, sides in by_split.items()}
    tok = tokenizer_class(cfg.tokenizer)
    sides = _sides(cfg, tok)
    train = by_split.get("train", {})
    vocab: dict[str, tuple] = {}
    if cfg.joined_dictionary:
        joint = _vocabulary(cfg, _joint_train([train[s], train[t]], scratch) if train else None, workdir, sides[s])
        vocab = {s: joint, t: joint}
    else:
        vocab = {lang: _vocabulary(cfg, train.get(lang), workdir, sides[lang]) for lang in (s, t)}
    stats: dict[str, SplitStats] = {}
    for split, by_lang in by_split.items():
        for lang, inp in by_lang.items():
            d, spec = vocab[lang]
            prefix = f"{pair_prefix(split, s, t)}.{lang}"
            stats[prefix] = binarize_file(inp.plain, workdir / prefix, spec, best_dtype(len(d)), cfg.workers,
                                          cfg.utf8_errors, inp.flag)
    _save_dictionaries(cfg, vocab, sides, bool(train), workdir)
    write_manifest(workdir, _manifest(cfg, inputs, stats, pairs, vocab, sides, fingerprint, workdir))


def _save_dictionaries(cfg: PreprocessConfig, vocab: dict, sides: dict[str, Side], has_train: bool,
                       workdir: Path) -> None:
    """dict.SRC.txt and dict.TGT.txt. One the tokeniser made gets its ids' counts in train (both
    sides' for a joined one, as fairseq counts both files); a joined dictionary is written twice."""
    s, t = cfg.source_lang, cfg.target_lang
    for lang in (s, t):
        d, spec = vocab[lang]
        if spec.dict_path is not None or (cfg.joined_dictionary and lang == t):
            continue
        if has_train:
            langs = (s, t) if cfg.joined_dictionary else (lang,)
            bins = [workdir / f"{pair_prefix('train', s, t)}.{x}.bin" for x in langs]
            d.count = [int(c) for c in sum(train_counts(b, best_dtype(len(d)), len(d)) for b in bins)]
        d.save(workdir / sides[lang].dict_file)
    if cfg.joined_dictionary:
        shutil.copyfile(workdir / f"dict.{s}.txt", workdir / f"dict.{t}.txt")


def _manifest(cfg: PreprocessConfig, inputs: list[Input], stats: dict[str, SplitStats], pairs: dict[str, PairStats],
              vocab: dict, sides: dict[str, Side], fingerprint: str, workdir: Path) -> dict:
    """The language-model manifest's keys describe the target side (what generation decodes); the
    ``translation`` entry describes both."""
    s, t = cfg.source_lang, cfg.target_lang
    langs = {}
    for lang in (s, t):
        d, spec = vocab[lang]
        model = Path(spec.model_path).name if spec.model_path else None
        langs[lang] = {"dict": f"dict.{lang}.txt", "dict_sha256": sha256_file(workdir / f"dict.{lang}.txt"),
                       "vocab_size": len(d), "dtype": best_dtype(len(d)).name, "tokenizer_model": model,
                       "tokenizer_model_sha256": sha256_file(workdir / model) if model else None}
    by_key = {i.key: i for i in inputs}
    splits = {prefix: {**vars(st), "input": str(by_key[_key(prefix)].given),
                       "input_sha256": by_key[_key(prefix)].sha256} for prefix, st in stats.items()}
    target = langs[t]
    return {
        "format": FORMAT, "version": 1, "source": "lmtie", "tokenizer": cfg.tokenizer,
        "tokenizer_model": target["tokenizer_model"], "vocab_size": target["vocab_size"], "dtype": target["dtype"],
        "splits": splits, "fingerprint": fingerprint,
        "hashes": {"dict": target["dict_sha256"], "inputs": {i.key: i.sha256 for i in inputs},
                   "tokenizer_model": target["tokenizer_model_sha256"]},
        "translation": {"source_lang": s, "target_lang": t, "joined_dictionary": cfg.joined_dictionary,
                        "langs": langs, "pairs": {split: vars(p) for split, p in pairs.items()}},
        "config": to_dict(cfg),
    }


def _key(prefix: str) -> str:
    """``train.de-en.de`` -> the Input key ``train.de``."""
    split, _, lang = prefix.split(".")
    return f"{split}.{lang}"


def pair_dictionaries(data_bin: str | Path, src: str, tgt: str) -> tuple[Dictionary, Dictionary]:
    d = Path(data_bin)
    return Dictionary.load(d / f"dict.{src}.txt"), Dictionary.load(d / f"dict.{tgt}.txt")
