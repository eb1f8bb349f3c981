"""fairseq's flags in lmtie's tools: one table says, for each, whether lmtie implements it, accepts it with
a one-line notice (it is moot here), or refuses it naming what to use instead.

:func:`translate` reads a command line against the table before argparse sees it: a refused flag stops
with one line, a noticed one is dropped (or replaced by lmtie's spelling, e.g. ``--fp16`` by ``--bf16``)
after its notice, an implemented one is left to the parser. ``python -m lmtie.cli.fairseq_flags``
prints the table (Markdown), which the README and the notes quote.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable, Literal, Optional, Sequence

from lmtie.errors import UserError

TRAIN, EVAL, PREP = "train", "eval-lm", "preprocess"
ALL = (TRAIN, EVAL, PREP)


@dataclass(frozen=True)
class FairseqFlag:
    """One fairseq flag (with ``value``: one of its values; ``"*"`` any other) and what lmtie does with it."""

    flag: str
    status: Literal["implemented", "notice", "refused"]
    says: str  # implemented: what it does; notice: the notice; refused: what to use instead
    tools: tuple[str, ...] = (TRAIN,)
    value: Optional[str] = None  # None: a switch; "*": takes a value, any not listed on its own
    optional_value: bool = False  # fairseq's nargs="?" (--remove-bpe [MARKER])
    becomes: Optional[tuple[str, ...]] = None  # lmtie's tokens in its place ("{}": the value); None: kept as given
    check: Optional[Callable[[str], Optional[str]]] = None  # a value's refusal reason, or None to accept it


def _world_size(value: str) -> Optional[str]:
    world = os.environ.get("WORLD_SIZE", "1")
    if value == world:
        return None
    return (f"this run has {world} process(es); lmtie takes the world size from torchrun: run "
            f"torchrun --nproc_per_node {value} -m lmtie.cli.train ... (and drop --distributed-world-size)")


_BF16 = ("lmtie's mixed precision is bfloat16 autocast (fp32's exponent range, so no loss scaling); running as "
         "--bf16 (on a CPU without bf16 instructions it is emulated and slower than fp32; drop the flag there)")
_NO_SCALING = "bfloat16 needs no loss scaling; ignored"
_NO_ADAPTIVE = ("lmtie has no adaptive input or softmax; drop it: the softmax is full (computed in chunks, so large "
                "vocabularies stay affordable) and --share-decoder-input-output-embed ties it")
_USER_DIR = ("lmtie loads no plug-in directories; register a model family in Python (@register_model, README "
             "'Layout') and call the tool's main() from your script")

FLAGS: tuple[FairseqFlag, ...] = (
    # --- what a fairseq user's recipe needs, implemented ------------------------------------------
    FairseqFlag("--save-interval", "implemented", "checkpoint_last and checkpointEPOCH every N epochs", value="*"),
    FairseqFlag("--validate-interval", "implemented", "validate at the end of every N epochs", value="*"),
    FairseqFlag("--valid-subset", "implemented", "comma-separated: each validated and logged; the first picks "
                "checkpoint_best", value="*"),
    FairseqFlag("--disable-validation", "implemented", "no validation, no checkpoint_best"),
    FairseqFlag("--no-save", "implemented", "no checkpoint written (config.json, metrics.jsonl still are)"),
    FairseqFlag("--no-last-checkpoints", "implemented", "no checkpoint_last (a rerun starts afresh)"),
    FairseqFlag("--best-checkpoint-metric", "implemented", "loss, nll_loss or ppl (they rank alike), or bleu with "
                "--eval-bleu", value="*"),
    FairseqFlag("--maximize-best-checkpoint-metric", "implemented", "the highest metric is best"),
    FairseqFlag("--max-tokens-valid", "implemented", "tokens per validation batch", value="*"),
    FairseqFlag("--batch-size-valid", "implemented", "blocks per validation batch", value="*"),
    FairseqFlag("--stop-min-lr", "implemented", "stop once the learning rate after warm-up is <= it", value="*"),
    FairseqFlag("--required-batch-size-multiple", "implemented", "full batches cut to a multiple of N blocks "
                "(lmtie's default is 1, fairseq's 8)", value="*"),
    FairseqFlag("--checkpoint-activations", "implemented", "torch.utils.checkpoint on every block, every family"),
    FairseqFlag("--reset-optimizer", "implemented", "fresh Adam state and update count (the schedule restarts), "
                "no best yet"),
    FairseqFlag("--reset-lr-scheduler", "implemented", "fresh reduce_lr_on_plateau state (step-based schedules "
                "follow the update count, as in fairseq)"),
    FairseqFlag("--reset-dataloader", "implemented", "restart at epoch 1, batch 0"),
    FairseqFlag("--reset-meters", "implemented", "fresh token/time counters, best valid loss and patience"),
    FairseqFlag("--lr-scheduler", "implemented", "fairseq's formula; --end-learning-rate, --power, "
                "--total-num-update", value="polynomial_decay"),
    FairseqFlag("--lr-scheduler", "implemented", "shrinks by --lr-shrink after --lr-patience epochs without a "
                "--lr-threshold improvement", value="reduce_lr_on_plateau"),
    FairseqFlag("--no-token-positional-embeddings", "implemented", "transformer_lm family: no positions"),
    FairseqFlag("--layernorm-embedding", "implemented", "transformer_lm family: LayerNorm on the embeddings"),
    *(FairseqFlag("--arch", "implemented", "fairseq's sizes (d=1024, 16 layers, dropout 0.3) with a full "
                  "softmax: lmtie has no adaptive input/softmax", value=v, becomes=("--arch", v))
      for v in ("transformer_lm_wiki103", "transformer_lm_baevski_wiki103")),
    FairseqFlag("--arch", "implemented", "fairseq's sizes (d=512, 12 layers)", value="transformer_lm_gbw"),
    FairseqFlag("--weight-decay", "implemented", "decoupled, on matrices only: norms, biases and embeddings are not "
                "decayed (fairseq's adam decays all); the run prints which", value="*"),
    FairseqFlag("--fp16", "implemented", _BF16, tools=(TRAIN, EVAL), becomes=("--bf16",)),
    FairseqFlag("--memory-efficient-fp16", "implemented", _BF16, becomes=("--bf16",)),
    FairseqFlag("--amp", "implemented", _BF16, becomes=("--bf16",)),
    FairseqFlag("--cpu", "implemented", "running as --device cpu", tools=(TRAIN, EVAL), becomes=("--device", "cpu")),
    FairseqFlag("--no-progress-bar", "implemented", "running as --log-format simple",
                becomes=("--log-format", "simple")),
    FairseqFlag("--finetune-from-model", "implemented", "running as --init-from (its weights, a fresh optimiser)",
                value="*", becomes=("--init-from", "{}")),
    *(FairseqFlag("--ddp-backend", "implemented", "running as --ddp-backend pytorch_ddp (DDP)", value=v,
                  becomes=("--ddp-backend", "pytorch_ddp")) for v in ("c10d", "legacy_ddp", "no_c10d")),
    # --- moot here: accepted with a notice -------------------------------------------------------
    FairseqFlag("--task", "notice", "lmtie-eval-lm scores language models; ignored", tools=(EVAL,),
                value="language_modeling"),
    FairseqFlag("--task", "notice", "the layout follows --source-lang/--target-lang (a translation layout) or "
                "their absence (language-model data); ignored", tools=(PREP,), value="*"),
    FairseqFlag("--dataset-impl", "notice", "lmtie reads and writes mmap only; ignored", tools=ALL, value="mmap"),
    FairseqFlag("--num-workers", "notice", "batches come from memory maps in the training process; ignored",
                tools=(TRAIN, EVAL), value="*"),
    FairseqFlag("--distributed-world-size", "notice", "matches torchrun's world size; ignored", value="*",
                check=_world_size),
    FairseqFlag("--decoder-normalize-before", "notice", "lmtie's blocks are always pre-norm (fairseq forces it "
                "for language models too); ignored"),
    FairseqFlag("--skip-invalid-size-inputs-valid-test", "notice", "lmtie cuts a line longer than "
                "--tokens-per-sample into pieces, so no sample is too long; ignored", tools=(TRAIN, EVAL)),
    FairseqFlag("--fp16-init-scale", "notice", _NO_SCALING, value="*"),
    FairseqFlag("--fp16-scale-window", "notice", _NO_SCALING, value="*"),
    FairseqFlag("--min-loss-scale", "notice", _NO_SCALING, value="*"),
    FairseqFlag("--fp16-no-flatten-grads", "notice", _NO_SCALING),
    FairseqFlag("--cpu", "notice", "preprocessing never uses a GPU; ignored", tools=(PREP,)),
    FairseqFlag("--quiet", "notice", "lmtie-eval-lm prints only its summary unless --output-word-probs; ignored",
                tools=(EVAL,)),
    FairseqFlag("--remove-bpe", "notice", "word-level perplexity is computed over the checkpoint's decoded words, "
                "whatever the subword marker; ignored", tools=(EVAL,), value="*", optional_value=True),
    FairseqFlag("--post-process", "notice", "word-level perplexity is computed over the checkpoint's decoded words, "
                "whatever the subword marker; ignored", tools=(EVAL,), value="*", optional_value=True),
    FairseqFlag("--seed", "notice", "scoring draws no random numbers; ignored", tools=(EVAL,), value="*"),
    # --- refused, with what to use instead -------------------------------------------------------
    FairseqFlag("--task", "refused", "lmtie-eval-lm scores language models; score a translation model with "
                "lmtie-generate DATA --path CKPT (BLEU, chrF) or train it with lmtie-train --task translation",
                tools=(EVAL,), value="*"),
    FairseqFlag("--dataset-impl", "refused", "lmtie reads and writes mmap data-bins only: --dataset-impl mmap (or "
                "no --dataset-impl)", tools=ALL, value="*"),
    FairseqFlag("--criterion", "refused", _NO_ADAPTIVE.replace("drop it", "use --criterion cross_entropy"),
                value="adaptive_loss"),
    FairseqFlag("--optimizer", "implemented", "AdamW (fairseq's adam is decoupled too)", value="adam"),
    FairseqFlag("--optimizer", "implemented", "AdamW", value="adamw"),
    FairseqFlag("--optimizer", "refused", "lmtie has Adam(W) only: --optimizer adam", value="*"),
    FairseqFlag("--user-dir", "refused", _USER_DIR, tools=ALL, value="*"),
    *(FairseqFlag(f, "refused", _NO_ADAPTIVE, value="*") for f in (
        "--adaptive-softmax-cutoff", "--adaptive-softmax-dropout", "--adaptive-input-cutoff",
        "--adaptive-input-factor", "--adaptive-softmax-factor")),
    *(FairseqFlag(f, "refused", _NO_ADAPTIVE) for f in ("--adaptive-input", "--tie-adaptive-weights",
                                                        "--tie-adaptive-proj")),
    *(FairseqFlag(f, "refused", "lmtie's cosine is one period from --lr to --min-lr over --max-update; drop it "
                  "(or use --lr-scheduler polynomial_decay)", value="*")
      for f in ("--max-lr", "--t-mult", "--lr-period-updates")),
    FairseqFlag("--add-bos-token", "refused", "lmtie's samples start without <s>, in training and evaluation alike; "
                "drop it (a model trained with it would be scored on other inputs than it saw)", tools=(TRAIN, EVAL)),
    FairseqFlag("--offload-activations", "refused", "use --checkpoint-activations (recompute instead of offloading)"),
    FairseqFlag("--sentence-avg", "refused", "lmtie averages the loss over tokens, as fairseq's language models do; "
                "drop it"),
    FairseqFlag("--dict-only", "refused", "lmtie-preprocess writes the dictionary with the splits; to share one "
                "dictionary, build one data-bin, then pass its dict.txt as --srcdict to the others", tools=(PREP,)),
    FairseqFlag("--output-word-stats", "refused", "use --output-word-probs (each token's log2 probability, line by "
                "line, also written under --results-path) and aggregate those", tools=(EVAL,)),
    *(FairseqFlag(f, "refused", "lmtie-eval-lm streams the whole split in constant memory; score it whole, or "
                  "split the text into files and score each with --input FILE", tools=(EVAL,), value="*")
      for f in ("--num-shards", "--shard-id")),
)


def entries(tool: str) -> list[FairseqFlag]:
    return [f for f in FLAGS if tool in f.tools]


def _takes_value(found: list[FairseqFlag]) -> bool:
    return any(f.value is not None for f in found)


def _match(found: list[FairseqFlag], value: Optional[str]) -> Optional[FairseqFlag]:
    exact = [f for f in found if f.value == value]
    return exact[0] if exact else next((f for f in found if f.value == "*"), None)


def translate(tool: str, argv: Sequence[str], notify: Callable[[str], None] | None = None) -> list[str]:
    """``argv`` for lmtie's parser: refused fairseq flags raise a UserError, noticed ones are dropped or
    replaced after a one-line notice, everything else is passed through unchanged."""
    notify = notify or (lambda line: print(f"lmtie-{tool}: notice: {line}", file=sys.stderr))
    by_flag: dict[str, list[FairseqFlag]] = {}
    for f in entries(tool):
        by_flag.setdefault(f.flag, []).append(f)
    out, i = [], 0
    while i < len(argv):
        token = argv[i]
        name, eq, inline = token.partition("=")
        found = by_flag.get(name) if token.startswith("--") else None
        if not found:
            out.append(token)
            i += 1
            continue
        value, used = (inline if eq else None), 1
        if value is None and _takes_value(found):
            optional = any(f.optional_value for f in found)
            has_next = i + 1 < len(argv) and not (optional and argv[i + 1].startswith("-"))
            if has_next:
                value, used = argv[i + 1], 2
            elif not optional:
                raise UserError(f"{name}: expected a value")
        out.extend(_apply(_match(found, value), name, value, argv[i:i + used], notify))
        i += used
    return out


def _apply(entry: Optional[FairseqFlag], name: str, value: Optional[str], tokens: list[str],
           notify: Callable[[str], None]) -> list[str]:
    shown = name if value is None else f"{name} {value}"
    if entry is None:  # a value of an lmtie flag the table has no word on: argparse judges it
        return list(tokens)
    reason = entry.check(value) if entry.check is not None and value is not None else None
    if entry.status == "refused" or reason:
        raise UserError(f"{shown}: {reason or entry.says}")
    if entry.becomes is None and entry.status == "implemented":
        return list(tokens)
    notify(f"{shown}: {entry.says}")
    return [t.replace("{}", value or "") for t in entry.becomes or ()]


def epilog(tool: str) -> str:
    """The --help epilog: which fairseq flags are accepted with a notice, and which are refused."""
    def names(status: str) -> str:
        seen = dict.fromkeys(f.flag + (f" {f.value}" if f.value not in (None, "*") else "")
                             for f in entries(tool) if f.status == status)
        return ", ".join(seen)

    return (f"fairseq flags accepted with a one-line notice: {names('notice')}. Refused, with what to use "
            f"instead: {names('refused')}. The full table: python -m lmtie.cli.fairseq_flags")


def markdown_table() -> str:
    """Every row of the table, as Markdown."""
    rows = ["| tool | fairseq flag | lmtie | what lmtie does |", "|---|---|---|---|"]
    for f in FLAGS:
        flag = f.flag if f.value is None else f"{f.flag} {'VALUE' if f.value == '*' else f.value}"
        if f.value == "*" and any(g.flag == f.flag and g.value not in (None, "*") for g in FLAGS):
            flag = f"{f.flag} (any other value)"
        becomes = f" (as `{' '.join(f.becomes)}`)" if f.becomes else ""
        rows.append(f"| {', '.join(f.tools)} | `{flag}` | {f.status}{becomes} | {f.says} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
