"""The text to score, as a token stream with its line sizes and its word and byte counts.

Either a binarised split of a data-bin (checked against the checkpoint's dictionary, never
rebuilt) or a raw text file encoded with the checkpoint's own tokeniser.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lmtie.data.dictionary import Dictionary
from lmtie.data.indexed_dataset import MMapIndexedDataset
from lmtie.data.manifest import load_manifest
from lmtie.data.sources import LINE_END
from lmtie.data.tokenizers import Tokenizer, tokenizer_class
from lmtie.errors import UserError
from lmtie.evaluation.windows import unscored_lines

_DECODE_CHUNK = 1 << 20  # tokens decoded at a time when a manifest lacks word counts


@dataclass
class EvalText:
    """A stream of ids (one ``</s>`` per line) and what it stands for in the original text.

    ``tokens`` is a 1-D integer tensor or numpy array; for a data-bin split it is the split's
    memory map, so scoring reads the tokens a batch needs and never loads the split.
    """

    tokens: torch.Tensor | np.ndarray
    line_sizes: np.ndarray
    words: int | None
    bytes: int | None
    name: str

    def scored_tokens(self, mode: str):
        """The tokens that ``mode`` scores: all of them, or (``complete_doc``) a view without the document
        separators (:func:`~lmtie.evaluation.windows.unscored_lines`), read as if they were not there."""
        left_out = unscored_lines(self.line_sizes, mode)
        return LinesLeftOut(self.tokens, self.line_sizes, left_out) if left_out.any() else self.tokens


class LinesLeftOut:
    """A token stream without some of its lines: ``view[a:b]`` (a numpy array) holds tokens ``a..b`` of
    what remains, read from the stream (a tensor or a memory map); only the left-out lines' positions
    are held."""

    def __init__(self, tokens, line_sizes, left_out: np.ndarray):
        sizes = np.asarray(line_sizes, dtype=np.int64)
        gone = sizes[left_out]
        dropped_before = np.cumsum(gone) - gone  # tokens left out before each left-out line
        self._at = (np.cumsum(sizes) - sizes)[left_out] - dropped_before  # where each would sit in the view
        self._shift = dropped_before + gone  # tokens left out up to and including it
        self._tokens, self._len = tokens, len(tokens) - int(gone.sum())

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: slice) -> np.ndarray:
        a, b, step = index.indices(self._len)
        if step != 1:
            raise ValueError("LinesLeftOut supports contiguous slices only")
        lo, hi = np.searchsorted(self._at, a, "right"), np.searchsorted(self._at, max(a, b), "left")
        bounds = [a, *self._at[lo:hi].tolist(), max(a, b)]
        shifts = [int(self._shift[lo - 1]) if lo else 0, *self._shift[lo:hi].tolist()]
        parts = [np.asarray(self._tokens[s + sh:e + sh]) for s, e, sh in zip(bounds, bounds[1:], shifts) if e > s]
        return np.concatenate(parts) if parts else np.asarray(self._tokens[0:0])


def checkpoint_tokenizer(ckpt) -> Tokenizer:
    """The tokeniser saved in a checkpoint; a tokeniser's model file is rebuilt from its stored bytes."""
    name = (ckpt.tokenizer or {}).get("name")
    if name is None:
        raise UserError(f"{ckpt.path}: the checkpoint records no tokenizer; it cannot encode raw text "
                        "(score a DATA_BIN split instead)")
    try:
        tok = tokenizer_class(name)
    except UserError as e:  # the message would name a --tokenizer flag nobody gave
        raise UserError(f"{ckpt.path}: the checkpoint's tokenizer {name!r} is not one this lmtie knows ({e})")
    if tok.model_file is None:
        return tok.build(ckpt.dictionary)
    if ckpt.tokenizer_model is None:
        raise UserError(f"{ckpt.path}: the checkpoint lacks the model of its {name} tokenizer ({tok.model_file}); "
                        "re-save it with lmtie-train")
    with tempfile.TemporaryDirectory() as tmp:  # build() reads the model file whole, so it may go after
        model = Path(tmp) / tok.model_file
        model.write_bytes(ckpt.tokenizer_model)
        try:
            return tok.build(ckpt.dictionary, model)
        except UserError as e:  # the message would name a temporary file
            raise UserError(f"{ckpt.path}: the {name} tokenizer model stored in the checkpoint does not load "
                            f"({str(e).replace(str(model), tok.model_file)}); the checkpoint is damaged")


def warn_unknown(tokenizer: Tokenizer, ids, what: str) -> int:
    """Warn when ``ids`` hold ``<unk>``: the text had symbols the tokeniser cannot encode."""
    n = int((torch.as_tensor(ids) == tokenizer.dictionary.unk()).sum())
    if n:
        warnings.warn(f"{what}: {n} symbol(s) the {tokenizer.name} tokenizer cannot encode were mapped to "
                      f"{tokenizer.dictionary.unk_word}", stacklevel=2)
    return n


def text_to_eval(text: str, tokenizer: Tokenizer, name: str) -> EvalText:
    """Encode raw text, its lines ending as preprocessing ends them; words are its whitespace-separated
    words, bytes its UTF-8 bytes plus the newline a last line lacks (the count preprocessing writes to the
    manifest)."""
    lines = LINE_END.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise UserError(f"{name}: the text is empty; give at least one line to score")
    flat, sizes = tokenizer.encode_lines(lines)
    warn_unknown(tokenizer, flat, name)
    nbytes = len(text.encode("utf-8")) + (not text.endswith(("\n", "\r")))
    return EvalText(torch.as_tensor(flat, dtype=torch.long), np.asarray(sizes), len(text.split()), nbytes, name)


def read_input_file(path: str | Path, tokenizer: Tokenizer) -> EvalText:
    """``--input FILE``: UTF-8 text scored with the checkpoint's tokeniser."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--input {p}: file not found; pass a UTF-8 text file")
    try:
        text = p.read_bytes().decode("utf-8")  # no newline translation: lines and bytes as preprocessing reads them
    except UnicodeDecodeError as e:
        raise UserError(f"--input {p}: not UTF-8 ({e.reason} at byte {e.start}); convert it to UTF-8 first")
    if not text.strip():
        raise UserError(f"--input {p}: the file is empty; give at least one line of text to score")
    return text_to_eval(text, tokenizer, f"--input {p}")


def check_same_dictionary(data_bin: Path, ckpt) -> None:
    """Refuse a data-bin whose ``dict.txt`` differs from the checkpoint's: ids would mean other symbols."""
    theirs = Dictionary.load(data_bin / "dict.txt")
    ours = ckpt.dictionary
    if theirs == ours:
        return
    first = next((i for i in range(min(len(ours), len(theirs))) if ours[i] != theirs[i]), min(len(ours), len(theirs)))
    raise UserError(f"{data_bin / 'dict.txt'} ({len(theirs)} symbols) differs from the dictionary of {ckpt.path} "
                    f"({len(ours)} symbols; first difference at id {first}: {theirs[first]!r} vs {ours[first]!r}); "
                    "evaluate on data preprocessed with the checkpoint's dict.txt (lmtie-preprocess --srcdict)")


def _check_same_tokenizer(data_bin: Path, manifest: dict, ckpt) -> None:
    theirs = manifest.get("tokenizer")
    theirs = theirs.get("name") if isinstance(theirs, dict) else theirs
    ours = (ckpt.tokenizer or {}).get("name")
    if theirs and ours and theirs != ours:
        raise UserError(f"{data_bin}: preprocessed with the {theirs} tokenizer but {ckpt.path} uses {ours}; "
                        "evaluate on data preprocessed with the checkpoint's tokenizer")


def read_split(data_bin: str | Path, split: str, ckpt, tokenizer: Tokenizer | None,
               bytes_from: str | Path | None = None) -> EvalText:
    """``DATA_BIN --gen-subset SPLIT``; word and byte counts come from ``bytes_from`` (the split's raw
    text), or the manifest, or (words only) from decoding the split with the tokeniser. Bytes are never
    guessed from decoded text: ``<unk>`` decodes to its literal and whitespace comes back collapsed, so
    a plain fairseq data-bin without ``bytes_from`` gets no bits per byte."""
    d = Path(data_bin)
    manifest = load_manifest(d)
    check_same_dictionary(d, ckpt)
    _check_same_tokenizer(d, manifest, ckpt)
    ds = MMapIndexedDataset(d / split)
    ds.check_ids(len(ckpt.dictionary), d / "dict.txt")
    if ds.num_tokens() == 0:
        raise UserError(f"{d / split}.bin: split {split!r} is empty; pick another --gen-subset")
    words, nbytes = _manifest_counts(d, manifest, split) if bytes_from is None else _raw_counts(bytes_from, ds)
    if words is None and tokenizer is not None:
        words = _count_decoded_words(ds, tokenizer)
    return EvalText(ds.tokens, ds.sizes, words, nbytes, f"{d}:{split}")  # both memory-mapped: nothing is copied


def _manifest_counts(d: Path, manifest: dict, split: str) -> tuple[int | None, int | None]:
    """The split's word and UTF-8 byte counts from the manifest (None where it has none); a manifest whose
    entries have other types is damaged, not a reason for a traceback."""
    splits = manifest.get("splits", {})
    info = splits.get(split, {}) if isinstance(splits, dict) else None
    if not isinstance(info, dict):
        raise UserError(f"{d / 'manifest.json'}: 'splits' is not an object of split entries; the manifest is "
                        "damaged: re-run lmtie-preprocess with --overwrite")
    counts = info.get("words"), info.get("bytes")
    for key, value in zip(("words", "bytes"), counts):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise UserError(f"{d / 'manifest.json'}: split {split!r} has {key} {value!r}, not a count; the "
                            "manifest is damaged: re-run lmtie-preprocess with --overwrite")
    return counts


def _raw_counts(path: str | Path, ds: MMapIndexedDataset) -> tuple[int, int]:
    """``--bytes-from FILE``: whitespace words and bytes of the split's raw text, the bytes counted as
    lmtie-preprocess counts them for its manifest (the file's bytes, plus a newline the last line lacks).
    The file must have the split's number of lines."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--bytes-from {p}: file not found; pass the raw text file the split was made from")
    words = lines = nbytes = 0
    with open(p, "rb") as f:
        for raw in f:  # lines up to b"\n", as preprocessing reads them
            lines, nbytes = lines + 1, nbytes + len(raw) + (not raw.endswith(b"\n"))
            words += len(raw.decode("utf-8", "replace").split())
    if lines != len(ds.sizes):
        raise UserError(f"--bytes-from {p}: has {lines} lines but the split has {len(ds.sizes)}; pass the raw "
                        "text file this split was preprocessed from")
    return words, nbytes


def _count_decoded_words(ds: MMapIndexedDataset, tokenizer: Tokenizer) -> int:
    """Whitespace words of the decoded split, chunk by chunk at line ends."""
    ends = np.cumsum(ds.sizes, dtype=np.int64)
    words = start = 0
    while start < ds.num_tokens():
        cut = int(np.searchsorted(ends, start + _DECODE_CHUNK, side="right"))
        stop = int(ends[cut - 1]) if cut > 0 and ends[cut - 1] > start else int(ends[min(cut, len(ends) - 1)])
        text = tokenizer.decode(ds.token_range(start, stop))
        words += len(text.split())
        start = stop
    return words
