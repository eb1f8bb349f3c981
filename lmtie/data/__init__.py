"""Data layer: vocabularies, tokenisers, binarised corpora and batches. Never imports model code."""

from lmtie.data.dictionary import Dictionary

__all__ = ["Dictionary"]
