"""A lone \\r and \\r\\n end a line, as in fairseq (Python's universal newlines), and nothing else does."""

import re

import pytest

from lmtie.data import PreprocessConfig, preprocess
from lmtie.data import sources

TEXT = "the cat\rsat on\r\na mat\n\r\rdog ran\x0cto\x85big\u2028red\r\n\rhouse"


def _reference(text: str) -> list[str]:
    lines = re.split(r"\r\n|\r|\n", text)
    return lines[:-1] if lines[-1] == "" else lines


@pytest.mark.parametrize("batch", [1, 2, 3, 5, 8, 13, 1 << 20])
@pytest.mark.parametrize("cut", [None, rb"[ \t]", rb"[\x00-\x7f\xc0-\xff]"])
def test_lines_end_at_cr_lf_and_crlf_at_any_batch_boundary(tmp_path, monkeypatch, batch, cut):
    path = tmp_path / "t.txt"
    path.write_bytes(TEXT.encode())
    monkeypatch.setattr(sources, "_BATCH_BYTES", batch)
    lines, nbytes, piece = [], 0, ""
    for b in sources.read_line_batches(path, 0, path.stat().st_size, "strict", "--trainpref", cut):
        got = list(b.lines)
        got[0] = piece + got[0]
        piece = got.pop() if b.open_end else ""
        lines += got
        nbytes += b.nbytes
    assert lines == _reference(TEXT)  # \x0c, \x85 and \u2028 stay inside their lines, as fairseq reads them
    assert nbytes == len(TEXT.encode()) + 1  # every byte of the file, and the newline its last line lacks


@pytest.mark.parametrize("workers", [1, 2])
def test_preprocess_of_cr_and_crlf_text_equals_that_of_lf_text(tmp_path, workers):
    words = "the cat sat on a mat and dog ran to big red house".split()
    lines = [" ".join(words[i % 7: i % 7 + 1 + i % 5]) for i in range(40)] + [""]
    outs = {}
    for name, sep in (("lf", "\n"), ("cr", "\r"), ("crlf", "\r\n")):
        (tmp_path / f"{name}.txt").write_bytes(sep.join(lines).encode())
        dest = tmp_path / f"bin-{name}"
        preprocess(PreprocessConfig(trainpref=str(tmp_path / f"{name}.txt"), destdir=str(dest), workers=workers))
        outs[name] = [(dest / f).read_bytes() for f in ("dict.txt", "train.bin", "train.idx")]
    assert outs["cr"] == outs["lf"] == outs["crlf"]


@pytest.mark.parametrize("name", ["space", "char", "bytes"])
def test_tokenizer_encode_ends_lines_where_preprocessing_does(tmp_path, name):
    from lmtie.data.manifest import load_tokenizer

    (tmp_path / "t.txt").write_text("ab c\nd e\n", encoding="utf-8")
    tok = load_tokenizer(preprocess(PreprocessConfig(trainpref=str(tmp_path / "t.txt"), destdir=str(tmp_path / "b"),
                                                     tokenizer=name)))
    assert tok.encode("ab c\rd e\r\nc\n") == tok.encode("ab c\nd e\nc\n")
    assert tok.encode("ab\r").count(2) == 1  # a final line end starts no new line


def test_eval_input_of_crlf_text_counts_what_preprocessing_counts(tmp_path, capsys):
    import json

    from lmtie.cli import eval_lm
    from eval_helpers import checkpoint_for, corpus_text, make_data_bin

    text = corpus_text(12, seed=1)
    crlf = text.replace("\n", "\r\n")
    data_bin = make_data_bin(tmp_path, crlf)  # the test split is the \r\n text
    ckpt = checkpoint_for(data_bin, tmp_path / "ck.safetensors")
    (tmp_path / "in.txt").write_bytes(crlf.encode())
    metrics = []
    for args in ([str(data_bin)], ["--input", str(tmp_path / "in.txt")]):
        assert eval_lm.main([*args, "--path", str(ckpt)]) == 0
        metrics.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert metrics[0]["bytes"] == metrics[1]["bytes"] == len(crlf.encode())
    assert metrics[0]["tokens"] == metrics[1]["tokens"] and metrics[0]["ppl"] == pytest.approx(metrics[1]["ppl"])
