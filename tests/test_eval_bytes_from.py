"""Bits per byte on a data-bin without lmtie's manifest (a plain fairseq data-bin): --bytes-from, or none."""

import json

import pytest

from lmtie.cli import eval_lm
from eval_helpers import checkpoint_for, make_data_bin


def _json_line(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def bins(tmp_path):
    text = "the cat  sat\ton a mat\n\nzebra quagga\n   the dog ran\n"  # words not in train: <unk>; odd spacing
    data_bin = make_data_bin(tmp_path, text)
    ckpt = checkpoint_for(data_bin, tmp_path / "ck.safetensors")
    return tmp_path, text, data_bin, ckpt


def test_without_a_manifest_bits_per_byte_is_not_guessed_and_bytes_from_gives_the_manifests(bins, capsys):
    tmp_path, text, data_bin, ckpt = bins
    assert eval_lm.main([str(data_bin), "--path", str(ckpt)]) == 0
    with_manifest = _json_line(capsys.readouterr().out)
    assert with_manifest["bytes"] == len(text.encode())
    (data_bin / "manifest.json").unlink()  # now a plain fairseq data-bin
    assert eval_lm.main([str(data_bin), "--path", str(ckpt)]) == 0
    out = capsys.readouterr().out
    plain = _json_line(out)
    assert plain["bits_per_byte"] is None and plain["bytes"] is None and "--bytes-from RAW_TEXT_FILE" in out
    assert eval_lm.main([str(data_bin), "--path", str(ckpt), "--bytes-from", str(tmp_path / "test.txt")]) == 0
    given = _json_line(capsys.readouterr().out)
    for key in ("bytes", "words", "bits_per_byte", "word_ppl", "ppl"):
        assert given[key] == with_manifest[key], key


def test_bytes_from_a_file_with_other_lines_is_refused_in_one_line(bins, capsys):
    tmp_path, text, data_bin, ckpt = bins
    (tmp_path / "other.txt").write_text(text + "one more line\n")
    for extra in (["--bytes-from", str(tmp_path / "other.txt")], ["--bytes-from", str(tmp_path / "missing.txt")]):
        assert eval_lm.main([str(data_bin), "--path", str(ckpt), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("lmtie-eval-lm: error: --bytes-from") and len(err.strip().splitlines()) == 1
    assert eval_lm.main(["--input", str(tmp_path / "test.txt"), "--path", str(ckpt),
                         "--bytes-from", str(tmp_path / "test.txt")]) == 2
    assert "--bytes-from" in capsys.readouterr().err
