"""The weight-sharing building blocks keep one Parameter through training, moves, copies and
checkpoints, and the fan-in initialisers draw the variance they promise."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmtie.errors import UserError
from lmtie.io import atomic_path
from lmtie.modules.init import fan_in, he_normal_, lecun_normal_
from lmtie.modules.sharing import SharedKernelConv2d, TiedAutoencoder

F64 = torch.float64
ACT = {"identity": lambda x: x, "relu": F.relu, "tanh": torch.tanh}


# ---- untied references: the same maps written with two separate weight tensors ----

def conv_reference(m: SharedKernelConv2d, x, w_first, w_second):
    h = ACT[m.activation](F.conv2d(x, w_first, m.first_bias, padding=m.padding))
    return F.conv2d(h, w_second.transpose(2, 3), m.second_bias, padding=m.second_padding)


def autoencoder_reference(m: TiedAutoencoder, x, w_enc, w_dec):
    h = ACT[m.activation](x @ w_enc.T + m.encoder_bias)  # (..., d_hidden)
    return h @ w_dec + m.decoder_bias  # (..., d_in)


def make_conv(seed=0, dtype=F64, **kw):
    torch.manual_seed(seed)
    kw = {"channels": 3, "kernel_size": (5, 3), "padding": (2, 1), "activation": "tanh", "bias": True, **kw}
    return SharedKernelConv2d(**kw).to(dtype)


def make_autoencoder(seed=0, dtype=F64, **kw):
    torch.manual_seed(seed)
    m = TiedAutoencoder(**{"d_in": 6, "d_hidden": 4, "activation": "tanh", **kw}).to(dtype)
    with torch.no_grad():  # non-zero biases, so a dropped bias would show
        m.encoder_bias.normal_()
        m.decoder_bias.normal_()
    return m


def conv_input(dtype=F64):
    return torch.randn(2, 3, 9, 7, dtype=dtype, generator=torch.Generator().manual_seed(1))


def ae_input(dtype=F64):
    return torch.randn(5, 2, 6, dtype=dtype, generator=torch.Generator().manual_seed(1))


CASES = {
    "conv": (make_conv, conv_input, conv_reference),
    "autoencoder": (make_autoencoder, ae_input, autoencoder_reference),
    "autoencoder-mm": (lambda **kw: make_autoencoder(form="mm", **kw), ae_input, autoencoder_reference),
}


def acts_tied(m, make_input, reference) -> bool:
    """Write fresh values into ``m.weight`` and check both uses read them."""
    with torch.no_grad():
        m.weight.copy_(torch.randn(m.weight.shape, generator=torch.Generator().manual_seed(7)))
        x = make_input(m.weight.dtype)
        w = m.weight.detach()
        return torch.allclose(m(x), reference(m, x, w, w), rtol=1e-6, atol=1e-6)


# ---- one Parameter ----

def test_conv_registers_the_kernel_once():
    m = make_conv(bias=False)
    assert [name for name, _ in m.named_parameters()] == ["weight"]
    assert list(m.state_dict()) == ["weight"]
    assert sum(p.numel() for p in m.parameters()) == 3 * 3 * 5 * 3


def test_conv_biases_are_per_use_and_not_shared():
    m = make_conv(bias=True)
    assert sorted(m.state_dict()) == ["first_bias", "second_bias", "weight"]
    assert m.first_bias.data_ptr() != m.second_bias.data_ptr()


def test_autoencoder_registers_the_weight_once():
    m = make_autoencoder()
    assert sorted(m.state_dict()) == ["decoder_bias", "encoder_bias", "weight"]
    assert len(list(m.parameters())) == 3
    assert sum(p.numel() for p in m.parameters()) == 6 * 4 + 4 + 6


# ---- gradients: shared grad == sum of the two untied uses' grads ----

@pytest.mark.parametrize("case", list(CASES))
def test_shared_gradient_is_sum_of_untied_gradients(case):
    make, make_input, reference = CASES[case]
    m = make()
    x = make_input()
    w_first = m.weight.detach().clone().requires_grad_()
    w_second = m.weight.detach().clone().requires_grad_()
    out, out_ref = m(x), reference(m, x, w_first, w_second)
    assert torch.allclose(out, out_ref, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(out)
    (out * upstream).sum().backward()
    (out_ref * upstream).sum().backward()
    assert torch.allclose(m.weight.grad, w_first.grad + w_second.grad, rtol=1e-10, atol=1e-12)
    # Both uses contribute, so neither alone matches the shared gradient.
    assert not torch.allclose(m.weight.grad, w_first.grad, rtol=1e-3)
    assert not torch.allclose(m.weight.grad, w_second.grad, rtol=1e-3)


# ---- the tie survives .to(dtype), deepcopy, and a state_dict round trip ----

@pytest.mark.parametrize("case", list(CASES))
def test_tie_survives_dtype_move(case):
    make, make_input, reference = CASES[case]
    m = make(dtype=torch.float32)
    assert m.to(F64) is m
    assert m.weight.dtype == F64 and len(list(m.parameters())) == len(m.state_dict())
    assert acts_tied(m, make_input, reference)


@pytest.mark.parametrize("case", list(CASES))
def test_tie_survives_deepcopy(case):
    make, make_input, reference = CASES[case]
    m = make()
    twin = copy.deepcopy(m)
    assert twin.weight is not m.weight and torch.equal(twin.weight, m.weight)
    assert len(list(twin.parameters())) == len(list(m.parameters()))
    before = m.weight.detach().clone()
    assert acts_tied(twin, make_input, reference)
    assert torch.equal(m.weight, before)  # the copy owns its weight


@pytest.mark.parametrize("case", list(CASES))
def test_tie_survives_state_dict_round_trip(case, tmp_path):
    make, make_input, reference = CASES[case]
    m = make(seed=0)
    path = tmp_path / "model.pt"
    with atomic_path(path) as tmp:
        torch.save(m.state_dict(), tmp)
    fresh = make(seed=1)
    assert not torch.equal(fresh.weight, m.weight)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(fresh.weight, m.weight)
    x = make_input()
    assert torch.equal(fresh(x), m(x))
    assert len(list(fresh.parameters())) == len(list(m.parameters()))
    assert acts_tied(fresh, make_input, reference)


def test_tie_check_fails_for_an_untied_twin():
    """The check above can fail: two Parameters that merely hold equal values do not pass it."""

    class Untied(TiedAutoencoder):
        def __init__(self):
            super().__init__(6, 4, activation="tanh")
            self.decoder_weight = nn.Parameter(self.weight.detach().clone())

        def decode(self, h):
            return F.linear(h, self.decoder_weight.t(), self.decoder_bias)

    m = Untied().to(F64)
    assert torch.allclose(m(ae_input()), autoencoder_reference(m, ae_input(), m.weight, m.weight))
    assert not acts_tied(m, ae_input, autoencoder_reference)


# ---- the conv's transposed kernel ----

def test_transposed_kernel_swaps_spatial_dims_and_is_contiguous():
    m = make_conv()
    assert not m.weight.transpose(2, 3).is_contiguous()  # so .contiguous() does real work
    k = m.transposed_kernel()
    assert k.is_contiguous() and k.shape == (3, 3, 3, 5)
    assert torch.equal(k, m.weight.transpose(2, 3))
    assert k.grad_fn is not None  # still in the graph of the one parameter


def test_default_second_padding_keeps_a_same_conv_same_twice():
    m = make_conv(kernel_size=(5, 3), padding=(2, 1))
    assert m.second_padding == (1, 2)
    assert m(conv_input()).shape == (2, 3, 9, 7)


def test_design_note_shapes_padding_two_then_zero():
    m = make_conv(kernel_size=5, padding=2, second_padding=0)
    assert m(torch.randn(2, 3, 12, 12, dtype=F64)).shape == (2, 3, 8, 8)


# ---- the autoencoder's two forms ----

def test_linear_and_mm_forms_agree_in_output_and_gradient():
    lin = make_autoencoder(form="linear", activation="relu")
    mm = make_autoencoder(form="mm", activation="relu")
    mm.load_state_dict(lin.state_dict())
    x = ae_input()  # rank 3: mm form must flatten the leading dims
    assert torch.allclose(lin.encode(x), mm.encode(x), rtol=1e-12, atol=1e-12)
    out_lin, out_mm = lin(x), mm(x)
    assert out_mm.shape == x.shape
    assert torch.allclose(out_lin, out_mm, rtol=1e-12, atol=1e-12)
    out_lin.square().sum().backward()
    out_mm.square().sum().backward()
    assert torch.allclose(lin.weight.grad, mm.weight.grad, rtol=1e-10, atol=1e-12)


def test_autoencoder_without_bias_is_a_pure_tied_map():
    m = TiedAutoencoder(6, 4, activation="identity", form="mm", bias=False).to(F64)
    assert list(m.state_dict()) == ["weight"]
    x = ae_input()
    assert torch.allclose(m(x), x @ m.weight.T @ m.weight, rtol=1e-12, atol=1e-12)


# ---- initialisers ----

def test_fan_in_of_linear_and_conv_weights():
    assert fan_in(nn.Linear(7, 5).weight) == 7
    assert fan_in(nn.Conv2d(4, 6, (3, 5)).weight) == 4 * 3 * 5
    with pytest.raises(ValueError, match="2 or more dims"):
        fan_in(torch.zeros(5))


def assert_normal_with_variance(t: torch.Tensor, var: float, rel_tol: float):
    n = t.numel()
    assert abs(t.var().item() / var - 1) < rel_tol, (t.var().item(), var)
    assert abs(t.mean().item()) < 5 * (var / n) ** 0.5


@pytest.mark.parametrize("init, gain", [(lecun_normal_, 1.0), (he_normal_, 2.0)])
def test_initialiser_variance_on_a_linear_weight(init, gain):
    # 1M draws: the sample variance is within ~0.14% (1 sigma); a 2% tolerance still
    # separates LeCun from He (x2) and fan-in from fan-out (x16).
    t = init(torch.empty(256, 4096), generator=torch.Generator().manual_seed(0))
    assert_normal_with_variance(t, gain / 4096, rel_tol=0.02)


@pytest.mark.parametrize("init, gain", [(lecun_normal_, 1.0), (he_normal_, 2.0)])
def test_initialiser_variance_on_a_conv_kernel_uses_in_times_kernel_area(init, gain):
    t = init(torch.empty(64, 16, 5, 5), generator=torch.Generator().manual_seed(0))
    assert_normal_with_variance(t, gain / (16 * 25), rel_tol=0.05)  # 25,600 draws: ~0.9% per sigma


def test_explicit_fan_in_overrides_the_shape():
    t = he_normal_(torch.empty(256, 4096), fan_in=256, generator=torch.Generator().manual_seed(0))
    assert_normal_with_variance(t, 2 / 256, rel_tol=0.02)
    with pytest.raises(ValueError, match="fan_in"):
        lecun_normal_(torch.empty(3, 3), fan_in=0)


def test_initialiser_fills_a_leaf_parameter_in_place():
    p = nn.Parameter(torch.zeros(64, 64))
    assert lecun_normal_(p) is p
    assert p.requires_grad and p.grad_fn is None and p.std().item() > 0


def test_autoencoder_init_uses_encoder_fan_in_unless_told():
    torch.manual_seed(0)
    relu = TiedAutoencoder(d_in=2048, d_hidden=512, activation="relu")
    assert relu.init == "he"
    assert_normal_with_variance(relu.weight.detach(), 2 / 2048, rel_tol=0.02)
    relu.reset_parameters(fan_in=512)  # scale for the decoder's fan-in instead
    assert_normal_with_variance(relu.weight.detach(), 2 / 512, rel_tol=0.02)
    tanh = TiedAutoencoder(d_in=2048, d_hidden=512, activation="tanh")
    assert tanh.init == "lecun"
    assert_normal_with_variance(tanh.weight.detach(), 1 / 2048, rel_tol=0.02)


def test_conv_init_fan_in_is_channels_times_kernel_area():
    torch.manual_seed(0)
    m = SharedKernelConv2d(64, 5, activation="relu")
    assert_normal_with_variance(m.weight.detach(), 2 / (64 * 25), rel_tol=0.03)  # 102,400 draws


# ---- bad arguments ----

@pytest.mark.parametrize("build, word", [
    (lambda: TiedAutoencoder(6, 4, form="matmul"), "form"),
    (lambda: TiedAutoencoder(0, 4), "d_in"),
    (lambda: TiedAutoencoder(6, 4, activation="swish"), "activation"),
    (lambda: TiedAutoencoder(6, 4, init="xavier"), "init"),
    (lambda: SharedKernelConv2d(0, 3), "channels"),
    (lambda: SharedKernelConv2d(3, (3,)), "kernel_size"),
    (lambda: SharedKernelConv2d(3, 3, padding=-1), "padding"),
])
def test_bad_arguments_raise_user_error_naming_them(build, word):
    with pytest.raises(UserError, match=word):
        build()


# ---- GPU: the transposed kernel runs under cuDNN and gives the CPU gradient ----

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_conv_runs_on_gpu_with_the_cpu_gradient():
    m = make_conv(dtype=torch.float32)
    x = conv_input(torch.float32)
    m(x).square().sum().backward()
    gpu = copy.deepcopy(m).cuda()
    gpu.zero_grad()
    gpu(x.cuda()).square().sum().backward()
    assert torch.allclose(gpu.weight.grad.cpu(), m.weight.grad, rtol=1e-3, atol=1e-4)
