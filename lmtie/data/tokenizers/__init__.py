"""Tokenisers, one per file, registered by name for ``--tokenizer``; :mod:`.base` holds the protocol.

Importing this package registers the built-in ones, in the order ``--tokenizer`` lists them.
"""

from lmtie.data.tokenizers.base import TOKENIZERS, Tokenizer, make_tokenizer, register_tokenizer, tokenizer_class
from lmtie.data.tokenizers.space import SpaceTokenizer
from lmtie.data.tokenizers.char import CharTokenizer, char_of_symbol, char_symbol
from lmtie.data.tokenizers.bytes import ByteTokenizer, bytes_dictionary
from lmtie.data.tokenizers.spm import SpmTokenizer, piece_symbol, spm_dictionary, spm_to_dict_table
from lmtie.data.tokenizers.hf import HFTokenizer  # for models imported from Hugging Face

__all__ = [
    "TOKENIZERS", "Tokenizer", "make_tokenizer", "register_tokenizer", "tokenizer_class", "SpaceTokenizer",
    "CharTokenizer", "char_of_symbol", "char_symbol", "ByteTokenizer", "bytes_dictionary", "SpmTokenizer",
    "piece_symbol", "spm_dictionary", "spm_to_dict_table", "HFTokenizer",
]
