"""The speed work changes no result: the fused loss, the fused optimiser and the fast paths of
evaluation and generation match the plain computations they replace."""

import pytest
import torch
import torch.nn.functional as F

import lmtie.training.criterion as criterion
from lmtie.models import TransformerLanguageModel, TransformerLMConfig
from lmtie.training.config import OptimizationConfig
from lmtie.training.optim import build_optimizer, param_groups

PAD, V = 1, 53


def tiny_model(tied: bool, dtype=torch.float32, **kw) -> TransformerLanguageModel:
    torch.manual_seed(0)
    cfg = TransformerLMConfig(vocab_size=V, padding_idx=PAD, decoder_embed_dim=16, decoder_ffn_embed_dim=32,
                              decoder_layers=2, decoder_attention_heads=2, dropout=0.0, **kw,
                              share_decoder_input_output_embed=tied)
    return TransformerLanguageModel(cfg).to(dtype)


def batch(rows: int = 3, T: int = 7):
    g = torch.Generator().manual_seed(1)
    source, target = torch.randint(2, V, (rows, T), generator=g), torch.randint(2, V, (rows, T), generator=g)
    target[0, 4:] = PAD  # a padded row: ignored targets inside a chunk
    source[0, 5:] = PAD
    return source, target


def plain_loss_and_grads(model, source, target):
    """The reference: full logits, then cross-entropy (what lm_loss computed before fusing)."""
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(source).flatten(0, 1), target.flatten(), ignore_index=PAD, reduction="sum")
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def fused_loss_and_grads(model, source, target):
    model.zero_grad(set_to_none=True)
    loss, ntokens = criterion.lm_loss(model, source, target, PAD)
    assert ntokens == int(target.ne(PAD).sum())
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_fused_loss_and_every_gradient_match_plain_cross_entropy(monkeypatch, tied, dtype, tol):
    monkeypatch.setattr(criterion, "CHUNK_ELEMENTS", 4 * V)  # 4 rows a chunk: 21 rows make 6 chunks, one short
    model = tiny_model(tied, dtype)
    source, target = batch()
    ref_loss, ref_grads = plain_loss_and_grads(model, source, target)
    loss, grads = fused_loss_and_grads(model, source, target)
    assert loss.dtype == dtype
    assert torch.allclose(loss, ref_loss, rtol=tol, atol=0)
    assert grads.keys() == ref_grads.keys()
    for name, g in grads.items():
        assert torch.allclose(g, ref_grads[name], rtol=tol, atol=tol * float(ref_grads[name].abs().max())), name


def test_fused_loss_keeps_the_tied_pad_row_at_zero_gradient():
    model = tiny_model(tied=True)
    _, grads = fused_loss_and_grads(model, *batch())
    assert torch.equal(grads["decoder.embed_tokens.weight"][PAD], torch.zeros(16))
    assert grads["decoder.embed_tokens.weight"].abs().sum() > 0


def test_fused_loss_without_grad_equals_plain_loss_and_builds_no_graph():
    model = tiny_model(tied=True, dtype=torch.float64)
    source, target = batch()
    ref, _ = plain_loss_and_grads(model, source, target)
    with torch.no_grad():
        loss, _ = criterion.lm_loss(model, source, target, PAD)
    assert not loss.requires_grad and torch.allclose(loss, ref, rtol=1e-12)


@pytest.mark.parametrize("chunk_rows", [1, 5, 64])
def test_linear_cross_entropy_with_a_general_bias_matches_f_linear(chunk_rows):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(11, 8, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(V, 8, dtype=torch.float64, generator=g, requires_grad=True)
    bias = torch.randn(V, dtype=torch.float64, generator=g)
    bias[[PAD, 7]] = float("-inf")  # masked classes and a non-zero additive part together
    target = torch.randint(2, 7, (11,), generator=g)
    target[3] = PAD
    ref = F.cross_entropy(F.linear(x, w, bias), target, ignore_index=PAD, reduction="sum")
    gx, gw = torch.autograd.grad(3 * ref, (x, w))
    out = criterion.linear_cross_entropy(x, w, bias, target, PAD, chunk_rows=chunk_rows)
    fx, fw = torch.autograd.grad(3 * out, (x, w))  # a non-unit upstream gradient is applied in backward
    assert torch.allclose(out, ref, rtol=1e-12)
    assert torch.allclose(fx, gx, rtol=1e-10, atol=1e-12) and torch.allclose(fw, gw, rtol=1e-10, atol=1e-12)
    assert torch.equal(fw[[PAD, 7]], torch.zeros(2, 8, dtype=torch.float64))


def test_fused_loss_under_bf16_autocast_stays_close_to_plain():
    model = tiny_model(tied=True)
    source, target = batch()
    ref, _ = plain_loss_and_grads(model, source, target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = criterion.lm_loss(model, source, target, PAD)
    loss.backward()
    assert loss.dtype == torch.float32 and abs(float(loss.detach()) - float(ref)) < 0.02 * float(ref)
    assert model.decoder.embed_tokens.weight.grad.dtype == torch.float32


def test_fused_adamw_follows_the_for_loop_adamw():
    """The CPU optimiser now uses torch's fused AdamW kernel; five steps agree with the reference loop."""
    models = [tiny_model(tied=True), tiny_model(tied=True)]
    cfg = OptimizationConfig(lr=1e-2, weight_decay=0.1)
    fast = build_optimizer(models[0], cfg)
    assert fast.defaults["fused"]
    slow = torch.optim.AdamW(param_groups(models[1], cfg), lr=cfg.lr, betas=tuple(cfg.adam_betas),
                             eps=cfg.adam_eps, foreach=False)
    for step in range(5):  # fixed gradients: a loss's float noise in near-zero gradients (the key bias)
        for model, opt in zip(models, (fast, slow)):  # would be normalised by Adam into lr-sized steps
            for p in model.parameters():
                p.grad = torch.sin((step + 1) * p.detach() + 0.1)
            opt.step()
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), name


@pytest.mark.parametrize("tied", [True, False])
def test_output_layer_column_fill_equals_adding_the_pad_bias(tied):
    model = tiny_model(tied, torch.float64)
    feats = torch.randn(2, 5, 16, dtype=torch.float64, requires_grad=True)
    ref = F.linear(feats, model.output_weight, model.output_bias)
    out = model.logits(feats)
    assert torch.equal(out, ref) and torch.isneginf(out[..., PAD]).all()
    g = torch.randn_like(ref).masked_fill(torch.isneginf(ref), 0)
    assert torch.equal(torch.autograd.grad(out, feats, g)[0], torch.autograd.grad(ref, feats, g)[0])


def test_eval_logprob_in_place_equals_log_softmax():
    from lmtie.evaluation.scoring import _logprob_of

    g = torch.Generator().manual_seed(3)
    logits = 8 * torch.randn(40, V, dtype=torch.float64, generator=g)
    logits[:, PAD] = float("-inf")
    targets = torch.randint(2, V, (40,), generator=g)
    ref = torch.log_softmax(logits, -1).gather(1, targets[:, None]).squeeze(1)
    assert torch.allclose(_logprob_of(logits.clone(), targets), ref, rtol=1e-13, atol=1e-13)


def test_cached_single_token_step_without_mask_equals_the_full_forward():
    """A decoding step of one token attends to every cached key, so it builds no mask; its logits
    equal those of running the whole prefix at once."""
    model = tiny_model(tied=True, dtype=torch.float64).eval()
    tokens = batch(rows=2, T=6)[1].clamp(min=2)
    cache = model.new_cache(2, 6)
    with torch.no_grad():
        steps = [model(tokens[:, :3], cache)[:, -1]] + [model(tokens[:, i:i + 1], cache)[:, -1] for i in range(3, 6)]
        full = model(tokens)
    for i, step in enumerate(steps):
        assert torch.allclose(step, full[:, 2 + i], rtol=1e-10, atol=1e-10)
