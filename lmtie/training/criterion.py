"""The language-model loss: summed token NLL, pad targets ignored.

The output projection and the cross-entropy run fused, a chunk of rows at a time, so the full
(B x T x V) logits and their gradient never exist at once: each chunk's gradient with respect
to the features and the output matrix is formed while its logits are at hand, and the chunk is
dropped. Results equal the plain ``F.cross_entropy(model(source))`` (tests/test_perf_equivalence.py).
"""

from __future__ import annotations

import torch
from torch import nn

from lmtie.models import unwrap

CHUNK_ELEMENTS = 2 ** 23  # logits per chunk (32 MiB in fp32): matmuls of fewer rows run slower


def lm_loss(model: nn.Module, source: torch.Tensor, target: torch.Tensor, pad: int,
            label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
    """(sum of -log p(target) over non-pad targets, in nats; number of those targets).

    In training mode the model's ``regularization()`` (a per-token penalty, e.g. Press & Wolf's on
    P) is added once per target token, so the trainer's division by the token count gives
    mean NLL + penalty; in eval mode the loss is the NLL alone.
    """
    ntokens = int(target.ne(pad).sum())
    m = unwrap(model)
    # through the wrapper, so DDP prepares its gradient reduction and FSDP gathers the parameters
    features = m.head_input(model(source, features_only=True))  # (B, T, d_out)
    loss = linear_cross_entropy(features.flatten(0, 1), m.output_weight, m.output_bias, target.flatten(), pad,
                                label_smoothing=label_smoothing)
    penalty = m.regularization() if m.training else None
    return (loss if penalty is None else loss + ntokens * penalty), ntokens


def linear_cross_entropy(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         target: torch.Tensor, ignore_index: int, chunk_rows: int | None = None,
                         label_smoothing: float = 0.0) -> torch.Tensor:
    """``F.cross_entropy(F.linear(features, weight, bias), target, reduction="sum")`` without the full logits.

    (N, d) features, (V, d) weight, (V,) bias of zeros and -inf (masked classes), (N,) targets.
    With ``label_smoothing`` eps > 0 it is fairseq's ``label_smoothed_nll_loss``: the target keeps
    1 - eps - eps_i of the mass and every class eps_i = eps / (K - 1), where K counts the classes that can
    be predicted (the masked ones, <pad>, get none: fairseq spreads mass over all V, an infinite
    loss under lmtie's -inf pad logit).
    """
    if chunk_rows is None:
        chunk_rows = max(1, CHUNK_ELEMENTS // weight.size(0))
    return _LinearCrossEntropy.apply(features, weight, bias, target, ignore_index, chunk_rows, label_smoothing)


class _LinearCrossEntropy(torch.autograd.Function):
    """Gradients are computed during the forward pass, chunk by chunk, and scaled in backward."""

    @staticmethod
    def forward(ctx, features, weight, bias, target, ignore_index, chunk_rows, label_smoothing=0.0):
        device = features.device.type
        compute = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else features.dtype
        with torch.autocast(device, enabled=False):
            x, w = features.to(compute), weight.to(compute)
            acc = torch.promote_types(w.dtype, torch.float32)  # softmax and sums at least in fp32
            grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
            grad_w = torch.zeros_like(weight, dtype=acc) if ctx.needs_input_grad[1] else None
            masked, additive = _split_bias(bias)
            smooth = None
            if label_smoothing > 0:
                classes = w.size(0) - (0 if masked is None else masked.numel())
                smooth = (label_smoothing, label_smoothing / max(classes - 1, 1), masked)
            total = torch.zeros((), dtype=acc, device=features.device)
            for s in range(0, x.size(0), chunk_rows):
                rows = slice(s, s + chunk_rows)
                logits = torch.mm(x[rows], w.t()).to(acc)  # (n, V)
                if additive is not None:
                    logits.add_(additive.to(acc))
                if masked is not None:
                    logits.index_fill_(1, masked, float("-inf"))
                total += _chunk(logits, x[rows], w, target[rows], ignore_index,
                                None if grad_x is None else grad_x[rows], grad_w, smooth)
        ctx.save_for_backward(grad_x, grad_w)
        ctx.dtypes = (features.dtype, weight.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_x, grad_w = ctx.saved_tensors
        gx = None if grad_x is None else (grad_x * grad_out).to(ctx.dtypes[0])
        gw = None if grad_w is None else (grad_w * grad_out).to(ctx.dtypes[1])
        return gx, gw, None, None, None, None, None


def _split_bias(bias: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(indices of -inf entries, the bias if any other entry is non-zero): lmtie's output bias only
    masks <pad>, which one column fill does instead of adding a (V,) vector to every row."""
    if bias is None:
        return None, None
    inf = torch.isneginf(bias)
    masked = inf.nonzero().squeeze(1) if bool(inf.any()) else None
    return masked, (bias if bool(bias.masked_fill(inf, 0).ne(0).any()) else None)


def _chunk(logits, x, w, target, ignore_index, grad_x, grad_w, smooth=None) -> torch.Tensor:
    """Summed NLL of one chunk; writes d loss/d x into ``grad_x`` and adds d loss/d w to ``grad_w``.

    With e = exp(logits - max) and s its row sum, d nll/d logits = (e - s * onehot(target)) / s:
    the one-hot part touches n entries, and the 1/s row scale goes on the (n, d) factors.
    ``smooth`` = (eps, eps_i, masked classes): the loss is (1 - eps - eps_i) nll + eps_i sum_c -log p_c over
    the K unmasked classes, whose gradient is p - (1 - eps - eps_i) onehot - eps_i (on those classes).
    """
    valid = target.ne(ignore_index)
    safe = target.masked_fill(~valid, 0).unsqueeze(1)  # (n, 1)
    picked = logits.gather(1, safe).squeeze(1)  # (n,)
    top = logits.amax(dim=1, keepdim=True)  # (n, 1)
    if smooth is not None:
        eps, eps_i, masked = smooth
        finite = logits if masked is None else logits.index_fill(1, masked, 0.0)
        classes = logits.size(1) - (0 if masked is None else masked.numel())
        logit_sum = finite.sum(dim=1)  # sum_c logits_c over the unmasked classes
    e = logits.sub_(top).exp_()  # in place: the logits are not needed again
    s = e.sum(dim=1)
    lse = s.log() + top.squeeze(1)
    nll = lse - picked
    if smooth is not None:  # sum_c -log p_c = K lse - sum_c logits_c
        nll = (1 - eps - eps_i) * nll + eps_i * (classes * lse - logit_sum)
    nll = torch.where(valid, nll, 0.0).sum()
    if grad_x is None and grad_w is None:
        return nll
    if smooth is None:
        e.scatter_add_(1, safe, -s.unsqueeze(1))
    else:
        e.scatter_add_(1, safe, (-(1 - eps - eps_i) * s).unsqueeze(1)).sub_(eps_i * s.unsqueeze(1))
        if masked is not None:
            e.index_fill_(1, masked, 0.0)
    inv = torch.where(valid, s.reciprocal(), 0.0).unsqueeze(1)  # (n, 1); ignored rows get no gradient
    e = e.to(x.dtype)
    if grad_x is not None:
        torch.mm(e, w, out=grad_x).mul_(inv.to(x.dtype))  # (n, d)
    if grad_w is not None:
        grad_w.addmm_(e.t().to(grad_w.dtype), (x * inv.to(x.dtype)).to(grad_w.dtype))
    return nll
