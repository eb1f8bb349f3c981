"""Tasks (fairseq's ``--task``): what a data-bin holds, how it is batched, and the loss of a batch.

The trainer knows a task only through this interface, and a model only through the task's loss,
so one loop (resume, preemption, DDP/FSDP, bf16) trains language models and translation models:

- ``dictionaries()``: (source dictionary or None, target dictionary);
- ``model_values(values)``: the family's config fields sized to those dictionaries;
- ``dataset(split)``: a split with ``len``, ``sizes`` and ``batch(indices)``;
- ``train_batches(dataset, seed, epoch)`` / ``valid_batches(dataset)``: global batches (lists of indices);
- ``loss(model, batch, label_smoothing)``: (summed loss in nats, number of target tokens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from lmtie.data import Dictionary, LanguageModelDataset, batch_indices, epoch_order
from lmtie.data.pair_dataset import LanguagePairDataset, pair_batches, pair_languages
from lmtie.errors import UserError
from lmtie.models import unwrap
from lmtie.training.config import DataConfig
from lmtie.training.criterion import linear_cross_entropy, lm_loss

TASKS = ("language_modeling", "translation")


class Task:
    """What the trainer needs of a task (the module docstring lists it); ``world`` is the number of processes,
    and batches are global (each rank trains on its share)."""

    name = ""

    def __init__(self, data: DataConfig, world: int = 1):
        self.data, self.world = data, world

    def dictionaries(self) -> tuple[Optional[Dictionary], Dictionary]:
        raise NotImplementedError

    def model_values(self, values: dict) -> dict:
        raise NotImplementedError

    def fit_model(self, cfg):
        raise NotImplementedError

    def dataset(self, split: str):
        raise NotImplementedError

    def train_batches(self, dataset, seed: int, epoch: int) -> list[list[int]]:
        raise NotImplementedError

    def valid_batches(self, dataset) -> list[list[int]]:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict, label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def valid_scores(self, model: nn.Module, dataset, device: torch.device) -> dict[str, float]:
        """Scores a validation reports beside its loss (none unless the task has some)."""
        return {}


class LanguageModelingTask(Task):
    """Blocks of ``--tokens-per-sample`` tokens of one stream (fairseq's ``language_modeling``)."""

    name = "language_modeling"

    def __init__(self, data: DataConfig, world: int = 1):
        super().__init__(data, world)
        self.dictionary = Dictionary.load(Path(data.data) / "dict.txt")

    def dictionaries(self) -> tuple[Optional[Dictionary], Dictionary]:
        return None, self.dictionary

    def model_values(self, values: dict) -> dict:
        return {**values, "vocab_size": len(self.dictionary), "padding_idx": self.dictionary.pad()}

    def fit_model(self, cfg):
        """The model config serving the data: positions for --tokens-per-sample."""
        return cfg.with_positions(self.data.tokens_per_sample)

    def dataset(self, split: str) -> LanguageModelDataset:
        d = self.data
        return LanguageModelDataset(d.data, split, d.tokens_per_sample, d.sample_break_mode)

    def train_batches(self, dataset, seed: int, epoch: int) -> list[list[int]]:
        d, world = self.data, self.world
        order = epoch_order(len(dataset), seed, epoch)
        bs = None if d.batch_size is None else d.batch_size * world
        mt = None if d.max_tokens is None else d.max_tokens * world
        batches = batch_indices(order, batch_size=bs, max_tokens=mt, sizes=dataset.sizes,
                                multiple=d.required_batch_size_multiple * world)
        return [b for b in batches if len(b) >= world]  # every rank needs a share

    def valid_batches(self, dataset) -> list[list[int]]:
        d, world = self.data, self.world
        if d.batch_size_valid is None and d.max_tokens_valid is None:
            bs = d.batch_size or max(1, (d.max_tokens or 4096) // d.tokens_per_sample)
            return batch_indices(np.arange(len(dataset)), batch_size=bs * world)
        bs, mt = d.batch_size_valid, d.max_tokens_valid
        return batch_indices(np.arange(len(dataset)), batch_size=None if bs is None else bs * world,
                             max_tokens=None if mt is None else mt * world, sizes=dataset.sizes)

    def loss(self, model: nn.Module, batch: dict, label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
        return lm_loss(model, batch["source"], batch["target"], self.dictionary.pad(), label_smoothing)


class TranslationTask(Task):
    """Sentence pairs ``SPLIT.SRC-TGT.{SRC,TGT}`` (fairseq's ``translation``), batched by length buckets."""

    name = "translation"

    def __init__(self, data: DataConfig, world: int = 1):
        super().__init__(data, world)
        self.source_lang, self.target_lang = pair_languages(data.data, data.source_lang, data.target_lang)
        d = Path(data.data)
        for lang in (self.source_lang, self.target_lang):
            if not (d / f"dict.{lang}.txt").is_file():
                raise UserError(f"{d}: no dict.{lang}.txt; preprocess with lmtie-preprocess --source-lang "
                                f"{self.source_lang} --target-lang {self.target_lang}")
        self.src_dict = Dictionary.load(d / f"dict.{self.source_lang}.txt")
        self.dictionary = Dictionary.load(d / f"dict.{self.target_lang}.txt")
        self.joined = self.src_dict == self.dictionary
        self.max_positions = (None, None)

    def dictionaries(self) -> tuple[Optional[Dictionary], Dictionary]:
        return self.src_dict, self.dictionary

    def model_values(self, values: dict) -> dict:
        if values.get("share_all_embeddings") and not self.joined:
            raise UserError(f"--share-all-embeddings needs one dictionary for both languages, but {self.data.data} has "
                            f"dict.{self.source_lang}.txt ({len(self.src_dict)} symbols) and dict.{self.target_lang}.txt "
                            f"({len(self.dictionary)}) differing; preprocess with --joined-dictionary")
        return {**values, "src_vocab_size": len(self.src_dict), "tgt_vocab_size": len(self.dictionary),
                "padding_idx": self.dictionary.pad()}

    def fit_model(self, cfg):
        self.max_positions = (cfg.max_source_positions, cfg.max_target_positions)
        return cfg

    def dataset(self, split: str) -> LanguagePairDataset:
        return LanguagePairDataset(self.data.data, split, self.source_lang, self.target_lang, self.src_dict,
                                   self.dictionary)

    def _kept(self, dataset: LanguagePairDataset) -> np.ndarray:
        """The pairs the model's positions can hold (fairseq drops the others from training)."""
        src, tgt = self.max_positions
        return np.arange(len(dataset)) if src is None else dataset.filter(src, tgt)

    def train_batches(self, dataset, seed: int, epoch: int) -> list[list[int]]:
        kept = self._kept(dataset)
        order = kept[epoch_order(len(kept), seed, epoch)]
        d, world = self.data, self.world
        batches = pair_batches(dataset, order, seed, epoch, None if d.batch_size is None else d.batch_size * world,
                               None if d.max_tokens is None else d.max_tokens * world,
                               d.required_batch_size_multiple * world)
        return [b for b in batches if len(b) >= world]

    def valid_batches(self, dataset) -> list[list[int]]:
        """Length-sorted, unshuffled (the sum over all pairs does not depend on the order)."""
        kept = self._kept(dataset)
        d, world = self.data, self.world
        bs = d.batch_size_valid or d.batch_size
        mt = d.max_tokens_valid or d.max_tokens
        order = kept[np.lexsort((dataset.src_sizes[kept], dataset.tgt_sizes[kept]))]
        return batch_indices(order, batch_size=None if bs is None else bs * world,
                             max_tokens=None if mt is None else mt * world, sizes=dataset.sizes)

    def loss(self, model: nn.Module, batch: dict, label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
        return seq2seq_loss(model, batch["source"], batch["prev_output_tokens"], batch["target"],
                            self.dictionary.pad(), label_smoothing)


    def valid_scores(self, model: nn.Module, dataset, device: torch.device) -> dict[str, float]:
        """With --eval-bleu: BLEU and chrF (sacrebleu) of the --eval-bleu-args search over the valid split, on the
        detokenised text; every rank translates the whole split (the same result everywhere)."""
        if not self.data.eval_bleu:
            return {}
        from lmtie.evaluation.bleu import corpus_scores
        from lmtie.evaluation.sequence_generator import SequenceGenerator
        from lmtie.evaluation.translation import detokenized, side_tokenizer, translate_dataset

        search = self.data.bleu_search()
        generator = SequenceGenerator(model, self.dictionary, beam=search.get("beam", 4),
                                      lenpen=search.get("lenpen", 1.0), max_len_a=search.get("max_len_a", 0.0),
                                      max_len_b=search.get("max_len_b", 200), min_len=search.get("min_len", 1))
        tgt_tok = side_tokenizer(self.data.data, self.target_lang)
        pairs = [detokenized(t, tgt_tok) for t in translate_dataset(generator, dataset, device, None, 4096)]
        scores = corpus_scores([h for h, _ in pairs], [r for _, r in pairs])
        return {"bleu": scores["bleu"].score, "chrf": scores["chrf"].score}


def seq2seq_loss(model: nn.Module, source: torch.Tensor, prev_output_tokens: torch.Tensor, target: torch.Tensor,
                 pad: int, label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
    """Teacher-forced summed loss of an encoder-decoder model over the non-pad targets, fused as ``lm_loss``."""
    ntokens = int(target.ne(pad).sum())
    m = unwrap(model)
    features = model(source, prev_output_tokens, features_only=True)  # through the wrapper (DDP/FSDP)
    loss = linear_cross_entropy(features.flatten(0, 1), m.output_weight, m.output_bias, target.flatten(), pad,
                                label_smoothing=label_smoothing)
    return loss, ntokens


def make_task(data: DataConfig, world: int = 1) -> Task:
    """The task of ``--task``."""
    return (TranslationTask if data.task == "translation" else LanguageModelingTask)(data, world)
