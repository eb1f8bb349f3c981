"""Sampling text from a language model, one token at a time.

With the key/value cache each new token runs the model on that token alone against the stored
keys and values (O(context) per token); without it every step re-runs the whole prefix. Either
way only the last position goes through the output layer: the (T x V) logits of the others
would be thrown away.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lmtie.errors import UserError
from lmtie.evaluation.corpus import warn_unknown
from lmtie.models import unwrap


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """(B, V) logits with everything outside the top ``k`` / the nucleus ``p`` set to -inf."""
    if top_k > 0 and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        drop = probs.cumsum(dim=-1) - probs >= top_p  # mass before this token already reaches p
        drop[:, 0] = False  # always keep the most likely token
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


def next_token(logits: torch.Tensor, greedy: bool, temperature: float, top_k: int, top_p: float,
               generator: torch.Generator | None) -> torch.Tensor:
    """(B, V) logits of the last position -> (B, 1) chosen ids."""
    if greedy:
        return logits.argmax(dim=-1, keepdim=True)
    probs = F.softmax(filter_logits(logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature, top_k, top_p), dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


def _room(model, prompt_len: int, max_new_tokens: int) -> int:
    """How many new tokens fit in the model's positions (warn when that is fewer than asked)."""
    limit = unwrap(model).max_positions
    if prompt_len > limit:
        raise UserError(f"--prompt is {prompt_len} tokens but the model has only {limit} positions; shorten it")
    if prompt_len + max_new_tokens > limit:
        warnings.warn(f"stopping after {limit - prompt_len} new tokens: the model has {limit} positions "
                      f"(max_target_positions) and the prompt uses {prompt_len}", stacklevel=3)
        return limit - prompt_len
    return max_new_tokens


def generate(model: torch.nn.Module, prompt_ids: Sequence[int] | torch.Tensor, max_new_tokens: int,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, greedy: bool = False,
             use_cache: bool = True, generator: torch.Generator | None = None,
             num_samples: int = 1) -> torch.Tensor:
    """(num_samples, n_new) new token ids continuing ``prompt_ids`` (which must not be empty)."""
    device = next(unwrap(model).parameters()).device
    prompt = torch.as_tensor(prompt_ids, dtype=torch.long, device=device).view(1, -1).repeat(num_samples, 1)
    if prompt.size(1) == 0:
        raise ValueError("prompt_ids is empty; start it with </s> at least")
    steps = _room(model, prompt.size(1), max_new_tokens)
    pick = lambda logits: next_token(logits, greedy, temperature, top_k, top_p, generator)  # noqa: E731
    was_training = model.training
    model.eval()
    try:
        with column_major_weights(model), torch.inference_mode():
            run = _decode_cached if use_cache else _decode_uncached
            return run(model, prompt, steps, pick)
    finally:
        model.train(was_training)


@contextlib.contextmanager
def column_major_weights(model: nn.Module):
    """Store the Linear weights and the output matrix column-major while decoding on a CPU.

    A cached step multiplies one row per sequence by every weight, reading each weight once (and
    a step without the cache does so for the last position's logits): with the (out, in)
    matrices stored column-major, MKL's matrix-vector product streams them at several times the
    bandwidth of the row-major layout (README, "Performance"). Only strides change, not values,
    and the row-major layout is restored afterwards, so each call copies the weights twice, and
    the model must not be used from another thread meanwhile. GPUs are left alone.
    """
    m = unwrap(model)
    linear = [mod.weight for mod in m.modules() if isinstance(mod, nn.Linear)] + [m.output_weight]
    weights = [w for w in {id(w): w for w in linear}.values()  # a tied matrix once
               if w.device.type == "cpu" and type(w.data) is torch.Tensor]  # not sharded (DTensor)
    for w in weights:
        w.data = w.data.t().contiguous().t()
    try:
        yield
    finally:
        for w in weights:
            w.data = w.data.contiguous()


def _decode_cached(model, prompt: torch.Tensor, steps: int, pick) -> torch.Tensor:
    """Prompt once, then one token per step against the cache."""
    out = prompt.new_empty((prompt.size(0), steps))
    if steps == 0:
        return out
    cache = unwrap(model).new_cache(prompt.size(0), prompt.size(1) + steps)
    logits = _last_logits(model, prompt, cache)
    for i in range(steps):
        out[:, i:i + 1] = pick(logits)
        if i + 1 < steps:
            logits = _last_logits(model, out[:, i:i + 1], cache)
    return out


def _decode_uncached(model, prompt: torch.Tensor, steps: int, pick) -> torch.Tensor:
    """Re-run the whole sequence for every new token (the reference the cache must match)."""
    seq = prompt
    for _ in range(steps):
        seq = torch.cat([seq, pick(_last_logits(model, seq))], dim=1)
    return seq[:, prompt.size(1):]


def _last_logits(model, tokens: torch.Tensor, cache=None) -> torch.Tensor:
    """(B, V) logits of the last position of (B, T) ``tokens``."""
    m = unwrap(model)
    return m.logits(m.features(tokens, cache)[:, -1])


def prompt_to_ids(tokenizer, text: str) -> list[int]:
    """``</s>`` (the start of a line, as every document starts in training) then the prompt's ids;
    the prompt's last line stays open unless ``text`` ends with a newline. Unknown symbols warn."""
    ids = tokenizer.encode(text) if text else []
    if ids and not text.endswith("\n"):
        ids = ids[:-1]  # encode closes every line with </s>; keep the last one open to continue it
    warn_unknown(tokenizer, ids, "--prompt")
    return [tokenizer.dictionary.eos()] + list(ids)
