"""Typed configs of the training components; ``lmtie-train`` derives its flags from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from lmtie.config import MAX_POSITIONS, field, validate_ranges
from lmtie.errors import UserError


@dataclass
class DataConfig:
    """Which corpus, which task reads it, and how it is cut into blocks and batches."""

    data: Optional[str] = field(None, "DATA_BIN directory (default: the embedded corpus, preprocessed on first use)",
                                cli=False)
    task: Optional[Literal["language_modeling", "translation"]] = field(
        None, "language_modeling (blocks of one token stream) or translation (sentence pairs SPLIT.SRC-TGT.LANG); "
              "default: the task of the --arch's model family")
    source_lang: Optional[str] = field(None, "translation: source language suffix (default: the pair DATA_BIN holds)",
                                       aliases=("-s",))
    target_lang: Optional[str] = field(None, "translation: target language suffix (default: the pair DATA_BIN holds)",
                                       aliases=("-t",))
    eval_bleu: bool = field(False, "translation: at each validation also translate the valid split and log its "
                                   "BLEU and chrF (sacrebleu); --best-checkpoint-metric bleu then picks the best")
    eval_bleu_args: str = field('{"beam": 4}', "translation: the --eval-bleu search as JSON: beam, lenpen, max_len_a, "
                                               "max_len_b, min_len (fairseq's flag)")
    tokens_per_sample: int = field(128, "tokens per block (max sequence length)", min=1, max=MAX_POSITIONS)
    sample_break_mode: Literal["none", "complete", "complete_doc", "eos"] = field(
        "none", "how blocks are cut: fixed length (none), whole lines (complete), one line each (eos)")
    batch_size: Optional[int] = field(None, "blocks (or sentence pairs) per batch, per process (default 16 unless "
                                            "--max-tokens is given)", min=1, aliases=("--max-sentences",))
    max_tokens: Optional[int] = field(None, "padded tokens per batch, per process (with --batch-size: whichever "
                                            "limit is reached first, as fairseq)", min=1)
    train_subset: str = field("train", "split to train on")
    valid_subset: str = field("valid", "split(s) to validate on, comma-separated: each is validated, the first "
                                       "picks checkpoint_best ('' to disable)")
    batch_size_valid: Optional[int] = field(None, "blocks per validation batch (default: --batch-size)", min=1)
    max_tokens_valid: Optional[int] = field(None, "tokens per validation batch (default: --max-tokens)", min=1)
    required_batch_size_multiple: int = field(
        1, "under --max-tokens, cut each batch to a multiple of N blocks, as fairseq (whose default is 8)", min=1)

    def __post_init__(self) -> None:
        validate_ranges(self)
        if self.batch_size is None and self.max_tokens is None:
            self.batch_size = 16
        self.bleu_search()  # a malformed --eval-bleu-args is refused before anything runs

    def bleu_search(self) -> dict:
        """--eval-bleu-args as a dict of search settings."""
        import json

        try:
            args = json.loads(self.eval_bleu_args)
        except json.JSONDecodeError as e:
            raise UserError(f"--eval-bleu-args {self.eval_bleu_args!r}: not JSON ({e.msg}); e.g. '{{\"beam\": 4}}'")
        known = {"beam", "lenpen", "max_len_a", "max_len_b", "min_len"}
        if not isinstance(args, dict) or set(args) - known:
            raise UserError(f"--eval-bleu-args {self.eval_bleu_args!r}: a JSON object of {', '.join(sorted(known))}")
        return args


# The optimiser and schedule fields a recipe sets (--recipe): None means "the recipe's value". The
# fairseq recipe is lmtie's behaviour before the auto recipe existed: fairseq's defaults (AdamW with
# decoupled decay 0.01 on matrices). The auto recipe is lmtie.training.recipe.
FAIRSEQ_RECIPE = dict(optimizer="adamw", lr=5e-4, adam_betas=(0.9, 0.98), adam_eps=1e-8, weight_decay=0.01,
                      embedding_weight_decay=0.0, clip_norm=0.0, lr_scheduler="inverse_sqrt", warmup_updates=0,
                      warmup_init_lr=1e-7, min_lr=0.0)


def _recipe_help(text: str, name: str) -> str:
    return f"{text} (fairseq recipe: {FAIRSEQ_RECIPE[name]!r}; auto: see --recipe)"


@dataclass
class OptimizationConfig:
    """Optimiser, schedule and stopping rule.

    The recipe fields default to None: filled from ``recipe`` (:func:`lmtie.training.recipe.resolve`).
    ``recipe`` None picks ``fairseq`` when any recipe field is given and ``auto`` otherwise, so a
    fairseq command line behaves as before and one with no optimiser flag gets the auto recipe.
    """

    recipe: Optional[Literal["auto", "fairseq"]] = field(
        None, "defaults of the optimiser and schedule flags: auto (fitted to --max-update and the model width, "
              "see lmtie/training/recipe.py) or fairseq (fairseq's); default: fairseq when any of those flags is "
              "given, else auto. Flags given always win")
    optimizer: Optional[Literal["adamw", "adam"]] = field(
        None, _recipe_help("optimiser (adam = adamw with decoupled decay, as fairseq)", "optimizer"))
    lr: Optional[float] = field(None, _recipe_help("peak learning rate", "lr"), min=0)
    adam_betas: Optional[tuple] = field(None, _recipe_help("Adam betas, e.g. '(0.9, 0.98)'", "adam_betas"),
                                        min=0, lt=1, length=2)
    adam_eps: Optional[float] = field(None, _recipe_help("Adam epsilon", "adam_eps"), min=0)
    weight_decay: Optional[float] = field(
        None, _recipe_help("decoupled weight decay on matrices (never on norms or biases)", "weight_decay"), min=0)
    embedding_weight_decay: Optional[float] = field(
        None, _recipe_help("weight decay on embed_tokens / embed_out / positions (explicit)", "embedding_weight_decay"),
        min=0)
    clip_norm: Optional[float] = field(
        None, _recipe_help("clip the global gradient norm to this value (0 = no clipping)", "clip_norm"), min=0)
    criterion: Literal["cross_entropy", "label_smoothed_cross_entropy"] = field(
        "cross_entropy", "the training loss (validation always measures the plain cross-entropy, for perplexity)")
    label_smoothing: float = field(0.0, "label_smoothed_cross_entropy: target mass spread over the other classes "
                                        "(fairseq's epsilon; 0.1 in Vaswani et al. 2017)", min=0, lt=1)
    update_freq: int = field(1, "accumulate gradients over this many batches per update", min=1)
    lr_scheduler: Optional[Literal["inverse_sqrt", "cosine", "fixed", "polynomial_decay", "reduce_lr_on_plateau"]] = \
        field(None, _recipe_help("learning-rate schedule", "lr_scheduler"))
    warmup_updates: Optional[int] = field(
        None, _recipe_help("linear warm-up from --warmup-init-lr to --lr over this many updates", "warmup_updates"),
        min=0)
    warmup_init_lr: Optional[float] = field(
        None, _recipe_help("learning rate at update 0 when warming up", "warmup_init_lr"), min=0)
    min_lr: Optional[float] = field(None, _recipe_help("floor of the cosine schedule", "min_lr"), min=0)
    # the schedules' own settings below act only under an explicit --lr-scheduler: they pick no recipe
    end_learning_rate: float = field(0.0, "polynomial_decay: the learning rate at --total-num-update", min=0)
    power: float = field(1.0, "polynomial_decay: exponent of the decay (1 = linear)", min=0)
    total_num_update: Optional[int] = field(None, "polynomial_decay: updates to decay over (default: --max-update)",
                                            min=1)
    lr_shrink: float = field(0.1, "reduce_lr_on_plateau: multiply the learning rate by this on a plateau", gt=0, max=1)
    lr_patience: int = field(0, "reduce_lr_on_plateau: epochs without improvement before shrinking", min=0)
    lr_threshold: float = field(1e-4, "reduce_lr_on_plateau: relative improvement that counts", min=0)
    stop_min_lr: float = field(-1.0, "stop once the learning rate after warm-up is <= this (-1 = off)", min=-1)
    max_update: int = field(0, "stop after this many updates (0 = no limit)", min=0)
    max_epoch: int = field(0, "stop after this many epochs (0 = no limit)", min=0)
    stop_time_hours: float = field(0.0, "stop after this much wall time (0 = no limit)", min=0)
    max_nonfinite_updates: int = field(5, "stop after this many consecutive updates with a non-finite loss or gradient",
                                       min=1)

    def __post_init__(self) -> None:
        validate_ranges(self)
        if self.recipe is None:
            self.recipe = "fairseq" if any(getattr(self, k) is not None for k in FAIRSEQ_RECIPE) else "auto"
        if self.recipe == "fairseq":
            for k, v in FAIRSEQ_RECIPE.items():
                if getattr(self, k) is None:
                    setattr(self, k, v)
        if self.label_smoothing > 0 and self.criterion != "label_smoothed_cross_entropy":
            raise UserError(f"--label-smoothing {self.label_smoothing:g} applies to --criterion "
                            "label_smoothed_cross_entropy; pass that criterion too")
        if self.lr_scheduler == "cosine" and self.max_update <= 0:
            raise UserError("--lr-scheduler cosine needs --max-update N > 0: the schedule decays to --min-lr over "
                            "N updates; set --max-update or pick --lr-scheduler inverse_sqrt")
        if self.lr_scheduler == "polynomial_decay" and self.total_num_update is None and self.max_update <= 0:
            raise UserError("--lr-scheduler polynomial_decay needs --total-num-update N or --max-update N: the "
                            "schedule decays to --end-learning-rate over N updates")


@dataclass
class CheckpointConfig:
    """Where and when checkpoints are written, and what a restore keeps."""

    save_dir: str = field("checkpoints", "directory for checkpoint_*.safetensors, config.json and metrics.jsonl")
    restore_file: str = field("checkpoint_last", "checkpoint to resume from (relative to --save-dir unless a path)")
    save_interval: int = field(1, "write checkpoint_last and checkpointEPOCH at the end of every N epochs", min=1)
    save_interval_updates: int = field(0, "also write checkpoint_EPOCH_UPDATE every N updates (0 = off)", min=0)
    keep_interval_updates: int = field(-1, "keep only the last N interval checkpoints (-1 = all)", min=-1)
    keep_last_epochs: int = field(-1, "keep only the last N epoch checkpoints (-1 = all)", min=-1)
    no_epoch_checkpoints: bool = field(False, "write no checkpointEPOCH files")
    no_last_checkpoints: bool = field(False, "write no checkpoint_last (a rerun then starts afresh, as fairseq)")
    no_save: bool = field(False, "write no checkpoints at all (config.json and metrics.jsonl are still written)")
    best_checkpoint_metric: Literal["loss", "nll_loss", "ppl", "bleu"] = field(
        "loss", "valid metric that picks checkpoint_best (loss, nll_loss and ppl rank the same: ppl = 2**loss; bleu "
                "needs --eval-bleu and --maximize-best-checkpoint-metric, as fairseq)")
    maximize_best_checkpoint_metric: bool = field(False, "the best checkpoint is the one with the highest metric")
    reset_optimizer: bool = field(False, "on restore, fresh optimiser state and update count (so the schedule "
                                         "restarts), and no best checkpoint yet, as fairseq")
    reset_lr_scheduler: bool = field(False, "on restore, fresh schedule state (reduce_lr_on_plateau: its shrinks); "
                                            "step-based schedules follow the update count")
    reset_dataloader: bool = field(False, "on restore, start again at epoch 1, batch 0")
    reset_meters: bool = field(False, "on restore, fresh token and time counters, best valid loss and patience")
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
    validate_interval: int = field(1, "validate at the end of every N epochs", min=1)
    validate_interval_updates: int = field(0, "validate every N updates (0 = only at epoch ends)", min=0)
    disable_validation: bool = field(False, "never validate (no checkpoint_best)")
    checkpoint_activations: bool = field(False, "recompute each layer's activations in the backward pass "
                                                "(torch.utils.checkpoint): less memory, each block's forward run twice")
    patience: int = field(-1, "stop once valid loss has not improved for N validations in a row (as fairseq; "
                                 "0 or -1 = off)", min=-1)

    def __post_init__(self) -> None:
        validate_ranges(self)
