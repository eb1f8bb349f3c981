"""Reusable layers: the Embedding factory and the weight-sharing building blocks."""

from lmtie.modules.embedding import Embedding, sinusoidal_table

__all__ = ["Embedding", "sinusoidal_table"]
