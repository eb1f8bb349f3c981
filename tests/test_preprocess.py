"""lmtie-preprocess end to end: dict.txt, .bin/.idx, the manifest, workers, reuse, datasets input."""

import hashlib
import json
import lzma

import numpy as np
import pytest

from lmtie.cli.preprocess import main
from lmtie.data import Dictionary, LanguageModelDataset, MMapIndexedDataset, load_manifest, load_tokenizer
from lmtie.data.preprocess import PreprocessConfig, preprocess

TRAIN = "b a c a\n\nc a a\n"       # a:4 c:2 b:1
VALID = "a z b\n"                 # z unseen -> <unk>


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def run(tmp_path, **kw):
    if "trainpref" not in kw:
        kw["trainpref"] = str(write(tmp_path, "train.txt", TRAIN))
    kw.setdefault("destdir", str(tmp_path / "bin"))
    return preprocess(PreprocessConfig(**kw))


def test_word_level_output_matches_fairseq(tmp_path):
    out = run(tmp_path, validpref=str(write(tmp_path, "valid.txt", VALID)))
    assert (out / "dict.txt").read_text() == "a 4\nc 2\nb 1\nmadeupword0000 0\n"
    train = MMapIndexedDataset(out / "train")
    assert [train[i].tolist() for i in range(3)] == [[6, 4, 5, 4, 2], [2], [5, 4, 4, 2]]
    assert train.dtype == np.uint16
    assert MMapIndexedDataset(out / "valid")[0].tolist() == [4, 3, 6, 2]
    assert sorted(p.name for p in out.iterdir()) == ["dict.txt", "manifest.json", "train.bin", "train.idx",
                                                     "valid.bin", "valid.idx"]


def test_manifest_contents(tmp_path):
    out = run(tmp_path, validpref=str(write(tmp_path, "valid.txt", VALID)))
    m = load_manifest(out)
    assert m["tokenizer"] == "space" and m["vocab_size"] == 8 and m["dtype"] == "uint16"
    assert m["splits"]["train"]["lines"] == 3 and m["splits"]["train"]["tokens"] == 10
    assert m["splits"]["train"]["bytes"] == len(TRAIN.encode()) and m["splits"]["valid"]["unk"] == 1
    assert m["hashes"]["inputs"] == {"train": sha(tmp_path / "train.txt"), "valid": sha(tmp_path / "valid.txt")}
    assert m["hashes"]["dict"] == sha(out / "dict.txt") and m["hashes"]["tokenizer_model"] is None
    assert json.loads((out / "manifest.json").read_text()) == m


def test_byte_counts_are_utf8_and_include_newlines(tmp_path):
    text = "héllo wörld\nno final newline"
    m = load_manifest(run(tmp_path, trainpref=str(write(tmp_path, "t.txt", text)), tokenizer="char"))
    assert m["splits"]["train"]["bytes"] == len(text.encode("utf-8")) + 1  # the last </s> stands for a newline
    assert m["splits"]["train"]["tokens"] == len(text) + 1


def test_two_workers_write_the_same_bytes_as_one(tmp_path):
    text = "".join(f"line {i} " + "w" * (i % 17) + "\n" for i in range(3000))
    a = run(tmp_path, trainpref=str(write(tmp_path, "t.txt", text)), destdir=str(tmp_path / "one"))
    b = run(tmp_path, trainpref=str(tmp_path / "t.txt"), destdir=str(tmp_path / "two"), workers=2)
    for name in ("dict.txt", "train.bin", "train.idx"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_threshold_nwords_and_srcdict(tmp_path):
    out = run(tmp_path, thresholdsrc=2, padding_factor=1)
    assert (out / "dict.txt").read_text() == "a 4\nc 2\n"
    out = run(tmp_path, nwordssrc=5, padding_factor=1, destdir=str(tmp_path / "n"))
    assert (out / "dict.txt").read_text() == "a 4\n"
    reuse = run(tmp_path, srcdict=str(out / "dict.txt"), destdir=str(tmp_path / "r"))
    assert MMapIndexedDataset(reuse / "train")[0].tolist() == [3, 4, 3, 4, 2]


def test_compressed_input_and_spm_model_reuse(tmp_path):
    text = "".join(f"the cat sat on mat number {i % 50}\n" for i in range(400))
    (tmp_path / "t.txt.xz").write_bytes(lzma.compress(text.encode()))
    first = run(tmp_path, trainpref=str(tmp_path / "t.txt.xz"), tokenizer="spm", spm_vocab_size=300)
    m = load_manifest(first)
    assert m["tokenizer_model"] == "spm.model" and m["hashes"]["tokenizer_model"] == sha(first / "spm.model")
    assert m["splits"]["train"]["bytes"] == len(text)
    again = run(tmp_path, trainpref=str(tmp_path / "t.txt.xz"), tokenizer="spm",
                spm_model=str(first / "spm.model"), destdir=str(tmp_path / "again"))
    for name in ("dict.txt", "train.bin", "train.idx", "spm.model"):
        assert (first / name).read_bytes() == (again / name).read_bytes()


def test_same_corpus_is_reused_and_overwrite_rebuilds(tmp_path):
    out = run(tmp_path)
    stamp = (out / "train.bin").stat().st_mtime_ns
    assert run(tmp_path) == out and (out / "train.bin").stat().st_mtime_ns == stamp
    run(tmp_path, trainpref=str(write(tmp_path, "other.txt", "x y\n")), overwrite=True)
    assert (out / "dict.txt").read_text().startswith("x 1\n")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_hf_json_dataset_with_carved_valid_split(tmp_path):
    rows = [{"text": f"row {i} says {'hello' if i % 2 else 'bye'}\n", "n": i} for i in range(100)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = run(tmp_path, trainpref=None, dataset="json", dataset_files=str(data), valid_fraction=0.2,
              tokenizer="char")
    m = load_manifest(out)
    assert m["splits"]["train"]["lines"] == 80 and m["splits"]["valid"]["lines"] == 20
    tok = load_tokenizer(out)
    valid = LanguageModelDataset(out, "valid", tokens_per_sample=100, sample_break_mode="eos")
    lines = {tok.decode(valid[i]["target"].tolist()) for i in range(len(valid))}
    assert len(lines) == 20 and lines <= {r["text"] for r in rows}


def test_cli_prints_the_splits(tmp_path, capsys):
    write(tmp_path, "train.txt", TRAIN)
    assert main(["--trainpref", str(tmp_path / "train.txt"), "--destdir", str(tmp_path / "bin"),
                 "--tokenizer", "char", "--workers", "2"]) == 0
    assert "train: 3 lines, 15 tokens, 15 bytes" in capsys.readouterr().out


def test_language_model_dataset_reads_preprocessed_split(tmp_path):
    out = run(tmp_path)
    ds = LanguageModelDataset(out, "train", tokens_per_sample=4)
    assert [ds[i]["target"].tolist() for i in range(len(ds))] == [[6, 4, 5, 4], [2, 2, 5, 4], [4, 2]]
    assert isinstance(ds.dictionary, Dictionary)


@pytest.mark.parametrize("mode", ["none", "complete", "complete_doc", "eos"])
def test_every_break_mode_covers_targets_in_order(tmp_path, mode):
    out = run(tmp_path)
    ds = LanguageModelDataset(out, "train", tokens_per_sample=3, sample_break_mode=mode)
    stream = np.concatenate([ds[i]["target"].numpy() for i in range(len(ds))]).tolist()
    full = [6, 4, 5, 4, 2, 2, 5, 4, 4, 2]
    assert stream == (full[:5] + full[6:] if mode == "complete_doc" else full)
    assert all(len(ds[i]["target"]) <= 3 for i in range(len(ds)))


def test_default_corpus_is_built_once_into_data_bin_shakespeare(tmp_path, monkeypatch):
    """The trainer's default job: no data arguments -> embedded corpus, spm BPE 4096, reused after."""
    from lmtie.data import ensure_default_data_bin

    monkeypatch.chdir(tmp_path)
    out = ensure_default_data_bin()
    assert out == tmp_path.joinpath("data-bin", "shakespeare").relative_to(tmp_path)
    m = load_manifest(out)
    assert m["tokenizer"] == "spm" and m["vocab_size"] == 4096 and m["config"]["spm_model_type"] == "bpe"
    assert {k: v["bytes"] for k, v in m["splits"].items()} == {"train": 4600399, "valid": 231095, "test": 225784}
    stamp = (out / "train.bin").stat().st_mtime_ns
    assert main([]) == 0 and (out / "train.bin").stat().st_mtime_ns == stamp
    tok = load_tokenizer(out)
    line = "To be, or not to be, that is the question:\n"
    assert tok.decode(tok.encode(line)) == line


def test_large_vocabulary_switches_to_int32(tmp_path):
    chars = [chr(c) for c in (*range(0x4E00, 0xA000), *range(0xAC00, 0xD7A4), *range(0x20000, 0x2A6E0))]
    text = "".join("".join(chars[i:i + 500]) + "\n" for i in range(0, len(chars), 500))
    out = run(tmp_path, trainpref=str(write(tmp_path, "big.txt", text)), tokenizer="char")
    m = load_manifest(out)
    assert m["vocab_size"] >= 65500 and m["dtype"] == "int32"
    train = MMapIndexedDataset(out / "train")
    assert train.dtype == np.int32 and int(train.tokens.max()) >= 65536
    tok = load_tokenizer(out)
    assert tok.decode(np.concatenate([train[i].numpy() for i in range(len(train))]).tolist()) == text
