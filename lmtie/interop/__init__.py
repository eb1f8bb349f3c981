"""Hugging Face interop: ``export_hf`` writes a ``save_pretrained`` directory, ``import_hf`` reads one.

Its own layer: it uses the models (through each family's converter, ``models/*_hf.py``), the
checkpoint format and the tokenisers; it never imports training, evaluation or the CLI, and reads
and writes the files itself, so ``transformers`` is needed only to load the result (``lmtie[hf]``).
"""

from lmtie.interop.hf_export import export_hf
from lmtie.interop.resize import resize_vocab

__all__ = ["export_hf", "resize_vocab"]
