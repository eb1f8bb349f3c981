"""Beam search and greedy decoding for encoder-decoder models, with fairseq's semantics.

The batch is ``beam`` rows per sentence (sentence-major: rows ``i*beam .. i*beam+beam-1`` belong
to sentence ``i``). Each step scores every continuation of every live row, keeps the ``2*beam``
best, ends (finalises) the ``</s>`` candidates among the first ``beam`` of them and carries the
first ``beam`` others on. A sentence is done once it holds ``beam`` finished hypotheses or reaches
its length limit, and then leaves the batch: the encoder output and the decoder cache are
``reorder``-ed with one index per step, which both follows the surviving beams and drops the rows
of finished sentences. With the cache the decoder sees only the newest token; without it the
whole prefix is decoded again (the reference the cache must match).

Ranking uses the summed log-probabilities; only a finished hypothesis is divided by
``len ** lenpen`` (its length counting ``</s>``), as fairseq does. Two deliberate differences
from fairseq: the length limit ``max_len_a * src_len + max_len_b`` uses each sentence's own
length (its tokens up to and including ``</s>``, i.e. fairseq's padded width for that sentence
alone), so batching never changes a hypothesis; and a beam larger than the vocabulary is
allowed (fairseq clips it to V - 1), which makes an exhaustive search possible on tiny models.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F

from lmtie.errors import UserError
from lmtie.evaluation.generation import column_major_weights
from lmtie.models import unwrap

# {"tokens": LongTensor (ends with </s>), "score": float, "positional_scores": FloatTensor}, tensors on the CPU
Hypothesis = dict


class SequenceGenerator:
    """Translate batches of source sentences with beam search (``generate``) or argmax (``greedy``)."""

    def __init__(self, model: torch.nn.Module, tgt_dict: Any, beam: int = 5, max_len_a: float = 0.0,
                 max_len_b: int = 200, min_len: int = 1, lenpen: float = 1.0, unk_penalty: float = 0.0,
                 use_cache: bool = True):
        if beam < 1:
            raise UserError(f"--beam {beam} must be >= 1")
        if max_len_a < 0 or max_len_b < 0 or min_len < 0:
            raise UserError("--max-len-a, --max-len-b and --min-len must be >= 0")
        if min_len > max_len_b:
            raise UserError(f"--min-len {min_len} is larger than --max-len-b {max_len_b}: no hypothesis could end")
        self.model, self.beam, self.use_cache = model, beam, use_cache
        self.max_len_a, self.max_len_b, self.min_len = max_len_a, max_len_b, min_len
        self.lenpen, self.unk_penalty = lenpen, unk_penalty
        self.pad, self.eos, self.unk = tgt_dict.pad(), tgt_dict.eos(), tgt_dict.unk()

    def generate(self, src_tokens: torch.Tensor) -> list[list[Hypothesis]]:
        """(B, S) right-padded source ids (each row ending with </s>) -> per sentence, its hypotheses
        best first: ``beam`` of them (fewer only when fewer sequences exist within the limits)."""
        with self._decoding():
            return self._beam_search(src_tokens)

    __call__ = generate

    def greedy(self, src_tokens: torch.Tensor) -> list[list[Hypothesis]]:
        """The most likely token at each step (same limits, penalties and output shape as ``generate``)."""
        with self._decoding():
            return self._greedy(src_tokens)

    @contextlib.contextmanager
    def _decoding(self):
        """eval() (restored afterwards), no autograd, and the decoding weight layout of the LM sampler."""
        was_training = self.model.training
        self.model.eval()
        try:
            with column_major_weights(self.model), torch.no_grad():
                yield
        finally:
            self.model.train(was_training)

    # --- shared by beam search and greedy -------------------------------------------------------

    def _max_lens(self, src_tokens: torch.Tensor) -> torch.Tensor:
        """(B,) most tokens before </s> per sentence: a * src_len + b, within the decoder's positions."""
        src_len = src_tokens.ne(self.pad).sum(dim=1)
        max_src, max_tgt = unwrap(self.model).max_positions
        if int(src_len.max()) > max_src:
            raise UserError(f"a source sentence has {int(src_len.max())} tokens but the model reads at most {max_src}")
        limit = (self.max_len_a * src_len.double() + self.max_len_b).long()  # int() like fairseq
        limit = limit.clamp(max=max_tgt - 1)  # the last step's input is </s> + max_len tokens
        if int(limit.min()) < self.min_len:
            raise UserError(f"--min-len {self.min_len} does not fit the model's {max_tgt} target positions")
        return limit

    def _start(self, src_tokens: torch.Tensor, rows_per_sentence: int):
        """Encoder output and cache for ``rows_per_sentence`` rows per sentence; (B,) length limits."""
        m = unwrap(self.model)
        max_lens = self._max_lens(src_tokens)
        n = src_tokens.size(0) * rows_per_sentence
        enc = m.encode(src_tokens)
        if rows_per_sentence > 1:
            enc = enc.reorder(torch.arange(src_tokens.size(0), device=src_tokens.device)
                              .repeat_interleave(rows_per_sentence))
        cache = m.new_cache(n, int(max_lens.max()) + 1) if self.use_cache else None
        tokens = src_tokens.new_full((n, int(max_lens.max()) + 2), self.pad)  # </s> + tokens + </s>
        tokens[:, 0] = self.eos
        return enc, cache, tokens, max_lens

    def _lprobs(self, step: int, tokens: torch.Tensor, enc, cache, row_max_len: torch.Tensor) -> torch.Tensor:
        """(N, V) next-token log-probabilities of the N rows, with fairseq's masks applied:
        never <pad>, the unk penalty, only </s> at the length limit, no </s> before min_len."""
        m = unwrap(self.model)
        prev = tokens[:, step:step + 1] if cache is not None else tokens[:, :step + 1]
        logits = m.logits(m.decode(prev, enc, cache, features_only=True)[:, -1])
        lp = F.log_softmax(logits.float(), dim=-1)
        lp[:, self.pad] = float("-inf")
        lp[:, self.unk] -= self.unk_penalty
        at_limit = row_max_len <= step
        if bool(at_limit.any()):
            eos_lp = lp[at_limit, self.eos]
            lp[at_limit] = float("-inf")
            lp[at_limit, self.eos] = eos_lp
        if step < self.min_len:
            lp[:, self.eos] = float("-inf")
        return lp

    def _hypothesis(self, tokens: torch.Tensor, pos: torch.Tensor, step: int, eos_lp: float,
                    total: float) -> Hypothesis:
        """The row's tokens 1..step then </s>; ``total`` (summed log-probs) / (step + 1) ** lenpen."""
        toks = torch.cat([tokens[1:step + 1], tokens.new_tensor([self.eos])])
        scores = torch.cat([pos[:step], pos.new_tensor([eos_lp])])
        return {"tokens": toks.cpu(), "score": total / (step + 1) ** self.lenpen, "positional_scores": scores.cpu()}

    def _reorder(self, order: torch.Tensor, enc, cache):
        """Follow ``order`` (indices of the previous rows) in the encoder output and the cache."""
        if cache is not None:
            cache.reorder(order)
        return enc.reorder(order)

    # --- beam search ------------------------------------------------------------------------------

    def _beam_search(self, src_tokens: torch.Tensor) -> list[list[Hypothesis]]:
        beam = self.beam
        enc, cache, tokens, max_lens = self._start(src_tokens, beam)
        finalized: list[list[Hypothesis]] = [[] for _ in range(src_tokens.size(0))]
        sent = torch.arange(src_tokens.size(0), device=tokens.device)  # the live sentences, in batch order
        pos = tokens.new_zeros(tokens.shape, dtype=torch.float)  # per-token log-probs of each row
        cum = pos.new_zeros(tokens.size(0))  # their sum
        for step in range(int(max_lens.max()) + 1):
            lp = self._lprobs(step, tokens, enc, cache, max_lens[sent].repeat_interleave(beam))
            cand_scores, cand_rows, cand_toks = self._candidates(step, lp, cum, beam)
            done = self._finalize(step, cand_scores, cand_rows, cand_toks, lp, tokens, pos, sent, max_lens, finalized)
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            # the first beam candidates of each live sentence that do not end it
            ended = cand_toks.eq(self.eos) & cand_scores.isfinite()
            rank = ended[keep].long() * cand_scores.size(1) + torch.arange(cand_scores.size(1), device=lp.device)
            pick = rank.topk(beam, dim=1, largest=False).indices  # (b', beam) candidate positions
            rows = cand_rows[keep].gather(1, pick).view(-1)
            new_toks = cand_toks[keep].gather(1, pick).view(-1)
            tokens, pos = tokens[rows], pos[rows]
            tokens[:, step + 1] = new_toks
            pos[:, step] = lp[rows, new_toks]
            cum = cand_scores[keep].gather(1, pick).view(-1)
            sent = sent[keep]
            enc = self._reorder(rows, enc, cache)
        return [sorted(hyps, key=lambda h: h["score"], reverse=True) for hyps in finalized]

    def _candidates(self, step: int, lp: torch.Tensor, cum: torch.Tensor, beam: int):
        """The 2*beam best continuations per sentence: (b, 2*beam) summed scores, source rows, tokens.

        At step 0 the beam rows of a sentence are identical, so only the first is expanded (else the
        beam would hold ``beam`` copies of each hypothesis). Missing candidates (fewer than 2*beam
        exist) are -inf and never finalised or continued with a finite score.
        """
        V = lp.size(1)
        b = lp.size(0) // beam
        scores = (lp + cum.unsqueeze(1)).view(b, beam, V)
        flat = (scores[:, :1] if step == 0 else scores).reshape(b, -1)
        if flat.size(1) < 2 * beam:
            flat = F.pad(flat, (0, 2 * beam - flat.size(1)), value=float("-inf"))
        cand_scores, idx = flat.topk(2 * beam, dim=1)  # (b, 2*beam), best first
        cand_beam = (idx // V).clamp(max=beam - 1)  # padding past the last real candidate stays in range
        cand_rows = cand_beam + torch.arange(b, device=lp.device).unsqueeze(1) * beam
        return cand_scores, cand_rows, idx % V

    def _finalize(self, step, cand_scores, cand_rows, cand_toks, lp, tokens, pos, sent, max_lens, finalized):
        """Finish the </s> candidates among each sentence's first ``beam`` (best first, at most ``beam``
        per sentence); return (b,) True for the sentences now done."""
        beam = self.beam
        ends = cand_toks[:, :beam].eq(self.eos) & cand_scores[:, :beam].isfinite()
        for i, j in ends.nonzero().tolist():
            hyps = finalized[int(sent[i])]
            if len(hyps) < beam:
                r = int(cand_rows[i, j])
                hyps.append(self._hypothesis(tokens[r], pos[r], step, float(lp[r, self.eos]), float(cand_scores[i, j])))
        full = torch.tensor([len(finalized[s]) >= beam for s in sent.tolist()], device=sent.device)
        return full | (max_lens[sent] <= step)

    # --- greedy -----------------------------------------------------------------------------------

    def _greedy(self, src_tokens: torch.Tensor) -> list[list[Hypothesis]]:
        enc, cache, tokens, max_lens = self._start(src_tokens, 1)
        out: list[list[Hypothesis]] = [[] for _ in range(src_tokens.size(0))]
        sent = torch.arange(src_tokens.size(0), device=tokens.device)
        pos = tokens.new_zeros(tokens.shape, dtype=torch.float)
        cum = pos.new_zeros(tokens.size(0))  # summed in the same order as the beam search's
        for step in range(int(max_lens.max()) + 1):
            lp = self._lprobs(step, tokens, enc, cache, max_lens[sent])
            best, tok = lp.max(dim=1)
            tokens[:, step + 1], pos[:, step] = tok, best
            cum = cum + best
            ended = tok.eq(self.eos)
            for i in ended.nonzero().squeeze(1).tolist():
                out[int(sent[i])].append(self._hypothesis(tokens[i], pos[i], step, float(best[i]), float(cum[i])))
            keep = (~ended).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            tokens, pos, cum, sent = tokens[keep], pos[keep], cum[keep], sent[keep]
            enc = self._reorder(keep, enc, cache)
        return out
