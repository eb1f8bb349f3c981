"""Bad input to lmtie-preprocess: one clear line naming the file and the fix, exit 2, nothing half-written."""

import re

import pytest

from lmtie.cli.preprocess import main
from lmtie.data import load_manifest


def cli_error(tmp_path, capsys, *args):
    """Run the CLI expecting failure; return its one-line message after checking nothing was left."""
    before = set(tmp_path.iterdir())
    assert main([*args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lmtie-preprocess: error: ")
    left = {p.name for p in set(tmp_path.iterdir()) - before}
    assert left == set(), f"left behind: {left}"
    return err


def text_file(tmp_path, name="train.txt", data=b"a b c\nb c\n"):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_missing_file(tmp_path, capsys):
    err = cli_error(tmp_path, capsys, "--trainpref", str(tmp_path / "nope.txt"), "--destdir", str(tmp_path / "bin"))
    assert "--trainpref" in err and "nope.txt: file not found" in err


def test_directory_given_as_file(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    err = cli_error(tmp_path, capsys, "--trainpref", text_file(tmp_path), "--validpref", str(tmp_path / "folder"),
                    "--destdir", str(tmp_path / "bin"))
    assert "--validpref" in err and "is a directory; pass the text file itself" in err


@pytest.mark.parametrize("data", [b"", b"\n\n \n"])
def test_empty_corpus(tmp_path, capsys, data):
    err = cli_error(tmp_path, capsys, "--trainpref", text_file(tmp_path, data=data), "--destdir", str(tmp_path / "bin"))
    assert "train.txt" in err and ("empty" in err or "no text" in err)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_invalid_utf8_fails_with_byte_offset_by_default(tmp_path, capsys, workers):
    data = b"good line\n" * 50 + b"bad \xff byte\n" + b"more\n" * 50
    err = cli_error(tmp_path, capsys, "--trainpref", text_file(tmp_path, data=data), "--destdir",
                    str(tmp_path / "bin"), "--workers", workers)
    assert f"invalid UTF-8 at byte offset {500 + 4}" in err and "--utf8-errors replace" in err


def test_invalid_utf8_replaced_and_counted_on_request(tmp_path, capsys):
    data = b"bad \xff\xfe bytes\nok \xef\xbf\xbd\n"  # the second line holds a genuine U+FFFD
    assert main(["--trainpref", text_file(tmp_path, data=data), "--destdir", str(tmp_path / "bin"),
                 "--utf8-errors", "replace", "--tokenizer", "char"]) == 0
    split = load_manifest(tmp_path / "bin")["splits"]["train"]
    assert split["utf8_replacements"] == 2 and split["bytes"] == len(data)


def test_malformed_srcdict(tmp_path, capsys):
    bad = tmp_path / "dict.txt"
    bad.write_text("a 3\nb three\n")
    err = cli_error(tmp_path, capsys, "--trainpref", text_file(tmp_path), "--srcdict", str(bad),
                    "--destdir", str(tmp_path / "bin"))
    assert "--srcdict" in err and "dict.txt:2" in err and "not an integer" in err


def test_unknown_tokenizer_names_the_known_ones(tmp_path, capsys):
    err = cli_error(tmp_path, capsys, "--trainpref", text_file(tmp_path), "--tokenizer", "wordpiece",
                    "--destdir", str(tmp_path / "bin"))
    assert "--tokenizer 'wordpiece' is unknown; choose one of space, char, bytes, spm" in err


def test_spm_with_srcdict_still_needs_train_text_or_a_model(tmp_path, capsys):
    srcdict = text_file(tmp_path, "dict.txt", b"a 1\n")
    err = cli_error(tmp_path, capsys, "--validpref", text_file(tmp_path), "--tokenizer", "spm", "--srcdict", srcdict,
                    "--destdir", str(tmp_path / "bin"))
    assert "--tokenizer spm learns its vocabulary from --trainpref" in err


def spm_corpus(tmp_path):
    return text_file(tmp_path, data="".join(f"word{i % 7} and more text\n" for i in range(200)).encode())


def test_spm_vocab_too_large_says_what_fits(tmp_path, capsys):
    err = cli_error(tmp_path, capsys, "--trainpref", spm_corpus(tmp_path), "--tokenizer", "spm",
                    "--spm-vocab-size", "5000", "--destdir", str(tmp_path / "bin"))
    m = re.search(r"--spm-vocab-size 5000 is larger than .*train\.txt allows; use --spm-vocab-size (\d+) or less", err)
    assert m, err
    assert main(["--trainpref", str(tmp_path / "train.txt"), "--tokenizer", "spm", "--spm-vocab-size", m.group(1),
                 "--destdir", str(tmp_path / "bin")]) == 0


def test_spm_vocab_too_small_says_what_fits(tmp_path, capsys):
    err = cli_error(tmp_path, capsys, "--trainpref", spm_corpus(tmp_path), "--tokenizer", "spm",
                    "--spm-vocab-size", "100", "--destdir", str(tmp_path / "bin"))
    assert re.search(r"too small .* use --spm-vocab-size \d+ or more", err), err


def test_destdir_with_a_different_corpus_is_refused_and_untouched(tmp_path, capsys):
    assert main(["--trainpref", text_file(tmp_path), "--destdir", str(tmp_path / "bin")]) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "bin").iterdir()}
    other = text_file(tmp_path, "other.txt", b"x y z\n")
    err = cli_error(tmp_path, capsys, "--trainpref", other, "--destdir", str(tmp_path / "bin"))
    assert "--destdir" in err and "different corpus" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "bin").iterdir()} == before


def test_directory_that_is_not_a_data_bin_is_refused_even_with_overwrite(tmp_path, capsys):
    """e.g. the default --destdir data-bin already holding data-bin/shakespeare."""
    (tmp_path / "bin" / "shakespeare").mkdir(parents=True)
    (tmp_path / "bin" / "notes.txt").write_text("mine")
    err = cli_error(tmp_path, capsys, "--trainpref", text_file(tmp_path), "--destdir", str(tmp_path / "bin"),
                    "--overwrite")
    assert "not a data-bin" in err and (tmp_path / "bin" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "bin" / "shakespeare").is_dir()


def test_failure_midway_keeps_the_existing_destdir(tmp_path, capsys):
    """train binarises fine, test fails: with --overwrite the old data-bin must still be intact."""
    assert main(["--trainpref", text_file(tmp_path), "--destdir", str(tmp_path / "bin")]) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "bin").iterdir()}
    bad = text_file(tmp_path, "test.txt", b"ok\n\xc3(\n")
    err = cli_error(tmp_path, capsys, "--trainpref", str(tmp_path / "train.txt"), "--testpref", bad,
                    "--destdir", str(tmp_path / "bin"), "--overwrite")
    assert "--testpref" in err and "byte offset 3" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "bin").iterdir()} == before
