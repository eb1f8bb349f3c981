"""The auto recipe: optimiser and schedule fitted to the run length and the model width.

fairseq's defaults (lr 5e-4, inverse_sqrt, no warm-up, no clipping) were made for 100k-update runs of
large models; a user who only picks a size and ``--max-update N`` gets a far worse model from them
(issue 12). ``--recipe auto`` (the default when no optimiser or schedule flag is given) fills every
recipe field the user left unset; a flag given always wins. The rule, and where each part comes from:

- peak lr = 0.5 / width (``decoder_embed_dim``). Adam's best lr for hidden matrices falls as 1/width
  (muP: Yang et al. 2022, "Tensor Programs V"); the constant 0.5 fits GPT-3's table (Brown et al. 2020,
  Table 2.1: d=768 6e-4 (rule 6.5e-4), d=2048 2e-4 (2.4e-4), d=4096 1.2e-4 (1.2e-4), d=5140 1e-4
  (0.97e-4)), and was checked on the two corpora of ``scripts/recipe_sweep.py``;
- linear warm-up over 5% of N (nanoGPT's tuned Shakespeare recipe: 100 of 2,000), then cosine decay
  to the last update with a floor of 10% of the peak (Chinchilla, Hoffmann et al. 2022, and GPT-3);
- AdamW betas (0.9, 0.99) (nanoGPT's choice for small batches: beta2 0.95 of GPT-3 is for
  million-token batches), decoupled weight decay 0.1 on matrices (GPT-3), gradient clipping at 1.0
  (GPT-3);
- everything else (Adam epsilon, no decay on embeddings, the warm-up start) as the fairseq recipe.

The constant 0.5 is the decoder-only (pre-norm) families'. A family sets its own
(``auto_lr_times_width``): fairseq's post-norm translation Transformer learns little at 0.5/width, so
it has 0.125, the best of {1/16, 1/8, 1/4, 1/2} / width on a reversal task (``transformer_tiny``,
d=64, 700 updates, ``--max-tokens 256``, 2026-12-02: valid 0.164, 0.023, 0.087, 2.153 bits per token).
fairseq's IWSLT'14 recipe (5e-4 at d=512, inverse_sqrt over 4,000 warm-up updates) is 0.26/width.

Without ``--max-update`` there is no N to fit, so the run gets the fairseq recipe (said when it starts).
"""

from __future__ import annotations

import dataclasses

from lmtie.training.config import FAIRSEQ_RECIPE, OptimizationConfig

LR_TIMES_WIDTH = 0.5
WARMUP_FRACTION = 0.05
MIN_LR_FRACTION = 0.1


def auto_values(max_update: int, width: int, lr: float | None = None, lr_times_width: float = LR_TIMES_WIDTH) -> dict:
    """The auto recipe's fields for a run of ``max_update`` updates of a model ``width`` wide
    (the floor is a fraction of ``lr`` when the peak is given)."""
    lr = lr_times_width / width if lr is None else lr
    return dict(lr=lr, warmup_updates=round(WARMUP_FRACTION * max_update), lr_scheduler="cosine",
                min_lr=MIN_LR_FRACTION * lr, adam_betas=(0.9, 0.99), weight_decay=0.1, clip_norm=1.0)


def resolve(optim: OptimizationConfig, width: int, lr_times_width: float = LR_TIMES_WIDTH) -> OptimizationConfig:
    """``optim`` with every recipe field set: unset ones from its recipe (auto needs ``max_update``)."""
    if optim.recipe != "auto":
        return optim  # the fairseq recipe is filled when the config is made
    if optim.max_update <= 0:
        return dataclasses.replace(optim, recipe="fairseq")
    auto = {**FAIRSEQ_RECIPE, **auto_values(optim.max_update, width, optim.lr, lr_times_width)}
    return dataclasses.replace(optim, **{k: v for k, v in auto.items() if getattr(optim, k) is None})


def describe(optim: OptimizationConfig) -> str:
    """One line: the recipe and the values it gave (printed when a run starts)."""
    why = {"auto": "fitted to --max-update and the width; lmtie/training/recipe.py",
           "fairseq": "fairseq's defaults" + ("; auto needs --max-update" if optim.max_update <= 0 else "")}
    values = ", ".join(f"{k} {getattr(optim, k)}" for k in FAIRSEQ_RECIPE)
    return f"recipe {optim.recipe} ({why[optim.recipe]}): {values}"
