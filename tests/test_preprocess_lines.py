"""Long lines: preprocessing reads a line longer than a batch in pieces where the tokeniser allows
(``line_cut``), with the very bytes of reading it whole, and memory that does not grow with the line."""

import random
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import lmtie.data.sources as sources
from lmtie.data import PreprocessConfig, preprocess
from lmtie.data.binarize import TokenizerSpec, binarize_chunk, count_chunk
from lmtie.data.dictionary import tokenize_line
from lmtie.data.manifest import load_manifest
from lmtie.data.sources import read_line_batches
from lmtie.data.tokenizers.base import _join_with_eos

WORDS = ["the", "cat", "Straße", "日本語", "é", "\u00a0", "a\u2003b", "\ufffd", "x\ty", "\x0c", "  ", "naïve"]  # \r would end a line
BAD = [b"\xff", b"\xc3", b"\xe6\x97", b"\xf0\x9f\x98", b"\xed\xa0\x80", b"\xc0\xaf"]


def _tricky(path: Path, seed: int = 0) -> Path:
    """Lines of every length (empty to ~10 KB), Unicode whitespace, U+FFFD in the text, invalid UTF-8
    cut anywhere, and a last line without a newline that ends inside a character."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        for _ in range(120):
            parts = []
            for _ in range(rng.choice([0, 1, 3, 30, 400, 2000])):
                w = rng.choice(WORDS).encode()
                if rng.random() < 0.05:
                    w = rng.choice(BAD) + w
                if rng.random() < 0.03:
                    w += rng.choice(BAD)
                parts.append(w)
            f.write(rng.choice([b" ", b"\t", b"  "]).join(parts) + b"\n")
        f.write(b"last line without newline \xe6\x97")
    return path


def _outputs(destdir: Path) -> dict:
    files = {f: (destdir / f).read_bytes() for f in ("dict.txt", "train.bin", "train.idx", "test.bin", "test.idx")
             if (destdir / f).exists()}
    return {**files, "splits": {k: {kk: v for kk, v in s.items() if kk != "input"}
                                for k, s in load_manifest(destdir)["splits"].items()}}


@pytest.mark.parametrize("tokenizer", ["space", "char", "bytes"])
def test_lines_cut_into_pieces_give_the_bytes_of_lines_read_whole(tmp_path, monkeypatch, tokenizer):
    text = _tricky(tmp_path / "t.txt")

    def run(name: str, workers: int) -> dict:
        return _outputs(preprocess(PreprocessConfig(trainpref=str(text), testpref=str(text), tokenizer=tokenizer,
                                                    utf8_errors="replace", workers=workers,
                                                    destdir=str(tmp_path / name))))

    whole = run("whole", 1)  # batches of 1 MB: every line is read whole
    assert whole["splits"]["train"]["utf8_replacements"] > 0 and whole["splits"]["train"]["lines"] == 121
    monkeypatch.setattr(sources, "_BATCH_BYTES", 61)  # nearly every line is cut, often many times
    assert sum(b.open_end for b in read_line_batches(text, 0, text.stat().st_size, "replace", "-", rb"[ \t]")) > 100
    for workers in (1, 2):
        assert run(f"cut{workers}", workers) == whole


def test_invalid_utf8_in_a_cut_line_names_its_byte_offset(tmp_path, monkeypatch):
    (tmp_path / "t.txt").write_bytes(b"word " * 5000 + b"\xff tail\nok\n")
    monkeypatch.setattr(sources, "_BATCH_BYTES", 100)
    with pytest.raises(Exception, match="invalid UTF-8 at byte offset 25000;"):
        preprocess(PreprocessConfig(trainpref=str(tmp_path / "t.txt"), destdir=str(tmp_path / "bin")))


def test_join_with_eos_holds_int32_ids_with_eos_after_each_line():
    flat, sizes = _join_with_eos([[5, 6], [], [7]], 2)
    assert flat.dtype == np.int32 and flat.tolist() == [5, 6, 2, 2, 7, 2] and sizes.tolist() == [3, 1, 2]
    lines = [np.array([0, 1]), np.array([], dtype=np.int64), np.array([2])]
    flat, sizes = _join_with_eos(lines, 2, np.array([10, 11, 12]))
    assert flat.tolist() == [10, 11, 2, 2, 12, 2] and sizes.tolist() == [3, 1, 2] and lines == []  # consumed


def _one_line(path: Path, mb: int) -> Path:
    rng = random.Random(mb)
    words = [" ".join(rng.choice(WORDS[:6]) for _ in range(10_000)).encode()]
    with open(path, "wb") as f:
        while f.tell() < mb * 1_000_000:
            f.write(words[0] + b" ")
        f.write(b"\n")
    return path


def _peak_traced_mb(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def test_memory_of_a_word_level_line_does_not_grow_with_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "_BATCH_BYTES", 1 << 16)
    dict_path = tmp_path / "dict.txt"
    dict_path.write_text("".join(f"{w} 1\n" for w in sorted(set(tokenize_line(" ".join(WORDS))))))
    spec = TokenizerSpec("space", str(dict_path))
    peaks = {}
    for mb in (1, 4):
        line = _one_line(tmp_path / f"l{mb}.txt", mb)
        size = line.stat().st_size
        peaks[mb] = (_peak_traced_mb(lambda: count_chunk(line, 0, size, tokenize_line, rb"[ \t]", "strict", "-")),
                     _peak_traced_mb(lambda: binarize_chunk(line, 0, size, spec, "uint16", str(tmp_path / f"p{mb}"),
                                                            "strict", "-")))
    # read whole (before line_cut), these peaks were 14.7 and 59.1 MB: ~15 bytes per byte of the line
    assert max(peaks[4]) < 3 and max(peaks[4]) < max(peaks[1]) + 1, peaks
