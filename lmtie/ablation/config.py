"""The ablation's own options; every lmtie-train flag is accepted beside them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lmtie.config import field
from lmtie.errors import UserError


@dataclass
class AblationConfig:
    """Arms x seeds, where the runs go, and how the finished runs are measured."""

    arms: str = field("tied,untied", "comma-separated arms: tied, untied, untied-matched (or registered ones); "
                                     "the first is the reference of the paired differences")
    seeds: int = field(3, "number of seeds per arm: --seed, --seed + 1, ...")
    output: Optional[str] = field(None, "directory for the runs (OUTPUT/runs/ARM-seedN) and the report")
    train_eval_tokens: int = field(200_000, "score only the first N tokens (whole lines) of the train split for "
                                            "train ppl (0 = all of it)")
    eval_context_window: int = field(0, "context window of the train/valid/test scoring (as lmtie-eval-lm)")
    curve_points: int = field(20, "when --validate-interval-updates is not given and --max-update is, "
                                  "validate this many times per run so the plot has curves")
    plot: bool = field(True, "write valid_curves.png (needs matplotlib: pip install lmtie[plot])")

    def validate(self) -> None:
        if not self.output:
            raise UserError("--output DIR is required: the directory for the runs and the report")
        if self.seeds < 1:
            raise UserError(f"--seeds {self.seeds}: give at least 1 (3 or more for a useful confidence interval)")
        if self.train_eval_tokens < 0 or self.curve_points < 0:
            raise UserError("--train-eval-tokens and --curve-points must be >= 0")
