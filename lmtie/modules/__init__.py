"""Reusable layers: the Embedding factory, the weight-sharing building blocks and Llama's RMSNorm, RoPE and SwiGLU."""

from lmtie.modules.embedding import Embedding, sinusoidal_table
from lmtie.modules.feedforward import SwiGLU
from lmtie.modules.kv_cache import KVCache
from lmtie.modules.init import fan_in, he_normal_, lecun_normal_
from lmtie.modules.norms import RMSNorm
from lmtie.modules.rotary import apply_rotary, rotary_tables
from lmtie.modules.sharing import SharedKernelConv2d, TiedAutoencoder

__all__ = ["Embedding", "KVCache", "RMSNorm", "SharedKernelConv2d", "SwiGLU", "TiedAutoencoder", "apply_rotary", "fan_in",
           "he_normal_", "lecun_normal_", "rotary_tables", "sinusoidal_table"]
