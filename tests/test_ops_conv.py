"""cnnviz.ops.conv and kernels against independent computations (numpy padding + unfold, nn.Conv2d)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnviz.ops import OpError, conv, kernels

NP_PAD = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def reference_conv(x: torch.Tensor, kern: torch.Tensor, stride: int, padding: int, mode: str, dilation: int,
                   bias: float) -> torch.Tensor:
    """numpy padding + F.unfold + a weighted sum: no F.pad, no F.conv2d."""
    arr = np.pad(x.double().numpy(), ((0, 0), (padding, padding), (padding, padding)), mode=NP_PAD[mode])
    padded = torch.from_numpy(arr)[None]
    k = kern.shape[0]
    cols = F.unfold(padded, k, dilation=dilation, stride=stride)       # (1, C*k*k, L)
    c = x.shape[0]
    cols = cols.view(c, k * k, -1)
    out = (cols * kern.double().reshape(1, k * k, 1)).sum(1) + bias
    h = (x.shape[1] + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    w = (x.shape[2] + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    return out.view(c, h, w).float()


@pytest.mark.parametrize("mode", conv.PADDING_MODES)
def test_convolve_matches_unfold_reference(mode):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 11, 14, generator=g)
    for k, stride, padding, dilation in itertools.product((1, 2, 3, 4, 5), (1, 2, 3), (0, 1, 3), (1, 2)):
        kern = torch.randn(k, k, generator=g)
        try:
            conv.check(11, 14, k, stride, padding, mode, dilation)
        except OpError:
            continue
        res = conv.convolve(x, kern, stride=stride, padding=padding, padding_mode=mode, dilation=dilation, bias=0.25)
        ref = reference_conv(x, kern, stride, padding, mode, dilation, 0.25)
        assert res.output.shape == ref.shape, (k, stride, padding, dilation)
        torch.testing.assert_close(res.output, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", conv.PADDING_MODES)
@pytest.mark.parametrize("k", [2, 3, 6, 7])
def test_convolve_matches_torch_layer(mode, k):
    x = torch.rand(3, 16, 13, generator=torch.Generator().manual_seed(k))
    kern = torch.randn(k, k, generator=torch.Generator().manual_seed(100 + k))
    layer = nn.Conv2d(3, 3, k, stride=2, padding=2, dilation=1, groups=3, bias=True, padding_mode=mode)
    with torch.no_grad():
        layer.weight.copy_(kern.expand(3, 1, k, k))
        layer.bias.fill_(-0.5)
        expected = layer(x[None])[0]
    res = conv.convolve(x, kern, stride=2, padding=2, padding_mode=mode, bias=-0.5)
    torch.testing.assert_close(res.output, expected, atol=1e-5, rtol=1e-5)


def test_grayscale_uses_luma_weights():
    x = torch.rand(3, 9, 9, generator=torch.Generator().manual_seed(1))
    res = conv.convolve(x, kernels.make("identity", 1), grayscale=True)
    luma = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    assert res.output.shape == (1, 9, 9)
    torch.testing.assert_close(res.output[0], luma)


def test_output_size_formula_matches_torch_shapes():
    x = torch.zeros(1, 1, 17, 12)
    for h_k, s, p, d in itertools.product(range(1, 8), range(1, 4), range(0, 4), range(1, 4)):
        expected = conv.output_size(17, h_k, s, p, d)
        w_expected = conv.output_size(12, h_k, s, p, d)
        if expected < 1 or w_expected < 1:
            with pytest.raises(RuntimeError):
                F.conv2d(x, torch.zeros(1, 1, h_k, h_k), stride=s, padding=p, dilation=d)
            continue
        out = F.conv2d(x, torch.zeros(1, 1, h_k, h_k), stride=s, padding=p, dilation=d)
        assert out.shape[2:] == (expected, w_expected)


def test_formula_text_has_the_numbers():
    text = conv.formula_text(96, 3, 2, 1, 1, "H")
    assert text.startswith("H_out = floor((96 + 2·1 − 1·(3−1) − 1) / 2) + 1")
    assert text.endswith("= 48")


def test_tiny_images_work_or_say_why():
    one = torch.rand(3, 1, 1)
    assert conv.convolve(one, kernels.make("box blur", 1)).output.shape == (3, 1, 1)
    assert conv.convolve(one, kernels.make("box blur", 3), padding=1).output.shape == (3, 1, 1)
    with pytest.raises(OpError, match="image smaller than the kernel"):
        conv.convolve(one, kernels.make("box blur", 3))
    with pytest.raises(OpError, match="reflect padding needs padding < the image side"):
        conv.convolve(torch.rand(3, 2, 50), kernels.make("gaussian", 3), padding=2, padding_mode="reflect")
    # extreme aspect ratio
    assert conv.convolve(torch.rand(3, 1, 300), kernels.make("sobel x", 3), padding=1,
                         padding_mode="replicate").output.shape == (3, 1, 300)


@pytest.mark.parametrize("mode", conv.PADDING_MODES)
def test_receptive_field_products_sum_to_output(mode):
    x = torch.rand(3, 8, 10, generator=torch.Generator().manual_seed(2))
    kern = torch.randn(4, 4, generator=torch.Generator().manual_seed(3))
    res = conv.convolve(x, kern, stride=2, padding=2, padding_mode=mode, dilation=2, bias=0.1)
    arr = np.pad(x.numpy(), ((0, 0), (2, 2), (2, 2)), mode=NP_PAD[mode])
    ho, wo = res.output.shape[1:]
    for oy, ox, ch in [(0, 0, 0), (ho - 1, wo - 1, 2), (1, 2, 1)]:
        rf = conv.receptive_field(res, oy, ox, ch)
        rows = [r + 2 for r in rf.rows]
        cols = [c + 2 for c in rf.cols]
        np.testing.assert_allclose(rf.patch.numpy(), arr[ch][np.ix_(rows, cols)], atol=1e-6)
        assert rf.total == pytest.approx(rf.output, abs=1e-5)
        assert rf.total == pytest.approx(float((rf.patch * kern).sum()) + 0.1, abs=1e-5)
        crop, top, left = conv.padded_crop(res, rf, margin=1)
        sub = crop[ch][np.ix_([r - top for r in rf.rows], [c - left for c in rf.cols])]
        torch.testing.assert_close(sub, rf.patch)
    assert conv.receptive_field(res, 0, 0).touches_padding
    with pytest.raises(OpError):
        conv.receptive_field(res, ho, 0)


def test_param_count_against_real_layers():
    c_in, c_out, k, hw, out_hw = 3, 3, 5, (6, 7), (4, 5)
    pc = conv.param_count(k, c_in, c_out, hw, out_hw, groups=3)
    assert pc.conv_total == sum(p.numel() for p in nn.Conv2d(c_in, c_out, k, groups=3).parameters())
    dense = nn.Linear(c_in * hw[0] * hw[1], c_out * out_hw[0] * out_hw[1])
    assert pc.dense_total == sum(p.numel() for p in dense.parameters())
    assert pc.ratio == pytest.approx(pc.dense_total / pc.conv_total)
    full = conv.param_count(k, c_in, c_out, hw, out_hw, groups=1, bias=False)
    assert full.conv_total == 5 * 5 * 3 * 3


def test_kernel_presets():
    assert kernels.make("sobel x", 3).tolist() == [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    assert kernels.make("laplacian", 3).tolist() == [[0, 1, 0], [1, -4, 1], [0, 1, 0]]
    assert kernels.make("sharpen", 3).tolist() == [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]
    assert kernels.make("outline", 3).tolist() == [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]
    assert kernels.make("emboss", 3).tolist() == [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]
    assert kernels.make("sobel x", 5)[0].tolist() == [-1, -2, 0, 2, 1]  # OpenCV's 5-tap derivative
    for name in kernels.PRESETS:
        for k in range(1, 8):
            w = kernels.make(name, k)
            assert w.shape == (k, k) and torch.isfinite(w).all()
        torch.testing.assert_close(kernels.make("sobel y", 4), kernels.make("sobel x", 4).T)
    for name in ("box blur", "gaussian", "identity", "sharpen"):
        assert float(kernels.make(name, 6).sum()) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError):
        kernels.make("nope", 3)
    with pytest.raises(ValueError):
        kernels.make("gaussian", 8)


def test_identity_kernel_returns_the_input():
    x = torch.rand(3, 7, 9)
    torch.testing.assert_close(conv.convolve(x, kernels.make("identity", 3), padding=1).output, x)
    # an even identity kernel with padding k//2 yields one extra row/col at the end, the input shifted
    out = conv.convolve(x, kernels.make("identity", 2), padding=1).output
    assert out.shape == (3, 8, 10)
    torch.testing.assert_close(out[:, :7, :9], x)
