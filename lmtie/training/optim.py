"""Optimiser parameter groups and learning-rate schedules.

Groups are built from ``named_parameters()``, which yields a tied matrix once, so a tied
model never hits "some parameters appear in more than one parameter group".
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lmtie.training.config import OptimizationConfig

def param_groups(model: nn.Module, cfg: OptimizationConfig) -> list[dict]:
    """Three groups: decayed matrices, embeddings (explicit decay), and no decay (norms, biases).

    The embeddings are what the model counts as such (``embedding_parameters``: token embedding,
    output matrix, learned positions).
    """
    embedding = {id(p) for p in model.embedding_parameters()}
    groups: dict[str, dict] = {
        "decay": {"name": "decay", "params": [], "param_names": [], "weight_decay": cfg.weight_decay},
        "embedding": {"name": "embedding", "params": [], "param_names": [],
                      "weight_decay": cfg.embedding_weight_decay},
        "no_decay": {"name": "no_decay", "params": [], "param_names": [], "weight_decay": 0.0},
    }
    for name, p in model.named_parameters():  # deduplicated: the tied matrix appears once
        if not p.requires_grad:
            continue
        if id(p) in embedding:
            key = "embedding"
        elif p.dim() < 2:
            key = "no_decay"
        else:
            key = "decay"
        groups[key]["params"].append(p)
        groups[key]["param_names"].append(name)
    return [g for g in groups.values() if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimizationConfig) -> torch.optim.Optimizer:
    """AdamW (fairseq's ``adam`` is AdamW too) with the fused kernel on CPU and CUDA: one kernel per
    parameter instead of about seven; on 2 CPU cores the step is 4-16x faster (scripts/bench.py)."""
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    return torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps,
                             fused=fused or None)


def decay_report(groups: list[dict]) -> str:
    """One line saying which parameters weight decay touches: lmtie decays matrices only, while fairseq's
    ``adam`` decays every parameter, norms, biases and embeddings included."""
    names = [n for g in groups for n in g["param_names"]]
    first = {n.split(".")[0] for n in names}
    prefix = f"{first.pop()}." if len(first) == 1 and all("." in n for n in names) else ""  # e.g. "decoder."
    parts = []
    for g in groups:
        kinds = sorted({".".join(p for p in n[len(prefix):].split(".") if not p.isdigit()) for n in g["param_names"]})
        n = sum(p.numel() for p in g["params"])
        parts.append(f"{g['weight_decay']:g} on {n:,} {g['name']} parameters ({', '.join(kinds)})")
    return "weight decay: " + "; ".join(parts) + " (fairseq's adam decays all)"


def lr_at(step: int, cfg: OptimizationConfig, shrinks: int = 0) -> float:
    """The learning rate for update ``step`` (0-based): a pure function of the update count (and, for
    reduce_lr_on_plateau, of how often it shrank), so resuming needs no other state."""
    if cfg.lr_scheduler == "polynomial_decay":
        return _polynomial(step, cfg)
    if cfg.warmup_updates > 0 and step < cfg.warmup_updates:
        return cfg.warmup_init_lr + (cfg.lr - cfg.warmup_init_lr) * step / cfg.warmup_updates
    if cfg.lr_scheduler == "fixed":
        return cfg.lr
    if cfg.lr_scheduler == "reduce_lr_on_plateau":
        return cfg.lr * cfg.lr_shrink ** shrinks
    if cfg.lr_scheduler == "inverse_sqrt":  # fairseq: lr * sqrt(warmup) / sqrt(step) after warm-up
        return cfg.lr * math.sqrt(max(cfg.warmup_updates, 1)) / math.sqrt(max(step, 1)) \
            if step >= max(cfg.warmup_updates, 1) else cfg.lr
    return _cosine(step, cfg)


def _cosine(step: int, cfg: OptimizationConfig) -> float:
    if cfg.max_update <= 0:
        raise ValueError("--lr-scheduler cosine needs --max-update")
    span = max(cfg.max_update - cfg.warmup_updates, 1)
    progress = min(max(step - cfg.warmup_updates, 0) / span, 1.0)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def _polynomial(step: int, cfg: OptimizationConfig) -> float:
    """fairseq's polynomial_decay: linear warm-up from 0 (it has no --warmup-init-lr), then
    ``(lr - end) * (1 - (step - warmup) / (total - warmup)) ** power + end``, then ``end``."""
    warmup, total = cfg.warmup_updates, cfg.total_num_update or cfg.max_update
    if warmup > 0 and step <= warmup:
        return cfg.lr * step / warmup
    if step >= total:
        return cfg.end_learning_rate
    remaining = 1 - (step - warmup) / (total - warmup)
    return (cfg.lr - cfg.end_learning_rate) * remaining ** cfg.power + cfg.end_learning_rate


def plateau_step(loss: float, best: float | None, bad: int, cfg: OptimizationConfig,
                 maximize: bool = False) -> tuple[float, int, bool]:
    """reduce_lr_on_plateau after one epoch's validation, as torch's ReduceLROnPlateau (relative
    threshold) that fairseq wraps: ``(best, epochs without improvement, shrink now?)``."""
    if best is None or (loss > best * (1 + cfg.lr_threshold) if maximize else loss < best * (1 - cfg.lr_threshold)):
        return loss, 0, False
    if bad + 1 > cfg.lr_patience:
        return best, 0, True
    return best, bad + 1, False


def scale_and_clip_(params: list[torch.Tensor], scale: float, clip_norm: float) -> float:
    """Multiply every gradient by ``scale``, clip the global norm to ``clip_norm`` (0: no clipping),
    and return the norm before clipping (non-finite when any gradient is), in two foreach passes."""
    torch._foreach_mul_([p.grad for p in params], scale)  # one op, not one per parameter
    max_norm = clip_norm if clip_norm > 0 else float("inf")
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # FSDP2: a DTensor


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, dict[str, torch.Tensor]], list[dict]]:
    """The optimiser's state keyed by parameter name, and its group hyper-parameters (for JSON)."""
    state: dict[str, dict[str, torch.Tensor]] = {}
    groups = []
    for g in optimizer.param_groups:
        for name, p in zip(g["param_names"], g["params"]):
            if p in optimizer.state:
                state[name] = {k: _full(v) for k, v in optimizer.state[p].items() if torch.is_tensor(v)}
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items() if k != "params"})
    return state, groups


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, dict[str, torch.Tensor]]) -> None:
    """Inverse of :func:`optimizer_state`; a parameter missing from ``state`` starts fresh."""
    for g in optimizer.param_groups:
        for name, p in zip(g["param_names"], g["params"]):
            if name in state:
                optimizer.state[p] = {k: _like(v, p) if k != "step" else v for k, v in state[name].items()}


def split_parameter_state(optimizer: torch.optim.Optimizer, model: nn.Module, cfg: OptimizationConfig,
                          source: torch.Tensor, new_name: str) -> torch.optim.Optimizer:
    """A fresh optimiser for ``model``, which just gained parameter ``new_name`` as a copy of
    ``source``: every state carries over by name, and the new one starts with a copy of
    ``source``'s (both Adam moments and the step), so the run goes on as if it had always held
    two matrices. Built like the optimiser of a model loaded with both, so a resume matches."""
    state, _ = optimizer_state(optimizer)
    names = {id(p): n for g in optimizer.param_groups for n, p in zip(g["param_names"], g["params"])}
    if names.get(id(source)) in state:
        state[new_name] = {k: v.clone() for k, v in state[names[id(source)]].items()}
    fresh = build_optimizer(model, cfg)
    load_optimizer_state(fresh, state)
    return fresh


def _full(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor: gathers an FSDP2 shard (a collective: every rank calls it in the same order)."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _like(full: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``full`` placed like parameter ``p`` (sharded again under FSDP2)."""
    if hasattr(p, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(full.to(p.device), p.device_mesh, p.placements)
    return full.to(p.device)
