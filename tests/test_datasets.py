"""The mmap indexed dataset (fairseq layout), token blocks, collation and the resumable order."""

import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from lmtie.data import (Dictionary, LanguageModelDataset, MMapIndexedDataset, MMapIndexedDatasetBuilder,
                        batch_indices, best_dtype, block_slices, epoch_order, load_manifest, load_tokenizer)
from lmtie.errors import UserError


def write_split(prefix, lines, dtype=np.uint16):
    b = MMapIndexedDatasetBuilder(prefix, dtype)
    for line in lines:
        b.add_item(np.array(line))
    b.finalize()


def test_index_bytes_follow_fairseq_layout(tmp_path):
    write_split(tmp_path / "train", [[5, 6, 2], [7, 2]])
    raw = (tmp_path / "train.idx").read_bytes()
    expected = (b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", 8) + struct.pack("<Q", 2)
                + np.array([3, 2], np.int32).tobytes() + np.array([0, 6], np.int64).tobytes())
    assert raw == expected
    assert (tmp_path / "train.bin").read_bytes() == np.array([5, 6, 2, 7, 2], np.uint16).tobytes()


def test_reader_returns_int64_lines_and_int32_sizes(tmp_path):
    write_split(tmp_path / "s", [[5, 6, 2], [], [70000, 2]], dtype=np.int32)
    ds = MMapIndexedDataset(tmp_path / "s")
    assert len(ds) == 3 and ds.sizes.dtype == np.int32 and ds.sizes.tolist() == [3, 0, 2]
    assert ds[0].dtype == torch.int64 and ds[0].tolist() == [5, 6, 2]
    assert ds[1].tolist() == [] and ds[2].tolist() == [70000, 2] and ds[-1].tolist() == [70000, 2]
    with pytest.raises(IndexError):
        ds[3]


def test_dtype_choice_and_overflow_refused(tmp_path):
    assert best_dtype(65499) == np.uint16 and best_dtype(65500) == np.int32
    b = MMapIndexedDatasetBuilder(tmp_path / "x", np.uint16)
    with pytest.raises(ValueError, match="out of range for uint16"):
        b.add_item(np.array([65536]))


def test_damaged_bin_is_reported(tmp_path):
    write_split(tmp_path / "s", [[5, 6, 2]])
    (tmp_path / "s.bin").write_bytes(b"\x05\x00")
    with pytest.raises(UserError, match="damaged"):
        MMapIndexedDataset(tmp_path / "s")


# sizes 3, 2, 4, 1, 3 -> stream offsets: line0 0-3, line1 3-5, line2 5-9, line3 9-10, line4 10-13
SIZES = np.array([3, 2, 4, 1, 3])


def slices(mode, tps):
    s, e = block_slices(SIZES, tps, mode)
    return list(zip(s.tolist(), e.tolist()))


def test_break_mode_none_cuts_fixed_blocks():
    assert slices("none", 4) == [(0, 4), (4, 8), (8, 12), (12, 13)]


def test_break_mode_complete_packs_whole_lines():
    assert slices("complete", 5) == [(0, 5), (5, 10), (10, 13)]
    assert slices("complete", 6) == [(0, 5), (5, 10), (10, 13)]
    assert slices("complete", 9) == [(0, 9), (9, 13)]


def test_break_mode_eos_is_one_line_per_block():
    assert slices("eos", 10) == [(0, 3), (3, 5), (5, 9), (9, 10), (10, 13)]


def test_long_lines_are_cut_at_tokens_per_sample():
    assert slices("eos", 3) == [(0, 3), (3, 5), (5, 8), (8, 9), (9, 10), (10, 13)]
    assert slices("complete", 3) == [(0, 3), (3, 5), (5, 8), (8, 9), (9, 10), (10, 13)]


def test_break_mode_complete_doc_stops_at_empty_lines():
    # the 1-token line (offset 9-10) is a document separator: dropped, and nothing packs across it
    assert slices("complete_doc", 100) == [(0, 9), (10, 13)]


def make_bin(tmp_path, lines, vocab=20):
    d = Dictionary()
    for i in range(vocab - 4):
        d.add_symbol(f"w{i}")
    d.save(tmp_path / "dict.txt")
    write_split(tmp_path / "train", lines)
    return tmp_path


def test_source_is_target_shifted_right_with_previous_token(tmp_path):
    make_bin(tmp_path, [[5, 6, 2], [7, 8, 9, 2]])  # stream 5 6 2 7 8 9 2
    ds = LanguageModelDataset(tmp_path, "train", tokens_per_sample=3)
    assert len(ds) == 3
    assert ds[0]["target"].tolist() == [5, 6, 2] and ds[0]["source"].tolist() == [2, 5, 6]
    assert ds[1]["target"].tolist() == [7, 8, 9] and ds[1]["source"].tolist() == [2, 7, 8]
    assert ds[2]["target"].tolist() == [2] and ds[2]["source"].tolist() == [9]  # mid-line: the token before


def test_batch_pads_with_pad_index(tmp_path):
    make_bin(tmp_path, [[5, 6, 2], [7, 2]])
    ds = LanguageModelDataset(tmp_path, "train", tokens_per_sample=8, sample_break_mode="eos")
    batch = ds.batch([0, 1])
    assert batch["id"].tolist() == [0, 1] and batch["ntokens"] == 5
    assert batch["target"].tolist() == [[5, 6, 2], [7, 2, 1]]
    assert batch["source"].tolist() == [[2, 5, 6], [2, 7, 1]]
    assert ds.dictionary.pad() == 1


@pytest.mark.parametrize("mode", ["none", "eos", "complete", "complete_doc"])
def test_batch_rows_are_the_blocks_right_padded(tmp_path, mode):
    rng = np.random.default_rng(0)
    lines = [list(rng.integers(4, 20, size=rng.integers(0, 12))) + [2] for _ in range(60)]
    make_bin(tmp_path, lines)
    ds = LanguageModelDataset(tmp_path, "train", tokens_per_sample=7, sample_break_mode=mode)
    for indices in ([0], [len(ds) - 1, 0, 3], list(rng.permutation(len(ds))[:17])):
        b = ds.batch(indices)
        assert b["id"].tolist() == list(indices) and b["source"].dtype == b["target"].dtype == torch.long
        assert b["ntokens"] == sum(len(ds[i]["target"]) for i in indices)
        width = b["target"].size(1)
        for row, i in enumerate(indices):
            n = len(ds[i]["target"])
            assert b["target"][row].tolist() == ds[i]["target"].tolist() + [1] * (width - n)
            assert b["source"][row].tolist() == ds[i]["source"].tolist() + [1] * (width - n)
    with pytest.raises(IndexError, match="out of range"):
        ds.batch([len(ds)])


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    a = epoch_order(1000, seed=3, epoch=2)
    assert a.dtype == np.int64 and sorted(a.tolist()) == list(range(1000))
    assert np.array_equal(a, epoch_order(1000, seed=3, epoch=2))
    assert not np.array_equal(a, epoch_order(1000, seed=3, epoch=3))
    assert not np.array_equal(a, epoch_order(1000, seed=4, epoch=2))


def test_batch_indices_by_count_and_by_padded_tokens():
    assert batch_indices([4, 0, 3, 1, 2], batch_size=2) == [[4, 0], [3, 1], [2]]
    sizes = [2, 5, 3, 3, 1]
    # [0,1] would cost 2*5=10 > 8 tokens; [1] alone; [2,3] = 2*3=6, +[4] = 3*3=9 > 8
    assert batch_indices([0, 1, 2, 3, 4], max_tokens=8, sizes=sizes) == [[0], [1], [2, 3], [4]]
    with pytest.raises(UserError, match="--max-tokens 4"):
        batch_indices([1], max_tokens=4, sizes=sizes)


def test_resume_recomputes_the_same_batches():
    order = epoch_order(50, seed=1, epoch=7)
    first = batch_indices(order, batch_size=4)
    again = batch_indices(epoch_order(50, seed=1, epoch=7), batch_size=4)
    assert again[5:] == first[5:]


def test_fairseq_data_bin_without_manifest_loads(tmp_path):
    make_bin(tmp_path, [[5, 6, 2], [7, 2]])
    m = load_manifest(tmp_path)
    assert m["tokenizer"] == "space" and m["vocab_size"] == 20
    assert m["splits"]["train"] == {"lines": 2, "tokens": 5, "bytes": None}
    assert load_tokenizer(tmp_path).decode([5, 6, 2]) == "w1 w2\n"


def test_load_manifest_names_a_plain_directory(tmp_path):
    with pytest.raises(UserError, match=str(tmp_path)):
        load_manifest(tmp_path)


def test_mmap_reads_a_split_larger_than_the_ram_it_uses(tmp_path):
    """48 MB of ids on disk; reading blocks all over it keeps private memory (RssAnon) flat,
    while loading the split eagerly would add 48 MB. Mapped file pages are page cache, which
    the kernel can drop, so they are not what a RAM budget limits."""
    n_lines, line = 24_000, 1000
    with MMapIndexedDatasetBuilder(tmp_path / "train", np.uint16) as b:
        b.add_lines((np.arange(n_lines * line) % 1000).astype(np.uint16), np.full(n_lines, line))
    d = Dictionary()
    for i in range(1000 - len(d)):  # every id is in the dictionary (a split with others is refused)
        d.add_symbol(f"w{i}")
    d.save(tmp_path / "dict.txt")
    code = textwrap.dedent(f"""
        import re
        import numpy as np
        from lmtie.data import LanguageModelDataset
        def anon():
            return int(re.search(r"RssAnon:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) // 1024
        before = anon()
        ds = LanguageModelDataset({str(tmp_path)!r}, "train", tokens_per_sample=512)
        total = sum(int(ds[i]["target"].sum()) for i in range(0, len(ds), 29))
        lazy = anon() - before
        eager = np.fromfile({str(tmp_path / "train.bin")!r}, dtype=np.uint16)
        print(len(ds), lazy, anon() - before)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.split()
    assert int(out[0]) == -(-n_lines * line // 512)
    assert int(out[2]) > 40, "the probe must see an eager load of the 48 MB split"
    assert int(out[1]) < 16, f"private memory grew by {out[1]} MB reading a 48 MB split"
