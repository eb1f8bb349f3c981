"""The ablation's own options; every lmtie-train flag is accepted beside them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lmtie.config import field, validate_ranges
from lmtie.errors import UserError


@dataclass
class AblationConfig:
    """Arms x seeds, where the runs go, and how the finished runs are measured."""

    arms: str = field("tied,untied", "comma-separated arms: tied, untied, untied-matched (or registered ones); "
                                     "the first is the reference of the paired differences")
    seeds: int = field(3, "number of seeds per arm: --seed, --seed + 1, ...", min=1)
    output: Optional[str] = field(None, "directory for the runs (OUTPUT/runs/ARM-seedN) and the report")
    train_eval_tokens: int = field(200_000, "score only the first N tokens (whole lines) of the train split for "
                                            "train ppl (0 = all of it)", min=0)
    eval_context_window: int = field(0, "context window of the train/valid/test scoring (as lmtie-eval-lm)", min=0)
    curve_points: int = field(20, "when --validate-interval-updates is not given and --max-update is, "
                                  "validate this many times per run so the plot has curves", min=0)
    plot: bool = field(True, "write valid_curves.png (needs matplotlib: pip install lmtie[plot])")

    def __post_init__(self) -> None:
        validate_ranges(self)

    def validate(self) -> None:
        if not self.output:
            raise UserError("--output DIR is required: the directory for the runs and the report")
