"""The ablation API: plan arms x seeds over one base config, run what is unfinished, report.

For each seed every arm gets the same data order (a function of the seed alone), the same
initial values for every tensor both arms have (the untied ``embed_out`` is drawn last, at the
tied matrix's scale) and the same dropout stream, so a paired difference measures the tie.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lmtie.ablation.arms import ArmFn, resolve_arms
from lmtie.ablation.config import AblationConfig
from lmtie.ablation.report import plot_curves, write_results
from lmtie.ablation.runs import (PREEMPTED, RunSpec, is_finished, launch, read_result, with_save_dir,
                                 write_spec)
from lmtie.config import to_dict
from lmtie.data import ensure_default_data_bin, load_manifest
from lmtie.errors import UserError
from lmtie.models import arch_overrides, family_of_arch, family_of_config
from lmtie.training.config import CheckpointConfig, DataConfig, OptimizationConfig, RunConfig
from lmtie.training.recipe import resolve as resolve_recipe
from lmtie.training.setup import resolve_task
from lmtie.training.tasks import make_task

_TIE = "share_decoder_input_output_embed"


def base_config(model: dict, data: DataConfig, run: RunConfig):
    """``--arch`` defaults under the explicit model flags, sized to the data's dictionaries (through the
    task: one for a language model, two for translation), as the config dataclass of the arch's family."""
    for flag in (_TIE, "share_all_embeddings"):
        if flag in model:
            raise UserError(f"--{flag.replace('_', '-')} is set by each arm (tied, untied, all-tied); drop it and "
                            "choose the arms with --arms")
    family = family_of_arch(run.arch)
    data = resolve_task(data, family)
    load_manifest(data.data)  # a clear error for a missing or unprocessed DATA_BIN
    return family.config_class(**make_task(data).model_values({**arch_overrides(run.arch), **model}))


def _checked(ablation: AblationConfig, data: DataConfig, optim: OptimizationConfig,
             ckpt: CheckpointConfig) -> tuple[DataConfig, OptimizationConfig]:
    ablation.validate()
    if ckpt.save_dir != CheckpointConfig.save_dir:
        raise UserError(f"--save-dir {ckpt.save_dir}: each run's directory is OUTPUT/runs/ARM-seedN; "
                        "drop --save-dir and give --output")
    if optim.max_update <= 0 and optim.stop_time_hours <= 0 and optim.max_epoch <= 0:
        raise UserError("give each run a budget: --max-update N, --stop-time-hours H or --max-epoch N")
    if data.data is None:
        data = dataclasses.replace(data, data=str(ensure_default_data_bin()))
    return data, optim


def _validate_every(run: RunConfig, optim: OptimizationConfig, points: int) -> RunConfig:
    """Validate ``points`` times per run when the user did not say how often (for the curves)."""
    if run.validate_interval_updates or not optim.max_update or not points:
        return run
    return dataclasses.replace(run, validate_interval_updates=max(1, optim.max_update // points))


def plan_runs(ablation: AblationConfig, model: dict | None = None, data: DataConfig | None = None,
              optim: OptimizationConfig | None = None, ckpt: CheckpointConfig | None = None,
              run: RunConfig | None = None) -> list[RunSpec]:
    """Every (seed, arm) run, seed-major so that an interrupted ablation has whole pairs first."""
    model, run, ckpt = dict(model or {}), run or RunConfig(), ckpt or CheckpointConfig()
    data, optim = _checked(ablation, data or DataConfig(), optim or OptimizationConfig(), ckpt)
    run = _validate_every(run, optim, ablation.curve_points)
    base = base_config(model, data, run)
    optim = resolve_recipe(optim, base.decoder_embed_dim,  # one recipe for every arm, whatever its width
                           family_of_config(base).model_class.auto_lr_times_width)
    arms = resolve_arms(ablation.arms, family_of_config(base).task)
    evaluation = {"train_eval_tokens": ablation.train_eval_tokens, "eval_context_window": ablation.eval_context_window}
    specs = []
    for seed in range(run.seed, run.seed + ablation.seeds):
        for name, fn in arms.items():
            save = with_save_dir(ckpt, Path(ablation.output), f"{name.replace(':', '-')}-seed{seed}")  # untie-at-500
            specs.append(RunSpec(name, seed, _model_dict(fn, base), data, optim, save,
                                 dataclasses.replace(run, seed=seed), evaluation))
    return specs


def _model_dict(fn: ArmFn, base) -> dict:
    cfg = fn(base)
    if type(cfg) is not type(base):
        raise UserError(f"arm {getattr(fn, '__name__', fn)} returned {type(cfg).__name__}, not a "
                        f"{type(base).__name__} (the base config's family)")
    values = to_dict(cfg)
    return {k: v for k, v in values.items() if k not in ("vocab_size", "src_vocab_size", "tgt_vocab_size",
                                                          "padding_idx")}


def run_ablation(ablation: AblationConfig, model: dict | None = None, data: DataConfig | None = None,
                 optim: OptimizationConfig | None = None, ckpt: CheckpointConfig | None = None,
                 run: RunConfig | None = None) -> dict:
    """Run the unfinished runs one after another, then write the report; returns results.json's content.

    Example: ``run_ablation(AblationConfig(output="runs/abl", seeds=3), {"dropout": 0.0},
    DataConfig(data="data-bin/x"), OptimizationConfig(max_update=2000))``.
    """
    specs = plan_runs(ablation, model, data, optim, ckpt, run)
    for spec in specs:
        write_spec(spec)  # checks every earlier run first, before any time is spent
    for i, spec in enumerate(specs, 1):
        if is_finished(spec):
            print(f"[{i}/{len(specs)}] {spec.name}: finished earlier, skipped", flush=True)
            continue
        verb = "resuming" if (spec.save_dir / "checkpoint_last.safetensors").exists() else "training"
        print(f"[{i}/{len(specs)}] {spec.name}: {verb} in {spec.save_dir}", flush=True)
        code = launch(spec.save_dir / "ablation_run.json")
        if code == PREEMPTED:
            print(f"stopped during {spec.name}; run the same command again to continue", flush=True)
            break
        if code != 0:
            raise UserError(f"run {spec.name} failed (exit code {code}; its error is printed above); fix it and "
                            "run the same command again: finished runs are kept")
    return report(ablation, specs, model or {})


def report(ablation: AblationConfig, specs: list[RunSpec], model: dict) -> dict:
    """Write results.{json,csv}, report.md and the plot from the finished runs in ``specs``."""
    output = Path(ablation.output)
    rows = [read_result(s) for s in specs if is_finished(s)]
    missing = [s.name for s in specs if not is_finished(s)]
    arms = list(dict.fromkeys(s.arm for s in specs))
    data = write_results(output, rows, arms, settings(ablation, specs, model), missing)
    print(f"wrote {output / 'report.md'}, results.csv, results.json", flush=True)
    if ablation.plot and rows:
        path = plot_curves(output, rows, arms)
        if path is not None:
            print(f"wrote {path}", flush=True)
    return data


def settings(ablation: AblationConfig, specs: list[RunSpec], model: dict) -> dict:
    """What the report header says about the runs (all specs share everything but arm and seed)."""
    s, o = specs[0], specs[0].optim
    limits = ("max_update", "max_epoch", "stop_time_hours")
    budget = ", ".join(f"--{k.replace('_', '-')} {getattr(o, k)}" for k in limits if getattr(o, k))
    base = to_dict(base_config(model, s.data, s.run))
    arm_changes = {}
    for spec in specs:
        changed = {k: v for k, v in spec.model.items() if k == _TIE or base.get(k) != v}
        arm_changes.setdefault(spec.arm, ", ".join(f"{k}={v}" for k, v in changed.items()))
    cap = ablation.train_eval_tokens
    return {"data": s.data.data, "train_subset": s.data.train_subset, "valid_subset": s.data.valid_subset,
            "arch": s.run.arch, "model_flags": ", ".join(f"{k}={v}" for k, v in model.items()),
            "arm_changes": arm_changes, "budget": budget + f", lr {o.lr} ({o.lr_scheduler})",
            "seeds": sorted({x.seed for x in specs}),
            "scoring": f"tokens per sample {s.data.tokens_per_sample}, context window {ablation.eval_context_window}",
            "train_scope": f"the first {cap:,} tokens (whole lines) of the train split" if cap
            else "the whole train split"}
