"""Zoo architectures: partial convolution exactness, shapes, hole independence, trainability."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import xarray as xr

import xdl
from xdl.errors import UnknownModelError
from xdl.models import registry
from xdl.models.mlp import MLP
from xdl.models.partialconv import PartialConv2d
from xdl.models.pconv_unet import PConvUNet, default_kernels
from xdl.models.pix2pix import PatchDiscriminator, Pix2Pix, Pix2PixGenerator, receptive_field
from xdl.models.unet import UNet

# Tiny configurations so every test stays fast on a 2-core CPU.
TINY = {
    "pconv-unet": dict(in_channels=2, depth=3, base_channels=8, max_channels=16),
    "unet": dict(in_channels=2, out_channels=1, depth=3, base_channels=8, max_channels=16),
    "pix2pix": dict(in_channels=2, out_channels=1, depth=3, ngf=8, ndf=8),
    "mlp": dict(in_channels=3, out_channels=2, hidden=(16, 16)),
}


def _run(m, x, mask=None):
    if m.takes_mask:
        return m(x, torch.ones_like(x) if mask is None else mask)
    return m(x)


# ---------------------------------------------------------------- partial convolution

@pytest.mark.parametrize("k,stride,padding,dilation,multi", [
    (3, 1, 1, 1, False), (3, 2, 1, 1, True), (5, 2, 2, 1, False), (7, 2, 3, 1, True),
    (3, 1, 2, 2, False), (4, 2, 1, 1, True), (3, 1, 0, 1, False), ((3, 5), (1, 2), (1, 2), (2, 1), True)])
def test_partialconv_equals_conv_with_ones_mask(k, stride, padding, dilation, multi):
    torch.manual_seed(0)
    pc = PartialConv2d(3, 5, k, stride=stride, padding=padding, dilation=dilation, multi_channel=multi)
    conv = nn.Conv2d(3, 5, k, stride=stride, padding=padding, dilation=dilation)
    conv.load_state_dict(pc.state_dict())
    x = torch.randn(2, 3, 17, 20)
    mask = torch.ones(2, 3 if multi else 1, 17, 20)
    out, new_mask = pc(x, mask)
    if padding == 0:  # no zero padding: every window is full, so it is exactly a conv
        torch.testing.assert_close(out, conv(x), atol=1e-6, rtol=1e-6)
    else:  # zero-padded border windows are partial and get re-weighted; the interior is a conv
        ref = conv(x)
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        kh, kw = (k, k) if isinstance(k, int) else k
        dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
        sh, sw = (stride, stride) if isinstance(stride, int) else stride
        i0, j0 = -(-ph // sh), -(-pw // sw)  # first output whose window starts inside the image
        i1 = (17 + ph - dh * (kh - 1) - 1) // sh + 1  # one past the last full window
        j1 = (20 + pw - dw * (kw - 1) - 1) // sw + 1
        torch.testing.assert_close(out[..., i0:i1, j0:j1], ref[..., i0:i1, j0:j1], atol=1e-6, rtol=1e-6)
    assert new_mask.min() == 1


def test_partialconv_zero_padding_and_ones_mask_is_plain_conv_everywhere():
    # With padding=0 there are no partial windows at all.
    torch.manual_seed(1)
    pc = PartialConv2d(2, 4, 3, stride=2)
    conv = nn.Conv2d(2, 4, 3, stride=2)
    conv.load_state_dict(pc.state_dict())
    x = torch.randn(3, 2, 15, 16)
    torch.testing.assert_close(pc(x, torch.ones(3, 1, 15, 16))[0], conv(x), atol=1e-6, rtol=1e-6)


def test_partialconv_ignores_values_under_the_hole():
    torch.manual_seed(2)
    pc = PartialConv2d(2, 3, 3, padding=1, multi_channel=True)
    x = torch.randn(1, 2, 12, 12)
    mask = torch.ones_like(x)
    mask[:, :, 3:7, 4:9] = 0
    mask[:, 1, 0, 0] = 0
    x2 = x.clone()
    x2[mask == 0] = 1e6
    a, ma = pc(x, mask)
    b, mb = pc(x2, mask)
    assert torch.equal(a, b) and torch.equal(ma, mb)


def test_partialconv_hand_computed_case():
    # 1 channel, 3x3 kernel of ones, bias 0.5, no padding, 3x3 input -> one output.
    pc = PartialConv2d(1, 1, 3, bias=True)
    with torch.no_grad():
        pc.weight.fill_(1.0)
        pc.bias.fill_(0.5)
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    mask = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 1.0]]).reshape(1, 1, 3, 3)
    out, new_mask = pc(x, mask)
    # valid values 0, 2, 4, 8 -> sum 14; ratio 9/4
    assert out.item() == pytest.approx(14 * 9 / 4 + 0.5)
    assert new_mask.item() == 1
    out, new_mask = pc(x, torch.zeros_like(mask))
    assert out.item() == 0 and new_mask.item() == 0  # no valid input: no bias either


def test_partialconv_mask_update_and_ratio_with_padding():
    pc = PartialConv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        pc.weight.fill_(1.0)
    x = torch.ones(1, 1, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, 0, 0] = 1
    out, new_mask = pc(x, mask)
    expected_mask = torch.zeros(4, 4)
    expected_mask[:2, :2] = 1
    assert torch.equal(new_mask[0, 0], expected_mask)
    # each output seeing the one valid pixel: sum(X*M)=1, ratio 9/1
    torch.testing.assert_close(out[0, 0], 9.0 * expected_mask)


def test_partialconv_multi_channel_window_size_and_mask_shape():
    pc = PartialConv2d(3, 4, 3, padding=1, multi_channel=True, bias=False)
    with torch.no_grad():
        pc.weight.fill_(1.0)
    x = torch.ones(1, 3, 5, 5)
    mask = torch.zeros_like(x)
    mask[0, 1, 2, 2] = 1
    out, new_mask = pc(x, mask)
    assert new_mask.shape == (1, 4, 5, 5)
    assert out[0, 0, 2, 2].item() == pytest.approx(27.0)  # 1 * (3*3*3 / 1)
    assert new_mask[0, :, 1:4, 1:4].min() == 1 and new_mask.sum() == 4 * 9


def test_partialconv_bf16_autocast_close_to_fp32():
    torch.manual_seed(3)
    pc = PartialConv2d(4, 8, 5, stride=2, padding=2, multi_channel=True)
    x = torch.randn(2, 4, 32, 32)
    mask = (torch.rand_like(x) > 0.9).float()  # very sparse: tiny sum(M), large ratios
    ref, ref_mask = pc(x * mask, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, out_mask = pc(x * mask, mask)
    assert torch.isfinite(out.float()).all()
    assert torch.equal(out_mask.float(), ref_mask)
    scale = ref.abs().max()
    assert (out.float() - ref).abs().max() <= 0.03 * scale


def test_partialconv_fp16_tiny_mask_sum_is_finite():
    pc = PartialConv2d(1, 2, 3, padding=1).half()
    x = torch.zeros(1, 1, 6, 6, dtype=torch.float16)
    mask = torch.zeros_like(x)
    mask[..., 3, 3] = 1
    x[..., 3, 3] = 2
    out, m = pc(x, mask)
    assert torch.isfinite(out).all() and m.sum() == 9


def test_partialconv_circular_x_wraps_longitude():
    pc = PartialConv2d(1, 1, 3, padding=1, circular_x=True, bias=False)
    with torch.no_grad():
        pc.weight.fill_(1.0)
    x = torch.zeros(1, 1, 6, 10)
    x[0, 0, 3, -1] = 1.0  # a feature at the right edge
    out, new_mask = pc(x, torch.ones(1, 1, 6, 10))
    assert out[0, 0, 3, 0] > 0  # reaches the left edge
    assert new_mask.shape == (1, 1, 6, 10)
    # y is zero padded (masked): top row windows are partial, ratio 9/6
    y = torch.ones(1, 1, 6, 10)
    out, _ = pc(y, torch.ones_like(y))
    torch.testing.assert_close(out[0, 0, 0], torch.full((10,), 9.0))
    torch.testing.assert_close(out[0, 0, 2], torch.full((10,), 9.0))
    # without circular_x the left edge never sees the right edge
    flat = PartialConv2d(1, 1, 3, padding=1, bias=False)
    flat.load_state_dict(pc.state_dict())
    assert flat(x, torch.ones_like(x))[0][0, 0, 3, 0] == 0


def test_partialconv_circular_pconv_unet_wraps():
    torch.manual_seed(4)
    net = PConvUNet(1, depth=2, base_channels=4, circular_x=True).eval()
    x = torch.zeros(1, 1, 16, 32)
    base = net(x, torch.ones_like(x))
    x[0, 0, 8, -1] = 5.0
    diff = (net(x, torch.ones_like(x)) - base).abs()
    assert diff[0, 0, :, 0].max() > 0


# ---------------------------------------------------------------- zoo models

def test_registry_names_and_unknown():
    assert registry.names() == ["fill-unet", "mlp", "pconv-unet", "pix2pix", "unet"]
    with pytest.raises(UnknownModelError, match="pconv-unet"):
        registry.get("nope")
    assert registry.get("unet") is UNet and registry.get("pix2pix") is Pix2Pix
    assert set(registry.describe()) == set(registry.names())


@pytest.mark.parametrize("name", ["pconv-unet", "unet", "pix2pix"])
@pytest.mark.parametrize("hw", [(8, 8), (48, 80), (32, 16)])
def test_spatial_models_shapes(name, hw):
    m = registry.get(name)(**TINY[name]).eval()
    assert m.mode == "spatial" and m.size_multiple == 8
    assert m.halo > 0 and m.halo % m.size_multiple == 0
    n = registry.count_parameters(m)
    assert n > 0
    print(f"{name}: {n} parameters")
    x = torch.randn(2, 2, *hw)
    with torch.no_grad():
        y = _run(m, x)
    assert y.shape == (2, m.out_channels, *hw)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["pconv-unet", "unet", "pix2pix"])
def test_spatial_models_reject_bad_sizes(name):
    m = registry.get(name)(**TINY[name]).eval()
    with pytest.raises(ValueError, match="multiple"):
        _run(m, torch.randn(1, 2, 12, 16))


def test_mlp_shapes_and_attributes():
    m = MLP(**TINY["mlp"]).eval()
    assert (m.mode, m.size_multiple, m.halo, m.takes_mask, m.fills_gaps) == ("pointwise", 1, 0, False, False)
    for p in (1, 7, 1000):
        y = m(torch.randn(p, 3))
        assert y.shape == (p, 2) and torch.isfinite(y).all()
    s = MLP(3, 1, out_activation="sigmoid")(torch.randn(50, 3) * 100)
    assert ((s >= 0) & (s <= 1)).all()
    with pytest.raises(ValueError):
        m(torch.randn(4, 5))
    with pytest.raises(ValueError):
        MLP(3, activation="nope")


def test_model_attributes_contract():
    p = PConvUNet(1)
    assert (p.takes_mask, p.fills_gaps, p.out_channels, p.size_multiple) == (True, True, 1, 16)
    assert default_kernels(4) == (7, 5, 5, 3)
    u = UNet(3, 2)
    assert (u.takes_mask, u.fills_gaps) == (False, False)
    assert UNet(3, 2, with_mask=True).takes_mask
    g = Pix2Pix(3, 2, depth=4, ngf=8, ndf=8, with_mask=True)
    assert g.takes_mask and g.size_multiple == 16 and not g.fills_gaps
    for m in (p, u, g, MLP(2)):
        for a in ("mode", "in_channels", "out_channels", "size_multiple", "halo", "takes_mask", "fills_gaps"):
            assert hasattr(m, a), a


def test_unet_with_mask_and_residual_bilinear():
    m = UNet(2, 1, depth=2, base_channels=4, residual=True, dropout=0.1, with_mask=True, bilinear=True).eval()
    x = torch.randn(1, 2, 16, 24)
    y = m(x, torch.ones_like(x))
    assert y.shape == (1, 1, 16, 24)
    # the mask is an input: changing it changes the output
    assert not torch.equal(y, m(x, torch.zeros_like(x)))


def test_pix2pix_parts():
    assert receptive_field(3) == 70 and receptive_field(1) == 16 and receptive_field(2) == 34
    d = PatchDiscriminator(6, ndf=8, n_layers=3)
    assert d.receptive_field == 70
    assert d(torch.randn(1, 6, 256, 256)).shape == (1, 1, 30, 30)  # the paper's 30x30 patch map
    g = Pix2PixGenerator(3, 3, depth=8, ngf=4).eval()
    assert g(torch.randn(1, 3, 256, 256)).shape == (1, 3, 256, 256)
    n_drop = sum(isinstance(m, nn.Dropout) for m in g.modules())
    assert n_drop == 3
    p = Pix2Pix(2, 1, depth=3, ngf=8, ndf=8)
    assert p.discriminator.net[0].in_channels == 3
    x = torch.randn(1, 2, 16, 16)
    p.eval()
    assert torch.equal(p(x), p.generator(x))
    # tanh output by default, unbounded with out_activation=None
    assert p(x * 100).abs().max() <= 1
    q = Pix2Pix(2, 1, depth=3, ngf=8, ndf=8, out_activation=None)
    assert not any(isinstance(m, nn.Tanh) for m in q.modules())


def test_pconv_unet_ignores_values_under_the_hole():
    torch.manual_seed(5)
    m = PConvUNet(2, depth=3, base_channels=8).eval()
    x = torch.randn(1, 2, 32, 48)
    mask = torch.ones_like(x)
    mask[:, :, 10:20, 5:30] = 0
    mask[:, 0, 0:3, 40:44] = 0
    a = m(x * mask, mask)
    x2 = x.clone()
    x2[mask == 0] = torch.randn(int((mask == 0).sum())) * 1e3
    b = m(x2, mask)  # not even zeroed: the layer must apply the mask itself
    assert torch.equal(a, b)
    assert torch.isfinite(a).all()


def test_pconv_unet_all_invalid_and_mask_broadcast():
    m = PConvUNet(2, depth=2, base_channels=4).eval()
    x = torch.randn(1, 2, 8, 8)
    y = m(x, torch.zeros_like(x))
    assert torch.isfinite(y).all()
    # a one-channel mask is broadcast to every channel
    mk = (torch.rand(1, 1, 8, 8) > 0.5).float()
    assert torch.equal(m(x, mk), m(x, mk.expand_as(x)))


def test_pconv_unet_freeze_encoder_bn():
    m = PConvUNet(1, depth=3, base_channels=4, freeze_encoder_bn=True)
    m.train()
    enc_bn = [b for b in m.encoder.modules() if isinstance(b, nn.BatchNorm2d)]
    dec_bn = [b for b in m.decoder.modules() if isinstance(b, nn.BatchNorm2d)]
    assert enc_bn and all(not b.training for b in enc_bn)
    assert dec_bn and all(b.training for b in dec_bn)
    before = enc_bn[0].running_mean.clone()
    x = torch.randn(2, 1, 16, 16)
    m(x, torch.ones_like(x))
    assert torch.equal(before, enc_bn[0].running_mean)
    assert not enc_bn[0].weight.grad  # still trainable parameters (only the statistics are frozen)
    assert enc_bn[0].weight.requires_grad


def test_bf16_autocast_models_finite():
    for name in ("pconv-unet", "unet", "pix2pix"):
        m = registry.get(name)(**TINY[name]).eval()
        x = torch.randn(1, 2, 16, 16)
        with torch.no_grad():
            ref = _run(m, x).float()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = _run(m, x).float()
        assert torch.isfinite(y).all()
        assert (y - ref).abs().max() <= 0.1 * (ref.abs().max() + 1), name


# ---------------------------------------------------------------- trainability (slow)

def _overfit(model, make_batch, steps, lr=3e-3):
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    inputs, target, weight = make_batch()
    model.train()
    first = None
    for _ in range(steps):
        opt.zero_grad()
        y = model(*inputs)
        loss = ((y - target) ** 2 * weight).mean()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    model.eval()
    with torch.no_grad():
        final = ((model(*inputs) - target) ** 2 * weight).mean().item()
    return first, final


def _field(n=2, c=1, h=32, w=32):
    yy, xx = torch.meshgrid(torch.linspace(0, 3, h), torch.linspace(0, 3, w), indexing="ij")
    f = torch.stack([torch.sin(xx + k) * torch.cos(yy - k) for k in range(n * c)]).reshape(n, c, h, w)
    return f


@pytest.mark.slow
def test_overfit_pconv_unet():
    torch.manual_seed(0)
    m = PConvUNet(1, depth=3, base_channels=8, max_channels=16)

    def batch():
        t = _field()
        mask = torch.ones_like(t)
        mask[:, :, 8:20, 10:22] = 0
        return (t * mask, mask), t, 1.0
    first, final = _overfit(m, batch, 300)
    assert final < first / 10, (first, final)


@pytest.mark.slow
def test_overfit_unet():
    torch.manual_seed(0)
    m = UNet(1, 1, depth=3, base_channels=8, max_channels=16)

    def batch():
        x = _field()
        return (x,), x.roll(3, -1) ** 2, 1.0
    first, final = _overfit(m, batch, 300)
    assert final < first / 10, (first, final)


@pytest.mark.slow
def test_overfit_pix2pix_generator():
    torch.manual_seed(0)
    m = Pix2Pix(1, 1, depth=3, ngf=16, ndf=8, dropout=0.0)

    def batch():
        x = _field()
        return (x,), 0.8 * torch.tanh(x.roll(2, -2)), 1.0
    first, final = _overfit(m, batch, 300)
    assert final < first / 10, (first, final)


@pytest.mark.slow
def test_overfit_mlp():
    torch.manual_seed(0)
    m = MLP(3, 1, hidden=(32, 32), activation="gelu")

    def batch():
        x = torch.randn(256, 3)
        return (x,), (x[:, :1] * x[:, 1:2] + torch.sin(x[:, 2:])), 1.0
    first, final = _overfit(m, batch, 400, lr=1e-2)
    assert final < first / 10, (first, final)


@pytest.mark.parametrize("name, config", [
    ("pconv-unet", dict(in_channels=1, depth=3, base_channels=4)),
    ("unet", dict(in_channels=1, out_channels=1, depth=3, base_channels=4)),
    ("pix2pix", dict(in_channels=1, out_channels=1, depth=4, ngf=4, ndf=4)),
])
def test_zoo_models_run_through_the_engine_on_odd_sizes(name, config):
    """37 x 53 is a multiple of nothing: the engine pads to the size multiple and crops back."""
    import numpy as np
    import xarray as xr

    import xdl

    model = xdl.zoo.create(name, **config)
    field = xr.DataArray(np.random.default_rng(0).standard_normal((2, 37, 53)).astype("f4"),
                         dims=("time", "y", "x"), name="v")
    out = field.chunk({"y": 20}).dl.predict(model)
    assert out.shape == field.shape and np.isfinite(out.values).all()
    print(f"{name}: {model.num_parameters} parameters")


def test_mlp_runs_through_the_engine_pointwise():
    import numpy as np
    import xarray as xr

    import xdl

    model = xdl.zoo.create("mlp", in_channels=3, card={"inputs": ["t", "p", "q"], "outputs": ["rain"]})
    ds = xr.Dataset({n: (("y", "x"), np.random.default_rng(1).random((7, 9)).astype("f4")) for n in "tpq"})
    out = ds.dl.predict(model)
    assert out["rain"].shape == (7, 9) and np.isfinite(out["rain"].values).all()


# ---------------------------------------------------------------- fill-unet

def test_harmonic_fill_is_linear_between_borders_and_exact_on_valid():
    from xdl.models.harmonic import harmonic_fill

    x = torch.zeros(1, 1, 8, 40)
    ramp = torch.linspace(0, 39, 40)
    x[..., :] = ramp
    m = torch.ones_like(x)
    m[..., 10:30] = 0
    out = harmonic_fill(x * m, m, iterations=400)
    assert torch.equal(out[m > 0], x[m > 0])
    torch.testing.assert_close(out, x, atol=0.05, rtol=0)


def test_biharmonic_iterations_continue_a_cubic_across_a_gap():
    from xdl.models.harmonic import harmonic_fill

    t = torch.linspace(-1, 1, 48)
    x = (10 * t ** 2 + t ** 3).expand(1, 1, 6, 48).clone()  # biharmonic (4th derivative 0), not harmonic
    m = torch.ones_like(x)
    m[..., 20:26] = 0
    membrane = harmonic_fill(x * m, m, iterations=400)
    plate = harmonic_fill(x * m, m, iterations=400, biharmonic_iterations=4000)  # slow to converge
    assert torch.equal(plate[m > 0], x[m > 0])
    error = lambda f: float((f - x)[m == 0].abs().max())  # noqa: E731
    assert error(plate) < 0.01 < 0.1 < error(membrane)


def test_relaxation_by_gathering_equals_the_whole_tile_steps(monkeypatch):
    from xdl.models import harmonic

    g = torch.Generator().manual_seed(2)
    f = torch.randn(2, 1, 40, 56, generator=g)
    fixed = torch.rand(2, 1, 40, 56, generator=g) > 0.1
    for update in (harmonic._HARMONIC, harmonic._BIHARMONIC):
        monkeypatch.setattr(harmonic, "_SPARSE", 2.0)  # always gather
        gathered = harmonic._relax(f, fixed, 25, update)
        monkeypatch.setattr(harmonic, "_SPARSE", -1.0)  # always whole-tile steps
        dense = harmonic._relax(f, fixed, 25, update)
        assert torch.equal(gathered[fixed], f[fixed]) and torch.equal(dense[fixed], f[fixed])
        torch.testing.assert_close(gathered, dense, atol=1e-5, rtol=0)


def test_untrained_fill_unet_is_the_harmonic_fill_and_keeps_valid_values():
    from xdl.models.harmonic import harmonic_fill

    net = xdl.zoo.create("fill-unet", in_channels=2, depth=2, base_channels=8, patch=2).module.eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 32, 48, generator=g)
    m = (torch.rand(3, 2, 32, 48, generator=g) > 0.4).float()
    with torch.no_grad():
        out = net(x * m, m)
    assert torch.equal(out[m > 0], x[m > 0])
    torch.testing.assert_close(out, harmonic_fill(x * m, m, net.iterations, net.biharmonic_iterations))
    assert net.size_multiple == 8 and net.halo == 8


def test_fill_unet_trains_its_correction():
    net = xdl.zoo.create("fill-unet", in_channels=1, depth=1, base_channels=4, patch=2).module
    x = torch.randn(2, 1, 16, 16)
    m = (torch.rand_like(x) > 0.3).float()
    loss = ((net(x * m, m) - x) * (1 - m)).abs().mean()
    loss.backward()
    assert net.correction.head.weight.grad.abs().sum() > 0


def test_plain_modules_with_equal_weights_but_different_attributes_do_not_share_a_resident_copy():
    class Scale(torch.nn.Module):
        def __init__(self, factor):
            super().__init__()
            self.factor = factor
            self.in_channels = self.out_channels = 1
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            return x * self.w * self.factor

    arr = xr.DataArray(np.ones((8, 8), "f4"), dims=("y", "x"))
    twice = arr.dl.predict(Scale(2.0), mode="pointwise").values
    thrice = arr.dl.predict(Scale(3.0), mode="pointwise").values
    assert (twice == 2).all() and (thrice == 3).all()


def test_auto_precision_uses_cpu_bf16_only_for_models_that_declare_it(monkeypatch):
    from xdl.engine import runner
    from xdl.engine.options import RunOptions
    from xdl.engine.spec import engine_spec

    fill = xdl.zoo.create("fill-unet", in_channels=1, depth=1, base_channels=4, patch=2)
    plain = xdl.zoo.create("unet", in_channels=1, out_channels=1, depth=1, base_channels=4)
    assert engine_spec(fill).cpu_bf16 and not engine_spec(plain).cpu_bf16
    for native in (True, False):
        monkeypatch.setattr(runner, "cpu_has_native_bf16", lambda: native)
        expected = torch.bfloat16 if native else None
        assert RunOptions.build(engine_spec(fill), "cpu", "auto", None, None, None).autocast is expected
        assert RunOptions.build(engine_spec(plain), "cpu", "auto", None, None, None).autocast is None
        # An explicit choice always wins.
        assert RunOptions.build(engine_spec(fill), "cpu", "fp32", None, None, None).autocast is None
    assert runner.resolve_precision("auto", torch.device("cuda"), cpu_bf16=False) is torch.bfloat16


def test_fill_unet_in_bf16_keeps_valid_values_and_stays_close_to_fp32():
    net = xdl.zoo.create("fill-unet", in_channels=1, depth=2, base_channels=8, patch=2).module.eval()
    torch.nn.init.normal_(net.correction.head.weight, std=0.1)  # a non-zero correction to compare
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 64, 64, generator=g)
    m = (torch.rand(2, 1, 64, 64, generator=g) > 0.3).float()
    with torch.no_grad():
        fp32 = net(x * m, m)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = net(x * m, m)
    assert bf16.dtype == torch.float32 and torch.equal(bf16[m > 0], x[m > 0])
    assert (bf16 - fp32).abs().max() < 0.05 * (fp32 - x).abs().max()
