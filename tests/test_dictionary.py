import pytest
import torch

from lmtie import Dictionary
from lmtie.errors import UserError


def test_special_symbols_have_fairseq_indices_and_are_not_saved(tmp_path):
    d = Dictionary()
    assert (d.bos(), d.pad(), d.eos(), d.unk()) == (0, 1, 2, 3)
    d.add_symbol("hello")
    d.save(tmp_path / "dict.txt")
    assert (tmp_path / "dict.txt").read_text() == "hello 1\n"


def test_fairseq_written_dict_loads_and_encodes_identically(tmp_path):
    # the file fairseq-preprocess writes: specials omitted, so the first line is index 4
    (tmp_path / "dict.txt").write_text("the 10\n, 7\nof 7\nmadeupword0000 0\n")
    d = Dictionary.load(tmp_path / "dict.txt")
    assert len(d) == 8 and d.index("the") == 4 and d.index(",") == 5 and d.index("of") == 6
    ids = d.encode_line("the  of\tzebra ,", add_if_not_exist=False)
    assert ids.tolist() == [4, 6, 3, 5, 2]  # whitespace runs collapse, unknown -> 3, </s> appended
    assert d.encode_line("").tolist() == [2]
    assert d.string(ids) == "the of <unk> ,"
    assert d.string(ids, escape_unk=True) == "the of <<unk>> ,"


def test_finalize_orders_by_count_then_symbol_and_pads_with_madeupwords():
    d = Dictionary()
    for word, n in [("b", 2), ("a", 2), ("c", 5), ("rare", 1)]:
        d.add_symbol(word, n)
    d.finalize(threshold=2, padding_factor=8)
    assert d.symbols[4:] == ["c", "a", "b", "madeupword0000"]
    assert len(d) % 8 == 0


def test_finalize_nwords_counts_the_specials():
    d = Dictionary.build(["x x x y y z"], nwords=6, padding_factor=1)
    assert d.symbols == ["<s>", "<pad>", "</s>", "<unk>", "x", "y"]


def test_overwrite_flag_replaces_a_duplicate(tmp_path):
    (tmp_path / "dict.txt").write_text("a 3\nb 2\na 9 #fairseq:overwrite\n")
    d = Dictionary.load(tmp_path / "dict.txt")
    assert d.index("a") == 6 and d.count[6] == 9


def test_save_load_round_trip(tmp_path):
    d = Dictionary.build(["to be or not to be", "that is the question"])
    d.save(tmp_path / "dict.txt")
    assert Dictionary.load(tmp_path / "dict.txt") == d


@pytest.mark.parametrize("content,lineno,what", [
    ("a 1\nnocount\n", 2, "malformed"),
    ("a 1\nb x\n", 2, "not an integer"),
    ("a 1\nb 2\na 3\n", 3, "Duplicate"),
])
def test_malformed_line_error_names_file_and_line(tmp_path, content, lineno, what):
    path = tmp_path / "dict.txt"
    path.write_text(content)
    with pytest.raises(UserError, match=f"dict.txt:{lineno}: .*{what}"):
        Dictionary.load(path)


def test_missing_dict_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        Dictionary.load(tmp_path / "nope.txt")
