"""lmtie: Transformer language models in the style of fairseq, built around parameter sharing."""

from lmtie.data.dictionary import Dictionary
from lmtie.hub import load
from lmtie.models import TransformerLanguageModel, TransformerLMConfig, check_tie
from lmtie.modules import Embedding, SharedKernelConv2d, TiedAutoencoder, fan_in, he_normal_, lecun_normal_

__version__ = "0.1.0"
__all__ = ["Dictionary", "Embedding", "SharedKernelConv2d", "TiedAutoencoder", "TransformerLMConfig",
           "TransformerLanguageModel", "check_tie", "fan_in", "he_normal_", "lecun_normal_",
           "load"]
