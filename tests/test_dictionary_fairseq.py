"""The Dictionary behaves as fairseq's where code written for fairseq would notice (the behaviours of
fairseq's tests/test_dictionary.py, written anew)."""

import io

import pytest
import torch

from lmtie import Dictionary
from lmtie.errors import UserError


def _words_dict(lines):
    d = Dictionary()
    for line in lines:
        d.encode_line(line)  # add_if_not_exist defaults to True, as in fairseq
    return d


def test_encode_line_adds_unknown_words_by_default_and_finalize_renumbers_by_count():
    lines = ["me llamo nom nom", "nom me"]
    d = _words_dict(lines)
    assert d.symbols[4:] == ["me", "llamo", "nom"] and d.get_count(d.index("nom")) == 3
    before = [d.encode_line(line, add_if_not_exist=False).tolist() for line in lines]
    assert before == [[4, 5, 6, 6, 2], [6, 4, 2]]
    d.finalize(padding_factor=1)
    assert d.symbols[4:] == ["nom", "me", "llamo"]
    assert [d.encode_line(line, add_if_not_exist=False).tolist() for line in lines] == [[5, 6, 4, 4, 2], [4, 5, 2]]
    seen = []
    d.encode_line("me too", add_if_not_exist=False, consumer=lambda w, i: seen.append((w, i)))
    assert seen == [("me", 5), ("too", d.unk())]


def test_save_and_load_through_file_objects():
    d = _words_dict(["a b b c c c"])
    d.finalize(padding_factor=1)
    buf = io.StringIO()
    buf.write(d.to_text())
    buf.seek(0)
    loaded = Dictionary.load(buf)
    assert loaded == d and loaded.count == d.count
    more = Dictionary()
    more.add_from_file(io.StringIO("x 2\ny 1\n"))
    assert more.symbols[4:] == ["x", "y"]


def test_add_file_to_dictionary_counts_words_and_one_eos_per_line(tmp_path):
    (tmp_path / "t.txt").write_text("b a\na\n\n", encoding="utf-8")
    d = Dictionary()
    eos_before = d.get_count(d.eos())
    Dictionary.add_file_to_dictionary(str(tmp_path / "t.txt"), d, num_workers=1)
    assert d.symbols[4:] == ["a", "b"] and d.get_count(d.index("a")) == 2
    assert d.get_count(d.eos()) == eos_before + 3


def test_update_adds_counts_and_appends_new_symbols():
    a, b = _words_dict(["x y y"]), _words_dict(["y z"])
    a.update(b)
    assert a.symbols[4:] == ["x", "y", "z"] and [a.get_count(a.index(w)) for w in "xyz"] == [1, 3, 1]


def test_dummy_sentence_holds_ordinary_symbols_and_ends_in_eos():
    d = _words_dict([" ".join(f"w{i}" for i in range(20))])
    t = d.dummy_sentence(50)
    assert t.shape == (50,) and t[-1] == d.eos() and bool(((t[:-1] > d.nspecial) & (t[:-1] < len(d))).all())


def test_duplicate_without_overwrite_is_a_runtime_error_and_a_user_error():
    with pytest.raises(RuntimeError, match="Duplicate"):
        Dictionary.load(io.StringIO("a 1\na 2\n"))
    with pytest.raises(UserError):
        Dictionary.load(io.StringIO("a 1\na 2\n"))
    assert Dictionary.load(io.StringIO("a 1\na 2 #fairseq:overwrite\n")).get_count(5) == 2


def test_string_keeps_pad_drops_bos_eos_and_post_processes():
    d = _words_dict(["\u2581he llo \u2581world", "new@@ s paper"])
    ids = torch.tensor([d.bos(), *d.encode_line("\u2581he llo \u2581world", add_if_not_exist=False).tolist()])
    assert d.string(ids) == "\u2581he llo \u2581world"
    assert d.string(ids, "sentencepiece") == "hello world"
    assert d.string(d.encode_line("new@@ s paper"), "subword_nmt") == "news paper"
    assert d.string(torch.tensor([d.index("paper"), d.pad(), d.unk()])) == "paper <pad> <unk>"
    assert d.string(torch.tensor([d.unk()]), escape_unk=True) == "<<unk>>" == f"<{d.unk_string()}>"
    assert d.string(torch.tensor([d.unk()]), unk_string="UNK") == "UNK"
    assert d.string(torch.tensor([[d.index("paper"), d.eos()], [d.unk(), d.eos()]])) == "paper\n<unk>"


def test_indexing_is_python_list_indexing_with_unk_past_the_end():
    d = _words_dict(["a b"])
    assert d[-1] == "b" and d[-len(d)] == "<s>" and d[len(d)] == "<unk>" and d[4] == "a"
