"""lmtie-preprocess --source-lang/--target-lang: fairseq's translation layout, byte for byte, and its refusals."""

import json
import struct
from collections import Counter

import numpy as np
import pytest

from lmtie.cli.preprocess import main
from lmtie.data import Dictionary, MMapIndexedDataset, load_manifest
from lmtie.data.preprocess import PreprocessConfig, preprocess

DE = "der hund läuft\ndie katze\n\nein rotes haus\nder hund\n"
EN = "the dog runs\nthe cat\nnothing\na red house\nthe dog\n"  # line 3 pairs with an empty German line


def corpus(tmp_path, de=DE, en=EN, name="train"):
    (tmp_path / f"{name}.de").write_text(de, encoding="utf-8")
    (tmp_path / f"{name}.en").write_text(en, encoding="utf-8")
    return str(tmp_path / name)


def fairseq_dict_text(*texts: str) -> str:
    """dict.txt as fairseq's Dictionary.finalize writes it, computed independently: counts descending,
    ties in alphabetical order, padded with madeupwordNNNN to a multiple of 8 (4 specials counted)."""
    counts = Counter(w for t in texts for line in t.splitlines() for w in line.split())
    order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    lines = [f"{w} {c}" for w, c in order]
    lines += [f"madeupword{i:04d} 0" for i in range(-(4 + len(order)) % 8)]
    return "".join(line + "\n" for line in lines)


def kept(text: str, other: str) -> list[str]:
    return [a for a, b in zip(text.splitlines(), other.splitlines()) if a.strip() and b.strip()]


def check_side(out, prefix, lines, dict_text):
    """``prefix``.bin/.idx hold ``lines`` in fairseq's mmap layout: header, sizes, pointers, uint16 ids + </s>."""
    d = Dictionary()
    for w in dict_text.splitlines():
        d.add_symbol(w.rsplit(" ", 1)[0])
    ids = [[d.index(w) for w in line.split()] + [2] for line in lines]
    assert (out / f"{prefix}.bin").read_bytes() == np.array(sum(ids, []), dtype=np.uint16).tobytes()
    sizes = [len(x) for x in ids]
    pointers = np.cumsum([0] + sizes[:-1]) * 2
    want = (b"MMIDIDX\x00\x00" + struct.pack("<QBQ", 1, 8, len(lines)) + np.array(sizes, np.int32).tobytes()
            + np.array(pointers, np.int64).tobytes())
    assert (out / f"{prefix}.idx").read_bytes() == want


def test_separate_dictionaries_give_fairseqs_files(tmp_path):
    out = preprocess(PreprocessConfig(source_lang="de", target_lang="en", trainpref=corpus(tmp_path),
                                      validpref=corpus(tmp_path, "der hund\n", "the dog\n", "valid"),
                                      destdir=str(tmp_path / "bin")))
    assert sorted(p.name for p in out.iterdir()) == [
        "dict.de.txt", "dict.en.txt", "manifest.json", *(f"{s}.de-en.{lang}.{ext}" for s in ("train", "valid")
                                                         for lang in ("de", "en") for ext in ("bin", "idx"))]
    de, en = kept(DE, EN), kept(EN, DE)
    assert (out / "dict.de.txt").read_text() == fairseq_dict_text("\n".join(de))
    assert (out / "dict.en.txt").read_text() == fairseq_dict_text("\n".join(en))
    check_side(out, "train.de-en.de", de, (out / "dict.de.txt").read_text())
    check_side(out, "train.de-en.en", en, (out / "dict.en.txt").read_text())
    check_side(out, "valid.de-en.en", ["the dog"], (out / "dict.en.txt").read_text())
    m = load_manifest(out)
    assert m["translation"]["pairs"] == {"train": {"pairs": 4, "dropped_empty_pairs": 1},
                                         "valid": {"pairs": 1, "dropped_empty_pairs": 0}}
    assert m["vocab_size"] == len(Dictionary.load(out / "dict.en.txt"))  # the top-level keys describe the target


def test_joined_dictionary_counts_both_sides_and_is_written_twice(tmp_path):
    out = preprocess(PreprocessConfig(source_lang="de", target_lang="en", trainpref=corpus(tmp_path),
                                      joined_dictionary=True, destdir=str(tmp_path / "bin")))
    want = fairseq_dict_text("\n".join(kept(DE, EN)), "\n".join(kept(EN, DE)))
    assert (out / "dict.de.txt").read_text() == (out / "dict.en.txt").read_text() == want
    check_side(out, "train.de-en.de", kept(DE, EN), want)
    assert load_manifest(out)["translation"]["joined_dictionary"] is True


@pytest.mark.parametrize("joined", [True, False])
def test_sentencepiece_joint_or_separate_models(tmp_path, joined):
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda".split()
    de = "".join(" ".join(words[(i + j) % 11] for j in range(5)) + "\n" for i in range(60))
    en = "".join(" ".join(words[(i * 3 + j) % 11].upper() for j in range(4)) + "\n" for i in range(60))
    out = preprocess(PreprocessConfig(source_lang="de", target_lang="en", trainpref=corpus(tmp_path, de, en),
                                      tokenizer="spm", spm_vocab_size=300, joined_dictionary=joined,
                                      destdir=str(tmp_path / "bin")))
    models = sorted(p.name for p in out.glob("*.model"))
    assert models == (["spm.model"] if joined else ["spm.de.model", "spm.en.model"])
    langs = load_manifest(out)["translation"]["langs"]
    assert langs["en"]["tokenizer_model"] == ("spm.model" if joined else "spm.en.model")
    for lang, text in (("de", de), ("en", en)):
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(out / langs[lang]["tokenizer_model"]))
        ds = MMapIndexedDataset(out / f"train.de-en.{lang}")
        d = Dictionary.load(out / f"dict.{lang}.txt")
        assert len(ds) == 60 and sp.decode([sp.piece_to_id(d[i]) for i in ds[7].tolist()[:-1]]) == text.splitlines()[7]


def run_cli(capsys, *args):
    code = main(list(args))
    return code, capsys.readouterr().err.strip().splitlines()


def test_misaligned_files_are_refused_naming_both_counts(tmp_path, capsys):
    pref = corpus(tmp_path, DE, EN + "one more\n")
    code, err = run_cli(capsys, "-s", "de", "-t", "en", "--trainpref", pref, "--destdir", str(tmp_path / "bin"))
    assert code == 2 and len(err) == 1
    assert f"{pref}.de has 5 lines but {pref}.en has 6" in err[0] and err[0].startswith("lmtie-preprocess: error:")
    assert not (tmp_path / "bin").exists()


def test_unknown_language_suffix_names_the_files_found(tmp_path, capsys):
    pref = corpus(tmp_path)
    code, err = run_cli(capsys, "-s", "de", "-t", "fr", "--trainpref", pref, "--destdir", str(tmp_path / "bin"))
    assert code == 2 and len(err) == 1
    assert f"no {pref}.fr" in err[0] and "found suffixes de, en" in err[0] and "--target-lang fr" in err[0]


def test_one_language_alone_is_refused(tmp_path, capsys):
    code, err = run_cli(capsys, "-s", "de", "--trainpref", corpus(tmp_path), "--destdir", str(tmp_path / "bin"))
    assert code == 2 and len(err) == 1 and "--source-lang and --target-lang go together" in err[0]


def test_same_data_is_reused_and_a_new_pair_fingerprinted(tmp_path):
    cfg = dict(source_lang="de", target_lang="en", trainpref=corpus(tmp_path), destdir=str(tmp_path / "bin"))
    out = preprocess(PreprocessConfig(**cfg))
    stamp = (out / "manifest.json").stat().st_mtime_ns
    assert preprocess(PreprocessConfig(**cfg)) == out and (out / "manifest.json").stat().st_mtime_ns == stamp
    m = json.loads((out / "manifest.json").read_text())
    assert set(m["hashes"]["inputs"]) == {"train.de", "train.en"}
