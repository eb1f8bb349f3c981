"""The tied-vs-untied ablation: arms x seeds with paired initialisation and data, resumable, reported.

``lmtie-ablate DATA_BIN --arms tied,untied --seeds 3 --output DIR --max-update N`` or
:func:`run_ablation` from Python; arms are small functions registered with :func:`register_arm`.
"""

from lmtie.ablation.ablate import base_config, plan_runs, report, run_ablation
from lmtie.ablation.arms import ARMS, register_arm, resolve_arms, unique_parameters
from lmtie.ablation.config import AblationConfig
from lmtie.ablation.runs import RunSpec
from lmtie.ablation.stats import mean_std, paired_difference, t_critical

__all__ = ["ARMS", "AblationConfig", "RunSpec", "base_config", "mean_std", "paired_difference", "plan_runs",
           "register_arm", "report", "resolve_arms", "run_ablation", "t_critical", "unique_parameters"]
