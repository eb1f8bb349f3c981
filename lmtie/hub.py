"""Notebook interface, like fairseq's hub: ``lm = lmtie.load(path)``, then score, generate, encode, decode."""

from __future__ import annotations

import os

import torch

from lmtie.evaluation.corpus import checkpoint_tokenizer, text_to_eval
from lmtie.evaluation.evaluate import default_device, evaluate, window_settings
from lmtie.evaluation.generation import generate, prompt_to_ids
from lmtie.checkpoint import load_model


class LanguageModel:
    """A checkpoint's model with its own tokeniser; every call runs under ``torch.inference_mode``."""

    def __init__(self, model: torch.nn.Module, checkpoint, tokenizer, device: torch.device):
        self.model = model.eval()
        self.checkpoint = checkpoint
        self.tokenizer = tokenizer
        self.dictionary = checkpoint.dictionary
        self.device = device

    def encode(self, text: str) -> torch.Tensor:
        """Ids of ``text``, one ``</s>`` per line."""
        return torch.tensor(self.tokenizer.encode(text), dtype=torch.long)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(torch.as_tensor(ids).tolist())

    def score(self, text: str, context_window: int = 0, tokens_per_sample: int | None = None,
              sample_break_mode: str | None = None, batch_size: int | None = None,
              max_tokens: int | None = 8192, window_alignment: str = "fairseq") -> dict:
        """The metrics of ``lmtie-eval-lm`` (``tokens`` is their count) plus ``token_ids`` and
        ``positional_scores``, the natural-log probability of each token, as fairseq's hub names them
        (the scored tokens: with ``complete_doc``, not the empty lines between documents)."""
        T, mode = window_settings(self.model, self.checkpoint, tokens_per_sample, sample_break_mode)
        data = text_to_eval(text, self.tokenizer, "text")
        logprobs, metrics = evaluate(self.model, data, self.dictionary.eos(), self.dictionary.pad(), T,
                                     context_window, mode, batch_size, max_tokens, window_alignment=window_alignment)
        token_ids = torch.as_tensor(data.scored_tokens(mode)[0:], dtype=torch.long)
        return {**metrics, "token_ids": token_ids, "positional_scores": logprobs}

    def generate(self, prompt: str = "", max_new_tokens: int = 64, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, greedy: bool = False, seed: int | None = None, num_samples: int = 1,
                 use_cache: bool = True, return_count: bool = False):
        """The prompt and its continuation as text (a list when ``num_samples > 1``); ``seed`` makes it repeatable.

        Generation stops early (with a warning) where the model's positions run out; with
        ``return_count`` the result is ``(text_or_texts, new_tokens_per_sample)``.
        """
        ids = prompt_to_ids(self.tokenizer, prompt)
        gen = None
        if seed is not None:
            gen = torch.Generator(self.device).manual_seed(seed)
        new = generate(self.model, ids, max_new_tokens, temperature, top_k, top_p, greedy, use_cache, gen,
                       num_samples)
        texts = [self.decode(ids[1:] + row) for row in new.tolist()]  # ids[0] is the </s> that opens the line
        result = texts[0] if num_samples == 1 else texts
        return (result, new.size(1)) if return_count else result


def load(path: str | os.PathLike, device: str | None = None) -> LanguageModel:
    """Load an lmtie checkpoint, or import a local Hugging Face ``save_pretrained`` directory
    (GPT-2, Llama, Qwen3: :mod:`lmtie.interop.hf_import`), for scoring and generation (CUDA when
    available, unless ``device`` says).

    Any problem with the file (not a checkpoint, damaged, a config that does not fit its weights)
    raises :class:`lmtie.errors.UserError` with a one-line message naming it, never another type."""
    dev = default_device(device)
    model, ckpt = load_model(path, dev)
    return LanguageModel(model, ckpt, checkpoint_tokenizer(ckpt), dev)
