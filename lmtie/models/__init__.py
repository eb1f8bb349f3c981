"""Model layer: the model protocol (``base.py``), the registry of families and ``--arch`` sizes, and the families.

Importing this package registers every family below; a new family is one module here, imported
on the last lines.
"""

from lmtie.models.base import LanguageModel, TokenModel, check_tie, unwrap
from lmtie.models.registry import (ARCHS, DEFAULT_FAMILY, FAMILIES, Family, arch_overrides, build_config, build_model,
                                   archs_of, families_for, family_of_arch, family_of_config, get_family, register_arch,
                                   register_model)
from lmtie.models.seq2seq import EncoderDecoderCache, EncoderDecoderModel, EncoderOut

# the families (each registers itself and its --arch sizes on import)
from lmtie.models import transformer_lm, presets, llama, transformer  # noqa: E402,F401  isort: skip
from lmtie.models import transformer_lm_hf, llama_hf  # noqa: E402,F401  their Hugging Face converters
from lmtie.models.llama import LlamaConfig, LlamaLanguageModel  # noqa: E402
from lmtie.models.transformer import TransformerConfig, TransformerModel  # noqa: E402
from lmtie.models.transformer_lm import KVCache, TransformerLanguageModel, TransformerLMConfig  # noqa: E402

__all__ = ["ARCHS", "DEFAULT_FAMILY", "FAMILIES", "EncoderDecoderCache", "EncoderDecoderModel", "EncoderOut", "Family",
           "KVCache", "LanguageModel", "LlamaConfig", "LlamaLanguageModel", "TokenModel", "TransformerConfig",
           "TransformerLMConfig", "TransformerLanguageModel", "TransformerModel", "arch_overrides", "archs_of",
           "build_config", "build_model", "check_tie", "families_for", "family_of_arch", "family_of_config",
           "get_family", "register_arch", "register_model", "unwrap"]
