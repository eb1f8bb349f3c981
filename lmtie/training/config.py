"""Typed configs of the training components; ``lmtie-train`` derives its flags from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from lmtie.config import MAX_POSITIONS, field, validate_ranges
from lmtie.errors import UserError


@dataclass
class DataConfig:
    """Which corpus and how it is cut into blocks and batches (fairseq's language_modeling task)."""

    data: Optional[str] = field(None, "DATA_BIN directory (default: the embedded corpus, preprocessed on first use)",
                                cli=False)
    tokens_per_sample: int = field(128, "tokens per block (max sequence length)", min=1, max=MAX_POSITIONS)
    sample_break_mode: Literal["none", "complete", "complete_doc", "eos"] = field(
        "none", "how blocks are cut: fixed length (none), whole lines (complete), one line each (eos)")
    batch_size: Optional[int] = field(16, "blocks per batch (per process)", min=1, aliases=("--max-sentences",))
    max_tokens: Optional[int] = field(None, "tokens per batch instead of --batch-size", min=1)
    train_subset: str = field("train", "split to train on")
    valid_subset: str = field("valid", "split to validate on ('' to disable)")

    def __post_init__(self) -> None:
        validate_ranges(self)


@dataclass
class OptimizationConfig:
    """Optimiser, schedule and stopping rule."""

    optimizer: Literal["adamw", "adam"] = field("adamw", "optimiser (adam = adamw with decoupled decay, as fairseq)")
    lr: float = field(5e-4, "peak learning rate", min=0)
    adam_betas: tuple = field((0.9, 0.98), "Adam betas, e.g. '(0.9, 0.98)'", min=0, lt=1, length=2)
    adam_eps: float = field(1e-8, "Adam epsilon", min=0)
    weight_decay: float = field(0.01, "decoupled weight decay on matrices (never on norms or biases)", min=0)
    embedding_weight_decay: float = field(0.0, "weight decay on embed_tokens / embed_out / positions (explicit)", min=0)
    clip_norm: float = field(0.0, "clip the global gradient norm to this value (0 = no clipping)", min=0)
    update_freq: int = field(1, "accumulate gradients over this many batches per update", min=1)
    lr_scheduler: Literal["inverse_sqrt", "cosine", "fixed"] = field("inverse_sqrt", "learning-rate schedule")
    warmup_updates: int = field(0, "linear warm-up from --warmup-init-lr to --lr over this many updates", min=0)
    warmup_init_lr: float = field(1e-7, "learning rate at update 0 when warming up", min=0)
    min_lr: float = field(0.0, "floor of the cosine schedule", min=0)
    max_update: int = field(0, "stop after this many updates (0 = no limit)", min=0)
    max_epoch: int = field(0, "stop after this many epochs (0 = no limit)", min=0)
    stop_time_hours: float = field(0.0, "stop after this much wall time (0 = no limit)", min=0)
    max_nonfinite_updates: int = field(5, "stop after this many consecutive updates with a non-finite loss or gradient",
                                       min=1)

    def __post_init__(self) -> None:
        validate_ranges(self)
        if self.lr_scheduler == "cosine" and self.max_update <= 0:
            raise UserError("--lr-scheduler cosine needs --max-update N > 0: the schedule decays to --min-lr over "
                            "N updates; set --max-update or pick --lr-scheduler inverse_sqrt")


@dataclass
class CheckpointConfig:
    """Where and when checkpoints are written, and what a restore keeps."""

    save_dir: str = field("checkpoints", "directory for checkpoint_*.safetensors, config.json and metrics.jsonl")
    restore_file: str = field("checkpoint_last", "checkpoint to resume from (relative to --save-dir unless a path)")
    save_interval_updates: int = field(0, "also write checkpoint_EPOCH_UPDATE every N updates (0 = off)", min=0)
    keep_interval_updates: int = field(-1, "keep only the last N interval checkpoints (-1 = all)", min=-1)
    keep_last_epochs: int = field(-1, "keep only the last N epoch checkpoints (-1 = all)", min=-1)
    no_epoch_checkpoints: bool = field(False, "write no checkpointEPOCH files")
    reset_optimizer: bool = field(False, "restore weights only: fresh optimiser, schedule and data position")
    reset_output_projection: bool = field(
        False, "allow restoring a checkpoint whose tie flag differs (the output projection is re-initialised)")
    init_from: Optional[str] = field(
        None, "start from this model's weights (a Hugging Face save_pretrained directory or an lmtie checkpoint): its "
              "config, resized to DATA_BIN's vocabulary with the tie kept; fresh optimiser; ignored once --save-dir "
              "has a checkpoint to resume")

    def __post_init__(self) -> None:
        validate_ranges(self)


@dataclass
class RunConfig:
    """Everything about the run that is not the model, data, optimiser or checkpoints."""

    arch: str = field("transformer_lm_tiny", "named model size; explicit model flags override it")
    seed: int = field(1, "seed of initialisation, data order and dropout", min=0, max=2**63 - 1)
    device: str = field("auto", "cpu, cuda, cuda:N or auto")
    bf16: bool = field(False, "bfloat16 autocast (GPUs, and CPUs with bf16 matmul instructions: AVX512-BF16, AMX)")
    compile: bool = field(False, "torch.compile the model (costs start-up time)")
    ddp_backend: Literal["pytorch_ddp", "fully_sharded"] = field(
        "pytorch_ddp", "under torchrun: DDP, or FSDP2 fully_shard for models that do not fit one device")
    log_format: Literal["tqdm", "json", "simple", "none"] = field("tqdm", "progress output")
    log_interval: int = field(10, "log training metrics every N updates", min=1)
    tensorboard_logdir: Optional[str] = field(None, "also write TensorBoard scalars here (needs tensorboard)")
    validate_interval_updates: int = field(0, "validate every N updates (0 = only at epoch ends)", min=0)
    patience: int = field(-1, "stop when valid loss has not improved for N validations (-1 = off)", min=-1)

    def __post_init__(self) -> None:
        validate_ranges(self)
