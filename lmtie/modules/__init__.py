"""Reusable layers: the Embedding factory and the weight-sharing building blocks."""

from lmtie.modules.embedding import Embedding, sinusoidal_table
from lmtie.modules.init import fan_in, he_normal_, lecun_normal_
from lmtie.modules.sharing import SharedKernelConv2d, TiedAutoencoder

__all__ = ["Embedding", "SharedKernelConv2d", "TiedAutoencoder", "fan_in", "he_normal_", "lecun_normal_",
           "sinusoidal_table"]
