"""cnnviz.ops.resample against independent computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnviz.ops import OpError, resample


def test_nearest_integer_scale_is_pixel_replication():
    x = torch.rand(3, 5, 7)
    res = resample.upsample(x, "nearest", scale=3)
    assert res.in_shape == (1, 3, 5, 7) and res.out_shape == (1, 3, 15, 21)
    torch.testing.assert_close(res.output, x.repeat_interleave(3, 1).repeat_interleave(3, 2))
    assert "align_corners" not in res.call and res.align_corners is None


@pytest.mark.parametrize("mode", resample.MODES)
def test_shapes_follow_floor_rule_and_size(mode):
    x = torch.rand(3, 9, 13)
    res = resample.upsample(x, mode, scale=1.5)
    assert res.out_shape == (1, 3, 13, 19)  # floor(9·1.5), floor(13·1.5)
    res = resample.upsample(x, mode, size=(4, 30))
    assert res.output.shape == (3, 4, 30)


def test_align_corners_only_where_it_applies():
    assert resample.uses_align_corners("bilinear") and resample.uses_align_corners("bicubic")
    assert not any(resample.uses_align_corners(m) for m in ("nearest", "nearest-exact", "area"))
    x = torch.rand(1, 4, 6)
    res = resample.upsample(x, "bilinear", scale=2, align_corners=True)
    # align_corners=True pins the corner pixels of input and output
    for (i, j), (oi, oj) in [((0, 0), (0, 0)), ((3, 5), (7, 11)), ((0, 5), (0, 11))]:
        assert float(res.output[0, oi, oj]) == pytest.approx(float(x[0, i, j]), abs=1e-6)
    # hand bilinear with align_corners=True: output (1, 1) sits at input (3/7, 5/11)
    y, xx = 3 / 7, 5 / 11
    hand = ((1 - y) * (1 - xx) * x[0, 0, 0] + (1 - y) * xx * x[0, 0, 1] + y * (1 - xx) * x[0, 1, 0]
            + y * xx * x[0, 1, 1])
    assert float(res.output[0, 1, 1]) == pytest.approx(float(hand), abs=1e-5)
    ignored = resample.upsample(x, "nearest", scale=2, align_corners=True)
    assert ignored.align_corners is None


def test_bicubic_stays_in_range_and_errors():
    x = (torch.rand(3, 8, 8) > 0.5).float()
    assert resample.upsample(x, "bicubic", scale=4).output.min() >= 0
    with pytest.raises(OpError, match="output would be 0×"):
        resample.upsample(torch.rand(3, 1, 1), "bilinear", scale=0.5)
    with pytest.raises(OpError, match="MP per channel"):
        resample.upsample(torch.rand(1, 1000, 1000), "nearest", scale=8)
    with pytest.raises(OpError):
        resample.upsample(x, "lanczos", scale=2)


def test_bilinear_kernel_values():
    k2 = resample.bilinear_kernel(2)
    w = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(k2, torch.outer(w, w))
    assert resample.bilinear_kernel(3).shape == (5, 5)
    assert float(resample.bilinear_kernel(3)[2, 2]) == 1.0


@pytest.mark.parametrize("f", [1, 2, 3, 4])
def test_transposed_conv_is_a_conv_transpose_layer_and_bilinear_inside(f):
    x = torch.rand(3, 10, 12, generator=torch.Generator().manual_seed(f))
    res = resample.transposed_upsample(x, f)
    assert res.out_shape == (1, 3, 10 * f, 12 * f)
    k = res.kernel.shape[0]
    layer = nn.ConvTranspose2d(3, 3, k, stride=f, padding=res.padding, groups=3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(res.kernel.expand(3, 1, k, k))
        torch.testing.assert_close(res.output, layer(x[None])[0])
    if f in (2, 4):  # even factors: equal to bilinear interpolation away from the border
        ref = F.interpolate(x[None], scale_factor=f, mode="bilinear", align_corners=False)[0]
        torch.testing.assert_close(res.output[:, f:-f, f:-f], ref[:, f:-f, f:-f], atol=1e-5, rtol=1e-5)
    assert "nn.ConvTranspose2d(3, 3" in res.layer
    with pytest.raises(OpError):
        resample.transposed_upsample(x, 1.5)


def test_compare_by_hand():
    a = torch.zeros(1, 2, 2)
    b = torch.tensor([[[0.0, 1.0], [0.0, -3.0]]])
    assert resample.compare(a, b) == (pytest.approx(10 / 4), 3.0)
