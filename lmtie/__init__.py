"""lmtie: Transformer language models in the style of fairseq, built around parameter sharing."""

from lmtie import preempt as _preempt

_preempt.install_for_command()  # lmtie-train: SIGTERM/SIGUSR1 during the imports below end it cleanly (exit 0)

from lmtie.data.dictionary import Dictionary  # noqa: E402
from lmtie.hub import load
from lmtie.interop import export_hf, resize_vocab  # noqa: E402  Hugging Face interop, vocabulary resize
from lmtie.models import (LanguageModel, LlamaConfig, LlamaLanguageModel, TransformerLanguageModel, TransformerLMConfig,
                          build_config, build_model, check_tie, register_arch, register_model)
from lmtie.modules import Embedding, SharedKernelConv2d, TiedAutoencoder, fan_in, he_normal_, lecun_normal_

__version__ = "0.1.0"
__all__ = ["Dictionary", "Embedding", "LanguageModel", "LlamaConfig", "LlamaLanguageModel", "SharedKernelConv2d",
           "TiedAutoencoder", "TransformerLMConfig", "TransformerLanguageModel", "build_config", "build_model",
           "check_tie", "export_hf", "fan_in", "he_normal_", "lecun_normal_", "load", "register_arch", "register_model",
           "resize_vocab"]
