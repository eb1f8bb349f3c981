"""``lmtie-train --init-from DIR``: start training from another model's weights (fine-tuning).

DIR is a Hugging Face ``save_pretrained`` directory (imported as ``lmtie.load`` does) or an lmtie
checkpoint file. The model config is the imported one (explicit model flags override it; the
weights must still fit), sized to DATA_BIN's dictionary: when that differs from the model's, the
vocabulary is resized by symbol (:mod:`.resize`), the tie kept. The optimiser, schedule and data
position start fresh. Once ``--save-dir`` holds a checkpoint, training resumes from it instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lmtie.checkpoint import Checkpoint, build_model
from lmtie.data.dictionary import Dictionary
from lmtie.errors import UserError
from lmtie.interop.resize import load_onto, vocab_mapping


@dataclass
class InitFrom:
    path: str
    family: str
    cfg: Any  # the family's config for the run (DATA_BIN's vocabulary, the flags applied)
    state: dict[str, torch.Tensor]
    tied: bool  # the imported model's tie
    mapping: dict[int, int] | None  # new id -> old id when the vocabulary changes

    def load(self, model, reset_output_projection: bool) -> int:
        """Copy the weights into ``model`` (built from ``cfg``); the number of vocabulary rows kept."""
        return load_onto(model, self.state, self.tied, self.mapping, reset_output_projection,
                         where=f"--init-from {self.path}")


def _checkpoint(path: str) -> Checkpoint:
    from pathlib import Path

    from lmtie.checkpoint import load
    from lmtie.interop.hf_import import checkpoint_from_hf

    if Path(path).is_dir():
        return checkpoint_from_hf(path)
    return load(path, with_training_state=False)


def prepare(path: str, family: str, dictionary: Dictionary, overrides: dict, tokens_per_sample: int) -> InitFrom:
    """The imported model, checked against the run's family and vocabulary, before anything is written."""
    ckpt = _checkpoint(path)
    model = build_model(ckpt)  # every check of an import or a checkpoint load
    if model.family != family:
        raise UserError(f"--init-from {path} holds a {model.family} model but --arch gives a {family} model; pass "
                        f"an --arch of the {model.family} family")
    mapping = None if ckpt.dictionary == dictionary else vocab_mapping(ckpt.dictionary, dictionary)
    if mapping is not None and len(mapping) <= 4:
        raise UserError(f"--init-from {path}: its vocabulary and DATA_BIN's share no symbols beyond the specials; "
                        "preprocess the data with the model's tokenizer (e.g. --srcdict and --spm-model from DIR)")
    cfg = model.cfg.replace(**overrides, vocab_size=len(dictionary), padding_idx=dictionary.pad())
    return InitFrom(path, family, cfg.with_positions(tokens_per_sample), model.state_dict(), model.tied, mapping)
