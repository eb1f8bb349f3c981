"""Data layer: vocabularies, tokenisers, binarised corpora and batches. Never imports model code."""

from lmtie.data.dictionary import Dictionary
from lmtie.data.indexed_dataset import MMapIndexedDataset, MMapIndexedDatasetBuilder, best_dtype
from lmtie.data.lm_dataset import BREAK_MODES, LanguageModelDataset, batch_indices, block_slices, epoch_order
from lmtie.data.manifest import load_manifest, load_tokenizer, tokenizer_identity
from lmtie.data.preprocess import PreprocessConfig, ensure_default_data_bin, preprocess
from lmtie.data.tokenizers import Tokenizer, make_tokenizer

__all__ = [
    "Dictionary", "MMapIndexedDataset", "MMapIndexedDatasetBuilder", "best_dtype", "BREAK_MODES",
    "LanguageModelDataset", "batch_indices", "block_slices", "epoch_order", "load_manifest", "load_tokenizer",
    "tokenizer_identity", "PreprocessConfig", "ensure_default_data_bin", "preprocess", "Tokenizer", "make_tokenizer",
]
