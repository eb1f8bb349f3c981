"""Translating a split or raw lines with a checkpoint, and fairseq-generate's output lines.

For every sentence fairseq prints ``S-id`` (source), ``T-id`` (reference), then per hypothesis
``H-id<TAB>score<TAB>tokens``, ``D-id<TAB>score<TAB>detokenised text`` and ``P-id<TAB>positional
scores``, scores in base 2. The hypotheses and references are detokenised with the data-bin's
tokenisers (SentencePiece decoded, words joined by spaces) and scored by sacrebleu on that text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
import torch

from lmtie.data import Dictionary, batch_indices, load_manifest, make_tokenizer
from lmtie.data.pair_dataset import LanguagePairDataset
from lmtie.errors import UserError
from lmtie.evaluation.sequence_generator import SequenceGenerator


@dataclass
class Translation:
    id: int
    source: list[int]  # ids, </s> included
    target: Optional[list[int]]  # the reference ids (None for raw input)
    hypotheses: list[dict]  # best first: tokens, score (nats, length-normalised), positional_scores


def side_tokenizer(data_bin: str | Path, lang: str):
    """The tokeniser of one language of a translation data-bin (a plain fairseq one: words)."""
    d = Path(data_bin)
    manifest = load_manifest(d)
    side = manifest.get("translation", {}).get("langs", {}).get(lang, {})
    model = side.get("tokenizer_model")
    if model and not (d / model).is_file():
        raise UserError(f"{d / model}: the {lang} tokenizer model is missing from the data-bin; re-run lmtie-preprocess")
    return make_tokenizer(manifest.get("tokenizer", "space"), Dictionary.load(d / f"dict.{lang}.txt"),
                          d / model if model else None)


def make_generator(model, tgt_dict: Dictionary, cfg) -> SequenceGenerator:
    """The beam search of a TranslateConfig."""
    return SequenceGenerator(model, tgt_dict, beam=cfg.beam, max_len_a=cfg.max_len_a, max_len_b=cfg.max_len_b,
                             min_len=cfg.min_len, lenpen=cfg.lenpen, unk_penalty=cfg.unkpen, use_cache=cfg.kv_cache)


def translate_dataset(generator: SequenceGenerator, dataset: LanguagePairDataset, device: torch.device,
                      batch_size: Optional[int], max_tokens: Optional[int]) -> Iterator[Translation]:
    """Every pair of ``dataset``, batched by source length (as fairseq), yielded in that order."""
    order = np.argsort(dataset.src_sizes, kind="stable")
    for indices in batch_indices(order, batch_size=batch_size, max_tokens=max_tokens, sizes=dataset.src_sizes):
        batch = dataset.batch(indices)
        hyps = generator.generate(batch["source"].to(device))
        pad = dataset.tgt_dict.pad()
        for r, i in enumerate(indices):
            yield Translation(int(i), _unpad(batch["source"][r], pad), _unpad(batch["target"][r], pad), hyps[r])


def translate_lines(generator: SequenceGenerator, lines: Iterable[str], src_tokenizer, device: torch.device,
                    batch_size: int = 16) -> Iterator[Translation]:
    """Raw source lines (one sentence each), in input order (fairseq-interactive)."""
    pad = src_tokenizer.dictionary.pad()
    buffer: list[list[int]] = []
    start = 0
    for line in lines:
        buffer.append(src_tokenizer.encode_lines([line.rstrip("\r\n")])[0].tolist())
        if len(buffer) == batch_size:
            yield from _translate_buffer(generator, buffer, start, pad, device)
            start, buffer = start + len(buffer), []
    if buffer:
        yield from _translate_buffer(generator, buffer, start, pad, device)


def _translate_buffer(generator, buffer: list[list[int]], start: int, pad: int, device) -> Iterator[Translation]:
    width = max(len(s) for s in buffer)
    src = torch.full((len(buffer), width), pad, dtype=torch.long)
    for r, s in enumerate(buffer):
        src[r, :len(s)] = torch.tensor(s)
    for r, hyps in enumerate(generator.generate(src.to(device))):
        yield Translation(start + r, buffer[r], None, hyps)


def _unpad(row: torch.Tensor, pad: int) -> list[int]:
    return [int(x) for x in row if int(x) != pad]


def output_lines(t: Translation, src_tok, tgt_tok, nbest: int) -> list[str]:
    """fairseq-generate's lines of one sentence (scores in base 2)."""
    lines = [f"S-{t.id}\t{src_tok.decode(t.source[:-1])}"]
    if t.target is not None:
        lines.append(f"T-{t.id}\t{tgt_tok.decode(t.target[:-1])}")
    for h in t.hypotheses[:nbest]:
        ids = [int(x) for x in h["tokens"]][:-1]  # without its </s>
        score = h["score"] / math.log(2)
        lines.append(f"H-{t.id}\t{score:.4f}\t{' '.join(tgt_tok.dictionary[i] for i in ids)}")
        lines.append(f"D-{t.id}\t{score:.4f}\t{tgt_tok.decode(ids)}")
        lines.append(f"P-{t.id}\t{' '.join(f'{float(p) / math.log(2):.4f}' for p in h['positional_scores'])}")
    return lines


def detokenized(t: Translation, tgt_tok) -> tuple[str, Optional[str]]:
    """(best hypothesis, reference) as text: what sacrebleu scores."""
    best = [int(x) for x in t.hypotheses[0]["tokens"]][:-1]
    return tgt_tok.decode(best), None if t.target is None else tgt_tok.decode(t.target[:-1])
