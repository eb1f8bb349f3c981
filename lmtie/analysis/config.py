"""The options of lmtie-analyze."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lmtie.config import field, validate_ranges
from lmtie.errors import UserError


@dataclass
class AnalyzeConfig:
    """Where the report goes and how the word pairs of the rank correlation are drawn."""

    output: Optional[str] = field(None, "directory for analysis.json, analysis.md and the plots")
    pairs: int = field(20_000, "word pairs sampled for the rank correlation of pairwise similarities (all pairs "
                               "when the vocabulary has fewer)", min=1)
    seed: int = field(0, "seed of the word-pair sample (the same pairs for every matrix)", min=0)
    plot: bool = field(True, "write spectrum.png and similarity.png (needs matplotlib: pip install lmtie[plot])")

    def __post_init__(self) -> None:
        validate_ranges(self)

    def validate(self) -> None:
        if not self.output:
            raise UserError("--output DIR is required: the directory for the report")
