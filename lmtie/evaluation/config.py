"""Typed configs of ``lmtie-eval-lm`` and ``lmtie-generate``; flags derive from these fields."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from lmtie.config import MAX_POSITIONS, field, validate_ranges
from lmtie.errors import UserError


@dataclass
class EvalLMConfig:
    """Scoring a split or a text file; unset window options come from the checkpoint's training data config."""

    path: Optional[str] = field(None, "checkpoint to evaluate (checkpoint_best.safetensors; a .pt name is accepted), "
                                      "or a Hugging Face save_pretrained directory")
    gen_subset: str = field("test", "data-bin split to score")
    input: Optional[str] = field(None, "score this raw UTF-8 text file with the checkpoint's own tokenizer "
                                       "instead of a DATA_BIN split")
    bytes_from: Optional[str] = field(None, "the raw text file a DATA_BIN split was made from: its bytes and words "
                                            "give bits per byte and word-level perplexity where the data-bin has "
                                            "no lmtie manifest (a plain fairseq data-bin)")
    tokens_per_sample: Optional[int] = field(None, "longest model input per window (default: the training value)",
                                              min=1, max=MAX_POSITIONS)
    context_window: int = field(0, "tokens of already-scored text each window sees before the tokens it scores; "
                                   "must be < --tokens-per-sample", min=0)
    sample_break_mode: Optional[Literal["none", "complete", "complete_doc", "eos"]] = field(
        None, "where context resets: none (never), complete_doc (empty lines), eos (every line), complete "
              "(whole lines packed into samples); default: the training value")
    window_alignment: Literal["fairseq", "document"] = field(
        "fairseq", "fairseq: fairseq-eval-lm's windows (blocks of T - C from position 0, each after up to C tokens "
                   "of context, across documents); document: context never crosses a document, whose first window "
                   "scores T tokens")
    batch_size: Optional[int] = field(None, "windows per batch", min=1, aliases=("--max-sentences",))
    max_tokens: Optional[int] = field(8192, "padded tokens per batch", min=1)
    softmax_batch: int = field(4096, "positions sent through the output layer at once (bounds logits memory)", min=1)
    output_word_probs: bool = field(False, "print every token with its log2 probability, one line per text line")
    results_path: Optional[str] = field(None, "directory to write the metrics JSON (and word probs) into")
    device: Optional[str] = field(None, "cpu, cuda or cuda:N (default: cuda when available)")
    bf16: bool = field(False, "bfloat16 autocast for the model (GPUs, CPUs with bf16 instructions); the softmax "
                              "and the sums stay in fp32/fp64")

    def __post_init__(self) -> None:
        validate_ranges(self)

    def validate(self) -> None:
        """What the ranges cannot say: a checkpoint is needed, and --results-path must be able to be a directory."""
        if not self.path:
            raise UserError("--path is required: the checkpoint to evaluate")
        if self.input and self.bytes_from:
            raise UserError("--bytes-from counts the raw text of a DATA_BIN split; --input FILE counts its own bytes")
        if self.results_path:
            _check_results_dir(Path(self.results_path))


def _check_results_dir(path: Path) -> None:
    """Refuse, before any work, a --results-path that is a file or lies under one."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == path else f"lies under {p}, which is a file"
                raise UserError(f"--results-path {path}: {what}; pass a directory (it is created if missing)")
            return


@dataclass
class GenerateConfig:
    """Sampling (or greedy decoding) from a checkpoint."""

    path: Optional[str] = field(None, "checkpoint to sample from, or a Hugging Face save_pretrained directory")
    prompt: str = field("", "text to continue (empty: start a new line)")
    max_new_tokens: int = field(64, "tokens to generate per sample", min=0)
    temperature: float = field(1.0, "divide logits by this before sampling (> 0)", min=0)
    top_k: int = field(0, "sample only among the k most likely tokens (0: all)", min=0)
    top_p: float = field(1.0, "sample only from the smallest set whose probability reaches p (1: all)", gt=0, max=1)
    seed: int = field(1, "random seed; the same seed gives the same samples", min=0, max=2**63 - 1)
    num_samples: int = field(1, "independent samples, decoded as one batch", min=1)
    greedy: bool = field(False, "always take the most likely token (ignores temperature, top-k, top-p)")
    kv_cache: bool = field(True, "reuse keys/values of earlier tokens (--no-kv-cache re-runs the whole prefix)")
    device: Optional[str] = field(None, "cpu, cuda or cuda:N (default: cuda when available)")

    def __post_init__(self) -> None:
        validate_ranges(self)

    def validate(self) -> None:
        if not self.path:
            raise UserError("--path is required: the checkpoint to sample from")
        if not self.greedy and self.temperature <= 0:
            raise UserError(f"--temperature {self.temperature} must be > 0 (use --greedy for argmax decoding)")


@dataclass
class TranslateConfig:
    """Translating a data-bin split (``lmtie-generate DATA``) or stdin (``lmtie-interactive DATA``); fairseq's names."""

    path: Optional[str] = field(None, "checkpoint of a translation model (checkpoint_best.safetensors)")
    gen_subset: str = field("test", "split to translate and score")
    source_lang: Optional[str] = field(None, "source language (default: the checkpoint's)", aliases=("-s",))
    target_lang: Optional[str] = field(None, "target language (default: the checkpoint's)", aliases=("-t",))
    beam: int = field(5, "beam size (1 = greedy)", min=1, max=1024)
    nbest: int = field(1, "hypotheses printed per sentence (<= --beam)", min=1)
    lenpen: float = field(1.0, "length penalty: a finished hypothesis scores sum(log p) / len**lenpen", min=0)
    max_len_a: float = field(0.0, "generate at most max_len_a * source length + max_len_b tokens", min=0)
    max_len_b: int = field(200, "see --max-len-a", min=1)
    min_len: int = field(1, "no </s> before this many tokens", min=0)
    unkpen: float = field(0.0, "subtract this from the log-probability of <unk>", min=0)
    batch_size: Optional[int] = field(None, "sentences per batch", min=1, aliases=("--max-sentences",))
    max_tokens: Optional[int] = field(4096, "source tokens per batch (padded)", min=1)
    scoring: Literal["sacrebleu", "none"] = field("sacrebleu", "score the hypotheses: BLEU and chrF by sacrebleu "
                                                               "(pip install lmtie[mt]), or none")
    quiet: bool = field(False, "print only the scores, not the S-/T-/H-/D-/P- lines")
    kv_cache: bool = field(True, "decode one token per step from the cache (--no-kv-cache re-decodes the prefix)")
    results_path: Optional[str] = field(None, "directory to write generate-SUBSET.txt and the scores JSON into")
    device: Optional[str] = field(None, "cpu, cuda or cuda:N (default: cuda when available)")

    def __post_init__(self) -> None:
        validate_ranges(self)

    def validate(self) -> None:
        if not self.path:
            raise UserError("--path is required: the checkpoint of a translation model")
        if self.nbest > self.beam:
            raise UserError(f"--nbest {self.nbest} is larger than --beam {self.beam}; raise --beam or lower --nbest")
        if self.min_len > self.max_len_b:
            raise UserError(f"--min-len {self.min_len} is larger than --max-len-b {self.max_len_b}: no hypothesis "
                            "could end")
        if self.results_path:
            _check_results_dir(Path(self.results_path))
