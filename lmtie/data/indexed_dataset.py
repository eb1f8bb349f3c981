"""fairseq's memory-mapped indexed dataset (``{prefix}.bin`` + ``{prefix}.idx``), read and written.

Layout of the ``.idx`` (fairseq ``indexed_dataset.py``, ``MMapIndexedDataset.Index``):
``b"MMIDIDX\\x00\\x00"``, ``<Q`` version 1, ``<B`` dtype code, ``<Q`` count, ``int32 sizes[count]``,
``int64 pointers[count]`` (byte offsets into ``.bin``). ``.bin`` is the concatenated ids.
Both files are memory-mapped, so a split is never loaded into RAM as a whole.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path
from typing import BinaryIO, Iterable

import numpy as np
import torch

from lmtie.errors import UserError

MAGIC = b"MMIDIDX\x00\x00"
_CODE_TO_DTYPE = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 8: np.uint16,
                  9: np.uint32, 10: np.uint64}
_DTYPE_TO_CODE = {np.dtype(v): k for k, v in _CODE_TO_DTYPE.items()}
_STREAM_CHUNK = 1 << 20  # entries per copy step when merging, so memory stays constant


def best_dtype(vocab_size: int) -> np.dtype:
    """uint16 while the vocabulary fits (fairseq's threshold, 65500), else int32."""
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


def dtype_code(dtype: np.dtype) -> int:
    return _DTYPE_TO_CODE[np.dtype(dtype)]


def checked_cast(ids: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast ``ids`` to ``dtype``, refusing any id that would wrap around (never a silent overflow)."""
    info = np.iinfo(dtype)
    if ids.size and (int(ids.min()) < info.min or int(ids.max()) > info.max):
        raise ValueError(f"token id out of range for {np.dtype(dtype).name}: "
                         f"[{int(ids.min())}, {int(ids.max())}]")
    return ids.astype(dtype, copy=False)


def read_index_header(path: Path) -> tuple[np.dtype, int, int]:
    """(dtype, count, byte offset of the sizes array); errors name the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC) + 8 + 1 + 8)
    except OSError as e:
        raise UserError(f"{path}: cannot read index ({e.strerror}); re-run lmtie-preprocess")
    if len(head) < 26 or head[:9] != MAGIC:
        raise UserError(f"{path}: not a fairseq mmap index (bad header); re-run lmtie-preprocess "
                        "(only --dataset-impl mmap is supported)")
    version, = struct.unpack("<Q", head[9:17])
    code = head[17]
    count, = struct.unpack("<Q", head[18:26])
    if version != 1 or code not in _CODE_TO_DTYPE:
        raise UserError(f"{path}: unsupported index version {version} / dtype code {code}")
    return np.dtype(_CODE_TO_DTYPE[code]), count, 26


class MMapIndexedDataset:
    """Random access to the lines of a binarised split; ``ds[i]`` is an int64 tensor."""

    def __init__(self, prefix: str | os.PathLike):
        self.prefix = Path(prefix)
        idx, bin_ = self.prefix.with_name(self.prefix.name + ".idx"), self.prefix.with_name(self.prefix.name + ".bin")
        for p in (idx, bin_):
            if not p.is_file():
                raise UserError(f"{p}: missing; preprocess this split first (lmtie-preprocess)")
        self.dtype, count, offset = read_index_header(idx)
        expected, actual = offset + 12 * count, idx.stat().st_size  # int32 sizes + int64 pointers per line
        if actual != expected:
            raise UserError(f"{idx}: {actual} bytes, but its header describes {count} lines ({expected} bytes); the "
                            "index is truncated or damaged: re-run lmtie-preprocess")
        self._idx = np.memmap(idx, dtype=np.uint8, mode="r")
        self.sizes = np.frombuffer(self._idx, dtype=np.int32, count=count, offset=offset)
        self.pointers = np.frombuffer(self._idx, dtype=np.int64, count=count, offset=offset + 4 * count)
        if count and int(self.sizes.min()) < 0:
            raise UserError(f"{idx}: a line of negative length ({int(self.sizes.min())}); the index is damaged: "
                            "re-run lmtie-preprocess")
        nbytes = bin_.stat().st_size
        total = int(self.sizes.sum(dtype=np.int64))
        if total * self.dtype.itemsize != nbytes:
            raise UserError(f"{bin_}: holds {nbytes} bytes but {idx.name} describes "
                            f"{total * self.dtype.itemsize}; the split is damaged, re-run lmtie-preprocess")
        self.tokens = np.memmap(bin_, dtype=self.dtype, mode="r") if nbytes else np.zeros(0, self.dtype)

    def __len__(self) -> int:
        return len(self.sizes)

    def num_tokens(self) -> int:
        return int(self.sizes.sum(dtype=np.int64))

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -len(self) <= i < len(self):
            raise IndexError(f"line {i} out of range for {len(self)} lines")
        start = int(self.pointers[i]) // self.dtype.itemsize
        return torch.from_numpy(np.array(self.tokens[start:start + int(self.sizes[i])], dtype=np.int64))

    def check_ids(self, vocab_size: int, dictionary: str | os.PathLike) -> None:
        """Refuse a split holding an id outside ``0 .. vocab_size - 1`` (one pass over the mmap, once when the
        split is opened): such ids index past the embedding, or mean symbols of another dict.txt."""
        if not len(self.tokens):
            return
        lo, hi = int(self.tokens.min()), int(self.tokens.max())
        if lo >= 0 and hi < vocab_size:
            return
        bad = hi if hi >= vocab_size else lo
        at = int(np.argmax(np.asarray(self.tokens) == bad))
        raise UserError(f"{self.prefix}.bin: token id {bad} (at token {at}) is outside the dictionary {dictionary} "
                        f"of {vocab_size} symbols (ids 0..{vocab_size - 1}); the split was binarised with another "
                        "dict.txt: re-run lmtie-preprocess for this data-bin")

    def token_range(self, start: int, end: int) -> np.ndarray:
        """Tokens ``start:end`` of the concatenated split, as int64 (only those pages are read)."""
        return np.array(self.tokens[start:end], dtype=np.int64)


class MMapIndexedDatasetBuilder:
    """Stream lines into ``{prefix}.bin`` and finish the ``.idx``; memory stays constant.

    Sizes go to a side file as they arrive, so a corpus of any length needs no list in RAM.
    """

    def __init__(self, prefix: str | os.PathLike, dtype: np.dtype):
        self.prefix, self.dtype = Path(prefix), np.dtype(dtype)
        self._bin = open(self._path(".bin"), "wb")
        self._sizes = open(self._path(".sizes"), "wb")
        self.count = 0

    def __enter__(self) -> "MMapIndexedDatasetBuilder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Finish on success; on error remove the partial files instead of leaving them."""
        if exc_type is None:
            self.finalize()
            return
        self.close_part()
        for ext in (".bin", ".sizes", ".idx"):
            self._path(ext).unlink(missing_ok=True)

    def _path(self, ext: str) -> Path:
        return self.prefix.with_name(self.prefix.name + ext)

    def add_lines(self, flat_ids: np.ndarray, sizes: np.ndarray) -> None:
        """Append several lines at once: their ids concatenated, and each line's length."""
        self._bin.write(checked_cast(flat_ids, self.dtype).tobytes())
        self._sizes.write(np.asarray(sizes, dtype=np.int32).tobytes())
        self.count += len(sizes)

    def add_item(self, ids: torch.Tensor | np.ndarray) -> None:
        arr = np.asarray(ids)
        self.add_lines(arr, np.array([len(arr)]))

    def merge_file_(self, other_prefix: str | os.PathLike) -> None:
        """Append a finished part (``.bin`` + ``.sizes``) written by another builder (a worker)."""
        other = Path(other_prefix)
        with open(other.with_name(other.name + ".bin"), "rb") as f:
            shutil.copyfileobj(f, self._bin, _STREAM_CHUNK)
        with open(other.with_name(other.name + ".sizes"), "rb") as f:
            shutil.copyfileobj(f, self._sizes, _STREAM_CHUNK)
        self.count += other.with_name(other.name + ".sizes").stat().st_size // 4

    def close_part(self) -> None:
        """Close without an index: the part is merged by the parent later."""
        self._bin.close()
        self._sizes.close()

    def finalize(self) -> None:
        """Write the ``.idx`` from the streamed sizes and remove the side file."""
        self.close_part()
        with open(self._path(".idx"), "wb") as out:
            out.write(MAGIC + struct.pack("<Q", 1) + struct.pack("<B", dtype_code(self.dtype)))
            out.write(struct.pack("<Q", self.count))
            _copy_sizes(self._path(".sizes"), out)
            _write_pointers(self._path(".sizes"), out, self.dtype.itemsize)
        self._path(".sizes").unlink()


def _iter_sizes(path: Path) -> Iterable[np.ndarray]:
    with open(path, "rb") as f:
        while True:
            buf = f.read(4 * _STREAM_CHUNK)
            if not buf:
                return
            yield np.frombuffer(buf, dtype=np.int32)


def _copy_sizes(path: Path, out: BinaryIO) -> None:
    for sizes in _iter_sizes(path):
        out.write(sizes.tobytes())


def _write_pointers(path: Path, out: BinaryIO, itemsize: int) -> None:
    """Byte offset of each line: an exclusive running sum of sizes, carried across chunks."""
    offset = 0
    for sizes in _iter_sizes(path):
        ends = np.cumsum(sizes, dtype=np.int64) * itemsize + offset
        starts = np.concatenate([[offset], ends[:-1]]).astype(np.int64)
        out.write(starts.tobytes())
        offset = int(ends[-1])
