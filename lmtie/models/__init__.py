"""Model layer: the Transformer LM, its config and named sizes."""

from lmtie.models.presets import ARCHS, build_config
from lmtie.models.transformer_lm import (KVCache, TransformerLanguageModel, TransformerLMConfig, check_tie,
                                         unwrap)

__all__ = ["ARCHS", "KVCache", "TransformerLMConfig", "TransformerLanguageModel", "build_config", "check_tie",
           "unwrap"]
