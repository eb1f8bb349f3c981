"""Reusable layers: the Embedding factory, attention, feed-forward and Transformer layers, the weight-sharing
building blocks and Llama's RMSNorm, RoPE and SwiGLU."""

from lmtie.modules.attention import CrossAttention, SelfAttention
from lmtie.modules.embedding import Embedding, TiedOutput, register_positions, sinusoidal_table
from lmtie.modules.feedforward import FeedForward, SwiGLU
from lmtie.modules.kv_cache import KVCache
from lmtie.modules.init import fan_in, he_normal_, lecun_normal_, xavier_linears_
from lmtie.modules.norms import RMSNorm
from lmtie.modules.rotary import apply_rotary, rotary_tables
from lmtie.modules.sharing import SharedKernelConv2d, TiedAutoencoder
from lmtie.modules.transformer_layer import TransformerDecoderLayer, TransformerLayer

__all__ = ["CrossAttention", "Embedding", "FeedForward", "KVCache", "RMSNorm", "SelfAttention", "SharedKernelConv2d",
           "SwiGLU", "TiedAutoencoder", "TiedOutput", "TransformerDecoderLayer", "TransformerLayer", "apply_rotary",
           "fan_in", "he_normal_", "lecun_normal_", "register_positions", "rotary_tables", "sinusoidal_table",
           "xavier_linears_"]
