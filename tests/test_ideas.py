"""The worked examples of the Architectures page against formulas and independent layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnviz.inspect import ideas


@pytest.mark.parametrize("n,c", [(2, 64), (3, 64), (2, 5)])
def test_stacked_3x3_vs_one_big_kernel(n, c):
    k = ideas.stacked_vs_single(c, n, size=32)
    assert k.big_kernel == 2 * n + 1
    assert k.rf_stacked == k.rf_big == 2 * n + 1  # each 3x3 adds 2 pixels to the field
    assert k.weights_stacked == n * 9 * c * c and k.weights_big == (2 * n + 1) ** 2 * c * c
    assert k.params_stacked == n * (9 * c * c + c) and k.params_big == (2 * n + 1) ** 2 * c * c + c
    assert k.shape_stacked == k.shape_big == (1, c, 32 - 2 * n, 32 - 2 * n)
    assert k.nonlinearities_stacked == n - 1


def test_one_by_one_params_and_flops():
    o = ideas.one_by_one(256, 64, 28)
    assert o.params == 256 * 64 + 64
    assert o.in_shape == (1, 256, 28, 28) and o.out_shape == (1, 64, 28, 28)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        nn.Conv2d(256, 64, 1)(torch.zeros(1, 256, 28, 28))
    assert o.flops == counter.get_total_flops() == 2 * 256 * 64 * 28 * 28


def test_inception_branches_concatenate():
    from torchvision.models.googlenet import Inception

    d = ideas.inception_block(28)
    assert d.in_shape == (1, 192, 28, 28)
    assert [b[2][1] for b in d.branches] == [64, 128, 32, 32]
    assert all(b[2][2:] == (28, 28) for b in d.branches)
    assert d.out_shape == (1, 256, 28, 28)
    ref = Inception(192, 64, 96, 128, 16, 32, 32)
    assert d.params == sum(p.numel() for p in ref.parameters()) == sum(b[3] for b in d.branches)


def test_residual_block_by_hand():
    from cnnviz.models.resnet import ResBlk

    x = torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(1))
    d = ideas.residual_maps(x, seed=3)
    torch.manual_seed(3)
    blk = ResBlk(3, 3).eval()
    with torch.no_grad():
        xb = x[None]
        fx = blk.bn2(blk.conv2(torch.relu(blk.bn1(blk.conv1(xb)))))[0]
    torch.testing.assert_close(d.fx, fx)
    torch.testing.assert_close(d.sum, fx + x)  # identity shortcut: 3 -> 3 channels, stride 1
    torch.testing.assert_close(d.out, torch.relu(fx + x))
    assert d.params == 2 * 3 * 3 * 3 * 3 + 2 * 2 * 3  # two bias-free 3x3 convs, two BatchNorms (weight, bias)


def test_residual_pictures_numbers():
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    d = ideas.residual_maps(x, seed=0)
    p = ideas.residual_pictures(d)
    assert p.x.size == p.fx.size == p.sum.size == p.out.size == (16, 16)
    assert p.fx_limit == pytest.approx(float(d.fx.abs().max()))
    assert p.fx_mean_abs == pytest.approx(float(d.fx.abs().mean()))
    assert p.negative == pytest.approx(float((d.sum < 0).float().mean()))
    # the F(x) picture is mid-grey + F(x) / (2 max|F(x)|): its extreme value touches 0 or 255
    arr = np.asarray(p.fx).astype(int)
    expected = np.round((0.5 + d.fx.numpy() / (2 * p.fx_limit)).clip(0, 1) * 255).transpose(1, 2, 0)
    assert np.abs(arr - expected).max() <= 1
    assert arr.min() <= 1 or arr.max() >= 254
