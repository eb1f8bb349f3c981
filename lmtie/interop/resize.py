"""Moving a model's weights onto another vocabulary (and tie setting), the tie kept.

A row is kept for every symbol the two dictionaries share (by symbol, wherever its id moved);
padding symbols (``madeupwordNNNN``) are not shared: their rows were never trained. Every other
row is the fresh model's: the Embedding factory's N(0, d^-0.5) (an untied head at the same scale),
the distribution every lmtie row starts from, so a grown model is what training from scratch would
have begun with for those symbols. (The mean of the old rows, Hewitt 2021, would give new symbols
the average logit at once; lmtie keeps one init contract instead.) The ``<pad>`` row stays zero.

Tied stays one matrix (the head *is* the embedding); untied grows both. Untying copies the
embedding into the new head; tying an untied model needs the two matrices equal, unless the
caller allows dropping the head (``reset_output_projection``).
"""

from __future__ import annotations

import torch

from lmtie.data.dictionary import Dictionary
from lmtie.errors import UserError
from lmtie.models import build_model


def vocab_mapping(old: Dictionary, new: Dictionary) -> dict[int, int]:
    """new id -> old id, for each symbol both hold (specials by role, padding symbols never)."""
    mapping = {new.bos(): old.bos(), new.pad(): old.pad(), new.eos(): old.eos(), new.unk(): old.unk()}
    for j, sym in enumerate(new.symbols):
        if j not in mapping and sym in old.indices and not sym.startswith("madeupword"):
            mapping[j] = old.indices[sym]
    return mapping


def _embedding_key(model) -> str:
    weight = model.input_embedding.weight
    return next(name for name, p in model.named_parameters() if p is weight)


def load_onto(model, old_state: dict[str, torch.Tensor], old_tied: bool, mapping: dict[int, int] | None,
              reset_output_projection: bool = False, where: str = "the model") -> int:
    """Load ``old_state`` (a model of the same family and shape, another vocabulary or tie) into ``model``.

    ``mapping`` (new id -> old id; None: the same vocabulary) says which rows carry over; ``model``'s
    own (freshly initialised) rows stay for the others. Returns the number of rows kept.
    """
    emb_key, head_key = _embedding_key(model), model.output_head_key
    old_head = old_state.get(head_key)
    if old_tied == model.tied:
        pass
    elif model.tied:  # tie an untied model: the two matrices must be one already, unless told to drop the head
        if not reset_output_projection and not torch.equal(old_head, old_state[emb_key]):
            raise UserError(f"{where} is untied and its output matrix differs from its embedding; pass "
                            "--reset-output-projection to tie it to the embedding (the head is dropped)")
    else:  # untie: the new head starts as a copy of the tied matrix
        if not reset_output_projection:
            raise UserError(f"{where} is tied; pass --reset-output-projection to untie it (the head starts as a "
                            "copy of the embedding) or --share-decoder-input-output-embed to keep it tied")
        old_head = old_state[emb_key]
    state = {k: v for k, v in old_state.items() if k not in (emb_key, head_key)}
    fresh = model.state_dict()
    kept = 0
    for key, old in ((emb_key, old_state[emb_key]), (head_key, old_head)):
        if key not in fresh:
            continue  # tied: no separate head
        if mapping is None:
            state[key] = old.clone()
            kept = old.size(0)
            continue
        rows = fresh[key].clone()
        new_ids = torch.tensor(sorted(mapping), dtype=torch.long)
        rows[new_ids] = old[torch.tensor([mapping[j] for j in sorted(mapping)], dtype=torch.long)]
        if key == emb_key:
            rows[model.cfg.padding_idx] = 0.0
        state[key], kept = rows, len(mapping)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise UserError(f"{where}: its weights do not fit the model the flags describe "
                        f"({str(e).splitlines()[0][:160]}); pass the same model flags")
    model.check_tie()
    return kept


def resize_vocab(model, old: Dictionary, new: Dictionary):
    """``model`` on the vocabulary ``new``: a new model of the same family and config, every row of a
    shared symbol kept, the others drawn fresh, the tie (one matrix) kept, the <pad> row zero."""
    cfg = model.cfg.replace(vocab_size=len(new), padding_idx=new.pad())
    grown = build_model(model.family, cfg)
    load_onto(grown, model.state_dict(), model.tied, vocab_mapping(old, new))
    return grown
