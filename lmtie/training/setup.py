"""Everything a training run needs, built and checked before the first update.

Bad input is caught here, before anything is written: a missing or unprocessed DATA_BIN,
an unwritable --save-dir, conflicting flags, or a checkpoint that does not match the data
or the flags.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from lmtie.config import from_dict, to_dict
from lmtie.data import Dictionary, ensure_default_data_bin, load_manifest, tokenizer_identity
from lmtie.errors import UserError
from lmtie.io import remove_stale_temp_files
from lmtie.lock import DirLock, acquire
from lmtie.models import Family, LanguageModel, arch_overrides, check_tie, family_of_arch, unwrap
from lmtie import checkpoint as ckpt_io
from lmtie.training import distributed as dist
from lmtie.training.config import CheckpointConfig, DataConfig, OptimizationConfig, RunConfig
from lmtie.training.recipe import resolve as resolve_recipe
from lmtie.training.tasks import Task, make_task


@dataclass
class TrainSetup:
    family: str
    model_cfg: Any  # the family's config dataclass
    data: DataConfig
    optim: OptimizationConfig
    ckpt: CheckpointConfig
    run: RunConfig
    device: torch.device
    dist: dist.DistInfo
    dictionary: Dictionary  # the target side's: what the model predicts
    train_data: Any  # the task's dataset of the train split
    valid_data: Any
    model: nn.Module
    tokenizer_info: dict
    tokenizer_model: Optional[bytes]
    restore: Optional[ckpt_io.Checkpoint] = None
    lock: Optional[DirLock] = None  # the save dir's lock (rank 0; None on other ranks)
    more_valid: dict = dataclasses.field(default_factory=dict)  # the other --valid-subset splits, by name
    task: Optional[Task] = None  # the --task: batches and the loss of a batch
    src_dictionary: Optional[Dictionary] = None  # translation: the source side's

    def config_dict(self) -> dict:
        return {"model_family": self.family, "model": to_dict(self.model_cfg), "data": to_dict(self.data), "optimization": to_dict(self.optim),
                "checkpoint": to_dict(self.ckpt), "run": to_dict(self.run)}

    def full_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The unsharded state_dict (gathered from every rank under FSDP)."""
        if self.run.ddp_backend == "fully_sharded" and self.dist.enabled:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return unwrap(model).state_dict()


def build(model_overrides: dict, data: DataConfig, optim: OptimizationConfig, ckpt: CheckpointConfig,
          run: RunConfig, exit_stack: Optional[contextlib.ExitStack] = None) -> TrainSetup:
    """Resolve the data, check the flags, lock the save dir, build (or restore) the model, wrap it for torchrun.

    The save dir's lock is ``setup.lock``; ``exit_stack`` (if given) releases it on its exit,
    also when building fails after the lock was taken.
    """
    family = family_of_arch(run.arch)
    family.config_class(**{**arch_overrides(run.arch), **model_overrides})  # model flags checked before any write
    data = resolve_task(data, family)
    _check_best_metric(data, ckpt, run)
    device = _device(run.device)
    info = dist.init_from_env(device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if run.bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise UserError(f"--bf16 (what --fp16, --amp and --memory-efficient-fp16 run as): "
                        f"{torch.cuda.get_device_name(device)} has no bfloat16 and lmtie has no fp16 loss scaling; "
                        "drop the flag to train in fp32")
    data = _resolve_data(data, info)
    load_manifest(data.data)  # a clear error for a missing or unprocessed DATA_BIN
    task = make_task(data, info.world_size)
    if data.task == "translation":  # the pair as inferred, saved with the checkpoints
        data = dataclasses.replace(data, source_lang=task.source_lang, target_lang=task.target_lang)
    src_dictionary, dictionary = task.dictionaries()
    model_cfg = task.fit_model(family.config_class(**task.model_values({**arch_overrides(run.arch), **model_overrides})))
    init = None
    if ckpt.init_from:  # the imported model's config, on DATA_BIN's vocabulary
        from lmtie.interop.init_from import prepare

        init = prepare(ckpt.init_from, family.name, dictionary, model_overrides, data.tokens_per_sample)
        model_cfg = init.cfg
    optim = resolve_recipe(optim, model_cfg.decoder_embed_dim,  # saved with the checkpoints as resolved
                           family.model_class.auto_lr_times_width)
    train_data, valid_sets = _datasets(task, data, run.disable_validation)
    valid_data, more_valid = (valid_sets.pop(next(iter(valid_sets))) if valid_sets else None), valid_sets
    lock = _check_save_dir(Path(ckpt.save_dir), info)
    if lock is not None and exit_stack is not None:
        exit_stack.callback(lock.release)  # also when building fails below
    restore = _find_restore(ckpt)
    torch.manual_seed(run.seed)
    model = family.model_class.build(model_cfg)
    if restore is not None:
        _load_weights(model, restore, dictionary, data, ckpt, src_dictionary)
        model_cfg = model.cfg  # a checkpoint written after --untie-at-update's split holds the untied model
    elif init is not None:
        init.load(model, ckpt.reset_output_projection)
    if info.enabled and getattr(model_cfg, "untie_at_update", 0) and model.untie_due(model_cfg.untie_at_update):
        raise UserError("--untie-at-update under torchrun: the new head would be unknown to DDP/FSDP; train on one "
                        "process, or resume from a checkpoint written after the split")
    # the dropout stream must not depend on how many draws initialisation made (an untied head
    # makes more), so the tied and untied arms of an ablation see the same dropout masks
    torch.manual_seed(int(np.random.SeedSequence([run.seed, 1]).generate_state(1)[0]))  # not seed+1's init stream
    model.to(device)
    if run.checkpoint_activations:  # before any wrapper, so DDP/FSDP see the recomputing blocks
        from lmtie.training.activations import checkpoint_activations

        checkpoint_activations(model)
    model = dist.wrap(model, info, run.ddp_backend, device)
    if run.compile:
        model = torch.compile(model)
    check_tie(model)
    tok_info, tok_model = tokenizer_identity(Path(data.data))
    return TrainSetup(family.name, model_cfg, data, optim, ckpt, run, device, info, dictionary, train_data, valid_data, model,
                      tok_info, tok_model, restore, lock, more_valid, task, src_dictionary)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return torch.device(name)


def resolve_task(data: DataConfig, family: Family) -> DataConfig:
    """--task, defaulting to the --arch family's; a family of another task is refused."""
    task = getattr(family, "task", "language_modeling")
    if data.task is not None and data.task != task:
        raise UserError(f"--task {data.task}: --arch gives a {family.name} model, which is for {task}; pass --task "
                        f"{task} or an --arch for {data.task}")
    if task != "language_modeling" and data.data is None:
        raise UserError(f"--task {task} needs a DATA_BIN of sentence pairs (lmtie-preprocess --source-lang SRC "
                        "--target-lang TGT ...); the embedded corpus is for language modelling")
    if task == "language_modeling" and (data.source_lang or data.target_lang or data.eval_bleu):
        raise UserError("--source-lang/--target-lang/--eval-bleu are for --task translation; drop them for a "
                        "language model")
    return dataclasses.replace(data, task=task)


def _check_best_metric(data: DataConfig, ckpt: CheckpointConfig, run: RunConfig) -> None:
    if ckpt.best_checkpoint_metric == "bleu" and not (data.eval_bleu and ckpt.maximize_best_checkpoint_metric):
        raise UserError("--best-checkpoint-metric bleu needs --eval-bleu (to measure it) and "
                        "--maximize-best-checkpoint-metric (higher is better), as fairseq")
    if data.eval_bleu and run.ddp_backend == "fully_sharded":
        raise UserError("--eval-bleu searches with the whole model on each process; under --ddp-backend "
                        "fully_sharded drop it and score checkpoints with lmtie-generate DATA --path CKPT")


def _resolve_data(data: DataConfig, info: dist.DistInfo) -> DataConfig:
    if data.data is not None:
        return data
    if info.is_main:
        path = ensure_default_data_bin()
    dist.barrier()
    if not info.is_main:
        path = ensure_default_data_bin()
    return dataclasses.replace(data, data=str(path))


def _datasets(task: Task, data: DataConfig, no_valid: bool = False) -> tuple[Any, dict]:
    """The train split and the --valid-subset splits by name, in order (none with --disable-validation); a
    subset named explicitly must exist, the default 'valid' may be absent."""
    manifest = load_manifest(data.data)
    manifest_splits = {name.split(".")[0] for name in manifest.get("splits", {})}  # train.de-en.de -> train
    if data.train_subset not in manifest_splits:
        raise UserError(f"{data.data}: no '{data.train_subset}' split; run lmtie-preprocess with --trainpref")
    make = task.dataset
    train = make(data.train_subset)
    if len(train) == 0:
        raise UserError(f"{data.data}: the '{data.train_subset}' split is empty")
    names = [] if no_valid else [n for n in data.valid_subset.split(",") if n]
    missing = [n for n in names if n not in manifest_splits]
    if missing and names != [DataConfig.valid_subset]:
        raise UserError(f"--valid-subset {data.valid_subset}: {data.data} has no '{missing[0]}' split (it has "
                        f"{', '.join(sorted(manifest_splits))}); name existing splits or pass --disable-validation")
    return train, {n: make(n) for n in names if n not in missing}


LOCK_FILE = ".lock"


def _check_save_dir(save_dir: Path, info: dist.DistInfo) -> Optional[DirLock]:
    """Fail now, not after an hour of training, if checkpoints cannot be written or another run
    uses the directory; return its lock (rank 0; None on the other ranks), then remove the
    temporary files of writes a kill cut short (no live writer can own them now)."""
    if not info.is_main:
        return None
    try:
        save_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=save_dir, prefix=".write-test"):
            pass
        lock = acquire(save_dir / LOCK_FILE, f"--save-dir {save_dir}",
                       "wait for that run to finish (or stop it), or choose another --save-dir")
    except OSError as e:
        raise UserError(f"--save-dir {save_dir}: cannot write there ({e.strerror}); choose a writable directory")
    try:
        remove_stale_temp_files(save_dir)
    except BaseException:
        lock.release()
        raise
    return lock


def _dict_name(data: DataConfig, side: str) -> str:
    lang = data.source_lang if side == "source" else data.target_lang
    return f"dict.{lang}.txt" if data.task == "translation" and lang else "dict.txt"


def _find_restore(ckpt: CheckpointConfig) -> Optional[ckpt_io.Checkpoint]:
    """fairseq behaviour: resume from --restore-file (default checkpoint_last) when it exists."""
    name = ckpt.restore_file
    path = Path(name) if (os.sep in name or Path(name).is_absolute()) else Path(ckpt.save_dir) / name
    resolved = ckpt_io.resolve(path)
    if not resolved.exists():
        if ckpt.restore_file != CheckpointConfig.restore_file:
            raise UserError(f"--restore-file {name}: not found (looked for {resolved})")
        return None
    return ckpt_io.load(resolved)


def _load_weights(model: LanguageModel, ck: ckpt_io.Checkpoint, dictionary: Dictionary,
                  data: DataConfig, ckpt: CheckpointConfig, src_dictionary: Optional[Dictionary] = None) -> None:
    if ck.dictionary != dictionary:
        raise UserError(f"{ck.path}: trained with another vocabulary ({len(ck.dictionary)} symbols) than "
                        f"{data.data}'s {_dict_name(data, 'target')} ({len(dictionary)}); use the matching DATA_BIN "
                        "or a new --save-dir")
    saved_src = ck.src_dictionary if ck.src_dictionary is not None else ck.dictionary
    if src_dictionary is not None and saved_src != src_dictionary:
        raise UserError(f"{ck.path}: trained with another source vocabulary ({len(saved_src)} symbols) than "
                        f"{data.data}'s {_dict_name(data, 'source')} ({len(src_dictionary)}); use the matching "
                        "DATA_BIN or a new --save-dir")
    saved_family = ckpt_io.model_family(ck)
    if saved_family != model.family:
        raise UserError(f"{ck.path}: a {saved_family} model, but --arch gives a {model.family} model; pass an --arch "
                        "of the checkpoint's family or use a new --save-dir")
    saved, now = to_dict(ckpt_io.model_config(ck)), to_dict(model.cfg)
    tie = "share_decoder_input_output_embed"
    if now[tie] and not saved[tie] and 0 < saved.get("untie_at_update", 0) == now.get("untie_at_update"):
        model.untie_()  # the run split at --untie-at-update before this checkpoint: continue untied
        now = to_dict(model.cfg)
    flip = saved[tie] != now[tie]
    if flip and not ckpt.reset_output_projection:
        raise UserError(f"{ck.path}: share_decoder_input_output_embed={saved[tie]} in the checkpoint but not in the "
                        "flags; pass --reset-output-projection to re-initialise the output projection, or use a new "
                        "--save-dir")
    diff = [k for k in saved if k != tie and saved[k] != now[k]]
    if diff:
        k = diff[0]
        raise UserError(f"{ck.path}: model flag --{k.replace('_', '-')} is {saved[k]} in the checkpoint but "
                        f"{now[k]} now; pass the same model flags or use a new --save-dir")
    ckpt_io.check_sizes(ck, ckpt_io.model_config(ck))  # the file's tensors are what its config says
    head = model.output_head_key
    state = {k: v for k, v in ck.model_state.items() if not (flip and k == head)}
    model.load_state_dict(state, strict=not flip)
    if flip:
        ck.optim_state.pop(head, None)  # optimiser state is keyed by parameter name
