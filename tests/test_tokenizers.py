"""Tokenisers: exact round trips (char, bytes, spm), the SentencePiece -> Dictionary mapping, the registry."""

import random
from types import SimpleNamespace

import numpy as np
import pytest
import sentencepiece as spm

from lmtie.data import Dictionary, MMapIndexedDataset, load_manifest, load_tokenizer, tokenizer_identity
from lmtie.data.preprocess import PreprocessConfig, preprocess
from lmtie.data.tokenizers import (TOKENIZERS, ByteTokenizer, CharTokenizer, SpaceTokenizer, SpmTokenizer, Tokenizer,
                                   bytes_dictionary, char_symbol, register_tokenizer, spm_dictionary)
from lmtie.evaluation.corpus import checkpoint_tokenizer

TRICKY = "  two  spaces\tand a tab \x0c\nÜnïcödé 你好 ☃\n\nlast line  \n"  # \r or \r\n would end a line


def corpus(n_lines=400, seed=0):
    rng = random.Random(seed)
    words = "the of and to a in that is was he for it with as his on be at by had not".split()
    return "".join(" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) + "\n" for _ in range(n_lines))


def test_bytes_round_trip_and_fixed_ids():
    tok = ByteTokenizer(bytes_dictionary())
    ids = tok.encode("A\n")
    assert ids == [ord("A") + 4, 2]
    assert tok.decode(tok.encode(TRICKY)) == TRICKY
    assert len(tok.dictionary) == 264 and tok.dictionary[4] == "<0x00>"


def test_char_round_trip_through_a_saved_dict(tmp_path):
    d = Dictionary()
    for ch in sorted(set(TRICKY.replace("\n", ""))):
        d.add_symbol(char_symbol(ch))
    d.save(tmp_path / "dict.txt")
    tok = CharTokenizer(Dictionary.load(tmp_path / "dict.txt"))
    assert tok.decode(tok.encode(TRICKY)) == TRICKY
    assert tok.encode("\n") == [2]
    assert tok.encode("@")[0] == tok.dictionary.unk()


def test_space_tokenizer_matches_dictionary_encode_line():
    d = Dictionary.build(corpus().splitlines())
    tok = SpaceTokenizer(d)
    line = "the cat  of\tthe"
    assert tok.encode(line) == d.encode_line(line, add_if_not_exist=False).tolist()
    assert tok.decode(tok.encode("the of\na\n")) == "the of\na\n"


def train_spm(tmp_path, **kw):
    (tmp_path / "c.txt").write_text(corpus() + TRICKY, encoding="utf-8")
    args = dict(input=str(tmp_path / "c.txt"), model_prefix=str(tmp_path / "m"), vocab_size=100,
                model_type="bpe", minloglevel=2)
    args.update(kw)
    spm.SentencePieceTrainer.train(**args)
    return tmp_path / "m.model"


def test_spm_default_specials_map_onto_fairseq_specials(tmp_path):
    """A stock spm model (unk=0, bos=1, eos=2, no pad): every piece kept, no pad/unk clash."""
    model = train_spm(tmp_path)
    sp = spm.SentencePieceProcessor(model_file=str(model))
    tok = SpmTokenizer(model)
    d = tok.dictionary
    assert d.symbols[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert tok.to_dict[sp.unk_id()] == 3 and tok.to_dict[sp.bos_id()] == 0 and tok.to_dict[sp.eos_id()] == 2
    normal = [i for i in range(sp.get_piece_size()) if i not in (sp.unk_id(), sp.bos_id(), sp.eos_id())]
    assert [d[int(tok.to_dict[i])] for i in normal] == [sp.id_to_piece(i) for i in normal]
    assert len(set(tok.to_dict[normal].tolist())) == len(normal) and tok.to_dict[normal].min() == 4
    assert len(d) % 8 == 0


def test_spm_mapping_is_deterministic_and_survives_dict_txt(tmp_path):
    model = train_spm(tmp_path)
    first = spm_dictionary(spm.SentencePieceProcessor(model_file=str(model)))
    first.save(tmp_path / "dict.txt")
    again = SpmTokenizer(model, Dictionary.load(tmp_path / "dict.txt"))
    assert again.dictionary == first
    assert np.array_equal(again.to_dict, SpmTokenizer(model).to_dict)


def test_trained_spm_round_trips_exactly(tmp_path):
    (tmp_path / "train.txt").write_text(corpus() + TRICKY, encoding="utf-8")
    out = preprocess(PreprocessConfig(trainpref=str(tmp_path / "train.txt"), destdir=str(tmp_path / "bin"),
                                      tokenizer="spm", spm_vocab_size=300))
    tok = load_tokenizer(out)
    assert tok.name == "spm"
    for text in (TRICKY, corpus(5, seed=9), "Ω unseen ✓ symbols\n", "\n\n"):
        assert tok.decode(tok.encode(text)) == text
    assert tok.encode("the\n")[-1] == 2 and tok.encode("the\n").count(2) == 1


@pytest.mark.parametrize("name", ["char", "bytes"])
def test_preprocessed_char_and_bytes_round_trip(tmp_path, name):
    (tmp_path / "train.txt").write_text(TRICKY, encoding="utf-8")
    tok = load_tokenizer(preprocess(PreprocessConfig(trainpref=str(tmp_path / "train.txt"),
                                                     destdir=str(tmp_path / "bin"), tokenizer=name)))
    assert tok.name == name and tok.decode(tok.encode(TRICKY)) == TRICKY


@pytest.fixture
def registry():
    """Tokenizers a test registers are forgotten after it."""
    saved = dict(TOKENIZERS)
    yield
    TOKENIZERS.clear()
    TOKENIZERS.update(saved)


def test_a_new_tokenizer_is_one_registered_class(tmp_path, registry):
    """Preprocessing, the manifest and checkpoints take a new tokenizer without touching another file."""

    @register_tokenizer("lower")
    class LowerWords(Tokenizer):
        @staticmethod
        def symbols(line):
            return line.lower().split()

        def _ids(self, line):
            return np.array([self.dictionary.index(w) for w in self.symbols(line)], dtype=np.int64)

        def _text(self, ids):
            return " ".join(self.dictionary[i] for i in ids)

    (tmp_path / "train.txt").write_text("The cat\nthe CAT sat\n", encoding="utf-8")
    out = preprocess(PreprocessConfig(trainpref=str(tmp_path / "train.txt"), destdir=str(tmp_path / "bin"),
                                      tokenizer="lower"))
    assert (out / "dict.txt").read_text() == "cat 2\nthe 2\nsat 1\nmadeupword0000 0\n"
    assert load_manifest(out)["tokenizer"] == "lower"
    assert MMapIndexedDataset(out / "train")[1].tolist() == [5, 4, 6, 2]
    info, model = tokenizer_identity(out)
    ckpt = SimpleNamespace(tokenizer=info, tokenizer_model=model, dictionary=Dictionary.load(out / "dict.txt"),
                           path=tmp_path / "checkpoint_last.pt")
    tok = checkpoint_tokenizer(ckpt)
    assert isinstance(tok, LowerWords) and tok.decode(tok.encode("THE Cat\n")) == "the cat\n"
