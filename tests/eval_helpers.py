"""Tiny models, checkpoints and data-bins shared by the evaluation, generation and hub tests (no tests here)."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from lmtie.config import to_dict
from lmtie.data import Dictionary, PreprocessConfig, preprocess
from lmtie.models import TransformerLanguageModel, TransformerLMConfig
from lmtie import checkpoint

WORDS = "the cat sat on a mat and dog ran to big red house with small blue door".split()


def corpus_text(lines: int, seed: int = 0, empty_every: int = 0) -> str:
    """Random word lines; every ``empty_every``-th line is empty (a document break)."""
    rng = random.Random(seed)
    out = []
    for i in range(lines):
        empty = empty_every and i % empty_every == empty_every - 1
        out.append("" if empty else " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7))))
    return "\n".join(out) + "\n"


def tiny_model(vocab: int, tied: bool = True, max_positions: int = 64, seed: int = 0,
               dtype: torch.dtype = torch.float32) -> TransformerLanguageModel:
    cfg = TransformerLMConfig(vocab_size=vocab, padding_idx=1, decoder_embed_dim=32, decoder_ffn_embed_dim=64,
                              decoder_layers=2, decoder_attention_heads=4, dropout=0.0,
                              max_target_positions=max_positions, share_decoder_input_output_embed=tied)
    torch.manual_seed(seed)
    return TransformerLanguageModel(cfg).to(dtype).eval()


def save_checkpoint(path: Path, model: TransformerLanguageModel, dictionary: Dictionary, tokenizer: str = "space",
                    spm_model: bytes | None = None, tokens_per_sample: int = 16, break_mode: str = "none") -> Path:
    data = {"tokens_per_sample": tokens_per_sample, "sample_break_mode": break_mode}
    ckpt = checkpoint.Checkpoint({k: v.float() for k, v in model.state_dict().items()}, {"model": to_dict(model.cfg), "data": data},
                                 dictionary, {"name": tokenizer}, spm_model)
    return checkpoint.save(path, ckpt)


def make_data_bin(root: Path, test_text: str, train_text: str | None = None) -> Path:
    """A word-level data-bin whose test split is ``test_text`` (train defaults to the same words)."""
    (root / "train.txt").write_text(train_text or corpus_text(60, seed=1), encoding="utf-8")
    (root / "test.txt").write_text(test_text, encoding="utf-8")
    return preprocess(PreprocessConfig(trainpref=str(root / "train.txt"), testpref=str(root / "test.txt"),
                                       destdir=str(root / "bin")))


def checkpoint_for(data_bin: Path, path: Path, **kw) -> Path:
    """A random tiny model over ``data_bin``'s dictionary, saved as a checkpoint."""
    d = Dictionary.load(data_bin / "dict.txt")
    return save_checkpoint(path, tiny_model(len(d)), d, **kw)


def brute_force_logprobs(model, stream: torch.Tensor, spans, T: int, C: int, eos: int) -> torch.Tensor:
    """Each token scored alone with its allowed prefix, computed from the rule, not from the windows:
    the first T targets of a document see the document from its start; a later target of block k
    (targets [s, s + T - C)) sees inputs from max(doc start, s - C)."""
    S = T - C
    y = torch.cat([torch.tensor([eos]), stream])  # y[i] is the input that predicts stream[i]
    out = torch.empty(len(stream), dtype=torch.float64)
    with torch.no_grad():
        for ds, de in spans:
            for i in range(ds, de):
                s = ds if i < ds + T else ds + T + ((i - ds - T) // S) * S
                a = ds if s == ds else max(ds, s - C)
                logits = model(y[a:i + 1].view(1, -1))[0, -1]
                out[i] = torch.log_softmax(logits.double(), -1)[stream[i]]
    return out


def train_on_cycle(model, cycle: torch.Tensor, steps: int = 80, length: int = 16) -> torch.Tensor:
    """Fit ``model`` to random ``length``-token crops of ``cycle`` repeated (a non-random model in
    about a second); crops start anywhere, so the model must read the phase from its context."""
    stream = cycle.repeat(4 * length // len(cycle) + 2)
    g = torch.Generator().manual_seed(0)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        starts = torch.randint(1, len(stream) - length, (8,), generator=g)
        crops = torch.stack([stream[s - 1:s + length] for s in starts.tolist()])  # (8, length + 1)
        logits = model(crops[:, :-1])  # (8, length, V)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), crops[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return cycle


def fairseq_rule_logprobs(model, stream: torch.Tensor, sizes, mode: str, T: int, C: int, eos: int) -> torch.Tensor:
    """fairseq-eval-lm's procedure, simulated step by step from its rule rather than from lmtie's windows:
    the blocks of its TokenBlockDataset with block size T - C (positions of the whole stream; complete_doc
    drops its separator lines), each block's input its target shifted right behind </s>, and before it the
    inputs LMContextWindowDataset keeps: the last C tokens of the previous input row, trimmed from the front
    so the row holds at most T. A block longer than T is first cut into blocks of T - C (lmtie's one change).
    Each target is scored alone, with its row up to itself. Returns the scored targets' log-probs in order."""
    S, n, x = T - C, len(stream), stream.tolist()
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    if mode == "none":
        blocks = [(s, min(s + S, n)) for s in range(0, n, S)]
    elif mode == "eos":
        blocks = [(a, a + k) for a, k in zip(starts, sizes)]
    else:
        blocks, tok, cur = [], 0, 0
        for k in sizes:
            if mode == "complete_doc" and k == 1:  # a separator: ends the block, is itself skipped
                if cur > 1:
                    blocks.append((tok, tok + cur))
                tok, cur = tok + cur + 1, 0
            elif cur == 0 or cur + k <= S:
                cur += k
            else:
                blocks.append((tok, tok + cur))
                tok, cur = tok + cur, k
        if cur > (1 if mode == "complete_doc" else 0):
            blocks.append((tok, tok + cur))
    pieces = []
    for s, e in blocks:
        step = S if e - s > T else e - s
        pieces += [(a, min(a + step, e)) for a in range(s, e, step)]
    y = [eos] + x
    prev, out = [], []
    with torch.no_grad():
        for s, e in pieces:
            source = y[s:e]
            extra = len(prev) + len(source) - T
            if extra > 0:
                prev = prev[extra:]
            row = prev + source
            for j in range(len(source)):
                logits = model(torch.tensor(row[:len(prev) + j + 1]).view(1, -1))[0, -1]
                out.append(float(torch.log_softmax(logits.double(), -1)[x[s + j]]))
            prev = row[-C:] if C else []
    return torch.tensor(out, dtype=torch.float64)
