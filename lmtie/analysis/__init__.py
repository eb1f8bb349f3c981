"""Embedding analysis of trained checkpoints: spectra, input/output row similarity, the pad row,
and Press & Wolf's rank-correlation check (``lmtie-analyze CKPT [CKPT...] --output DIR``)."""

from lmtie.analysis.config import AnalyzeConfig
from lmtie.analysis.embeddings import (matrix_stats, pairwise_cosines, row_cosine, sample_pairs, singular_values,
                                       spearman)
from lmtie.analysis.report import analyze, analyze_models

__all__ = ["AnalyzeConfig", "analyze", "analyze_models", "matrix_stats", "pairwise_cosines", "row_cosine",
           "sample_pairs", "singular_values", "spearman"]
