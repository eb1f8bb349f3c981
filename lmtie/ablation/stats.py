"""Mean, spread and the paired 95% confidence interval that the ablation report prints.

Paired by seed: both arms of a seed share data order and initial values, so the per-seed
difference removes the seed-to-seed variation that an unpaired comparison would carry.
The Student-t quantile is computed (no scipy dependency) and tested against printed tables.
"""

from __future__ import annotations

import math
from typing import Sequence


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1 in the denominator; None for one value)."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def _t_pdf(x: float, dof: int) -> float:
    log_c = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
    return math.exp(log_c - (dof + 1) / 2 * math.log1p(x * x / dof))


def _t_mass(t: float, dof: int, steps: int = 2000) -> float:
    """P(0 < T < t) by Simpson's rule (the density is smooth, so 2,000 steps give ~1e-10)."""
    h = t / steps
    odd = math.fsum(_t_pdf((2 * i - 1) * h, dof) for i in range(1, steps // 2 + 1))
    even = math.fsum(_t_pdf(2 * i * h, dof) for i in range(1, steps // 2))
    return h / 3 * (_t_pdf(0.0, dof) + 4 * odd + 2 * even + _t_pdf(t, dof))


def t_critical(dof: int, confidence: float = 0.95) -> float:
    """Two-sided Student-t critical value, e.g. 12.706 for 1 dof and 2.042 for 30 at 95%."""
    if dof < 1:
        raise ValueError(f"t_critical needs dof >= 1, got {dof}")
    target = confidence / 2
    lo, hi = 0.0, 1.0
    while _t_mass(hi, dof) < target:
        hi *= 2
    for _ in range(60):  # bisection to well below the 3 decimals tables print
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_mass(mid, dof) < target else (lo, mid)
    return (lo + hi) / 2


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean of a[i] - b[i] with its t confidence interval (bounds None with fewer than 2 pairs)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_difference needs two equally long, non-empty lists ({len(a)} vs {len(b)})")
    diffs = [x - y for x, y in zip(a, b)]
    mean, sd = mean_std(diffs)
    out = {"n": len(diffs), "mean": mean, "std": sd, "diffs": diffs, "low": None, "high": None,
           "confidence": confidence}
    if sd is not None:
        half = t_critical(len(diffs) - 1, confidence) * sd / math.sqrt(len(diffs))
        out["low"], out["high"] = mean - half, mean + half
    return out
