"""Translation with a checkpoint: ``lmtie-generate DATA --path CKPT`` (a split, scored) and
``lmtie-interactive DATA --path CKPT`` (stdin, one sentence per line), as fairseq-generate and
fairseq-interactive. The entry points (``cli/generate.py``, ``cli/interactive.py``) wrap these."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lmtie.checkpoint import load_model
from lmtie.config import add_dataclass_args, from_args
from lmtie.data.pair_dataset import LanguagePairDataset, pair_languages
from lmtie.errors import UserError
from lmtie.evaluation.config import TranslateConfig
from lmtie.evaluation.evaluate import default_device
from lmtie.evaluation.translation import (detokenized, make_generator, output_lines, side_tokenizer, translate_dataset,
                                          translate_lines)
from lmtie.io import atomic_write_text


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("data", help="DATA_BIN of the language pair (its dictionaries and tokenisers)")
    add_dataclass_args(p, TranslateConfig, "generation")
    return p


def _setup(prog: str, argv: list[str]):
    lm_flags = [a for a in argv if a.split("=")[0] in ("--prompt", "--max-new-tokens", "--top-k", "--top-p",
                                                        "--temperature", "--num-samples", "--greedy")]
    if lm_flags:
        raise UserError(f"{lm_flags[0].split('=')[0]} samples from a language model, but --path is a translation "
                        f"model: {prog} DATA --path CKPT translates DATA's --gen-subset (--beam, --lenpen, ...)")
    args = build_parser(prog).parse_args(argv)
    cfg = from_args(TranslateConfig, args)
    cfg.validate()
    device = default_device(cfg.device)
    model, ckpt = load_model(cfg.path, device)
    if getattr(model, "task", "language_modeling") != "translation":
        raise UserError(f"--path {cfg.path}: a language model; continue a prompt with lmtie-generate --path "
                        f"{cfg.path} --prompt TEXT (DATA is for translation models)")
    src, tgt = pair_languages(args.data, cfg.source_lang, cfg.target_lang)
    tokenizers = side_tokenizer(args.data, src), side_tokenizer(args.data, tgt)
    src_dict = getattr(ckpt, "src_dictionary", None)
    if tokenizers[1].dictionary != ckpt.dictionary or (src_dict is not None and tokenizers[0].dictionary != src_dict):
        raise UserError(f"{args.data}: its dict.{src}.txt / dict.{tgt}.txt are not the dictionaries {cfg.path} was "
                        "trained with; pass the checkpoint's DATA_BIN")
    model.eval()
    return args, cfg, device, model, ckpt, (src, tgt), tokenizers


def generate(argv: list[str]) -> int:
    """Translate --gen-subset, print fairseq's lines, then BLEU and chrF."""
    args, cfg, device, model, ckpt, (src, tgt), (src_tok, tgt_tok) = _setup("lmtie-generate", argv)
    dataset = LanguagePairDataset(args.data, cfg.gen_subset, src, tgt, src_tok.dictionary, tgt_tok.dictionary)
    generator = make_generator(model, tgt_tok.dictionary, cfg)
    lines, hyps, refs = [], [], []
    start = time.perf_counter()
    for t in translate_dataset(generator, dataset, device, cfg.batch_size, cfg.max_tokens):
        out = output_lines(t, src_tok, tgt_tok, cfg.nbest)
        lines.extend(out)
        if not cfg.quiet:
            print("\n".join(out))
        h, r = detokenized(t, tgt_tok)
        hyps.append(h), refs.append(r)
    seconds = time.perf_counter() - start
    ntokens = sum(len(h.split()) for h in hyps)
    print(f"Translated {len(hyps):,} sentences ({ntokens:,} words) in {seconds:.1f}s "
          f"({len(hyps) / max(seconds, 1e-9):.2f} sentences/s)")
    result = {"subset": cfg.gen_subset, "beam": cfg.beam, "lenpen": cfg.lenpen, "sentences": len(hyps),
              "seconds": seconds, "checkpoint": str(ckpt.path)}
    if cfg.scoring == "sacrebleu":
        from lmtie.evaluation.bleu import corpus_scores

        scores = corpus_scores(hyps, refs)
        print(f"Generate {cfg.gen_subset} with beam={cfg.beam}: {scores['bleu']}")
        print(f"Generate {cfg.gen_subset} with beam={cfg.beam}: {scores['chrf']}")
        result.update({name: s.score for name, s in scores.items()},
                      **{f"{name}_signature": s.signature for name, s in scores.items()})
    if cfg.results_path:
        out = Path(cfg.results_path)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / f"generate-{cfg.gen_subset}.txt", "\n".join(lines) + "\n")
        atomic_write_text(out / f"generate-{cfg.gen_subset}.json", json.dumps(result, indent=2) + "\n")
        print(f"wrote {out / f'generate-{cfg.gen_subset}.txt'} and its .json")
    return 0


def interactive(argv: list[str]) -> int:
    """Translate stdin line by line (one sentence per line), printing fairseq-interactive's lines."""
    args, cfg, device, model, ckpt, _, (src_tok, tgt_tok) = _setup("lmtie-interactive", argv)
    generator = make_generator(model, tgt_tok.dictionary, cfg)
    for t in translate_lines(generator, sys.stdin, src_tok, device, batch_size=cfg.batch_size or 1):
        print("\n".join(output_lines(t, src_tok, tgt_tok, cfg.nbest)), flush=True)
    return 0

