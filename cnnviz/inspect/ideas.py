"""Worked examples of the ideas behind the classic networks, computed with real layers.

- stacked 3x3 convolutions vs one large kernel (VGG): same receptive field, fewer parameters;
- a 1x1 convolution changing the channel count (VGG, GoogLeNet, ResNet bottlenecks);
- an Inception block's parallel branches and their concatenation (GoogLeNet);
- a residual block's x, F(x) and F(x) + x (ResNet).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn

from .receptive import trace


@dataclass
class KernelComparison:
    """n stacked 3x3 convs vs one (2n+1)x(2n+1) conv, C channels in and out."""

    channels: int
    n_stacked: int
    big_kernel: int
    rf_stacked: int
    rf_big: int
    params_stacked: int       # weights + biases of the n 3x3 layers
    params_big: int
    weights_stacked: int      # n * 9 * C^2 (no biases)
    weights_big: int          # k^2 * C^2
    shape_stacked: tuple[int, ...]
    shape_big: tuple[int, ...]
    nonlinearities_stacked: int   # ReLUs in between: more non-linearity for less cost


def stacked_vs_single(channels: int = 64, n_stacked: int = 2, size: int = 32) -> KernelComparison:
    """Build `n_stacked` 3x3 convs and one (2n+1)x(2n+1) conv (C->C, no padding) and compare them."""
    c, k = channels, 2 * n_stacked + 1
    layers: list[nn.Module] = []
    for i in range(n_stacked):
        layers.append(nn.Conv2d(c, c, 3))
        if i < n_stacked - 1:
            layers.append(nn.ReLU())
    stacked = nn.Sequential(*layers)
    big = nn.Sequential(nn.Conv2d(c, c, k))
    shape = (c, size, size)
    rf_s = trace(stacked, shape)[-1].rf
    rf_b = trace(big, shape)[-1].rf
    with torch.device("meta"):
        x = torch.zeros(1, *shape)
        s_shape, b_shape = tuple(stacked.to("meta")(x).shape), tuple(big.to("meta")(x).shape)
    return KernelComparison(
        c, n_stacked, k, int(rf_s.size[0]), int(rf_b.size[0]),
        sum(p.numel() for p in stacked.parameters()), sum(p.numel() for p in big.parameters()),
        sum(m.weight.numel() for m in stacked if isinstance(m, nn.Conv2d)), big[0].weight.numel(),
        s_shape, b_shape, n_stacked - 1,
    )


@dataclass
class OneByOne:
    c_in: int
    c_out: int
    params: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    flops: int                 # 2 * C_in * C_out * H * W (multiply-add = 2)


def one_by_one(c_in: int = 256, c_out: int = 64, size: int = 28, seed: int = 0) -> OneByOne:
    """A 1x1 conv C_in -> C_out on a (C_in, size, size) tensor: it mixes channels at each pixel, nothing spatial."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(c_in, c_out, 1)
    x = torch.randn(1, c_in, size, size)
    with torch.no_grad():
        y = conv(x)
    return OneByOne(c_in, c_out, sum(p.numel() for p in conv.parameters()), tuple(x.shape), tuple(y.shape),
                    2 * c_in * c_out * size * size)


@dataclass
class InceptionDemo:
    in_shape: tuple[int, ...]
    branches: list[tuple[str, str, tuple[int, ...], int]]   # (name, what it does, output shape, params)
    out_shape: tuple[int, ...]
    params: int


_BRANCH_TEXT = {
    "branch1": "1x1 conv",
    "branch2": "1x1 conv (reduce) -> 3x3 conv",
    "branch3": "1x1 conv (reduce) -> 3x3 conv (torchvision's stand-in for the paper's 5x5)",
    "branch4": "3x3 max pool -> 1x1 conv",
}


def inception_block(size: int = 28, seed: int = 0) -> InceptionDemo:
    """GoogLeNet's inception (3a) block from torchvision on a (192, size, size) tensor, branch by branch."""
    from torchvision.models.googlenet import Inception

    torch.manual_seed(seed)
    block = Inception(192, 64, 96, 128, 16, 32, 32).eval()
    x = torch.randn(1, 192, size, size)
    rows = []
    with torch.no_grad():
        outs = []
        for name in ("branch1", "branch2", "branch3", "branch4"):
            b = getattr(block, name)
            y = b(x)
            outs.append(y)
            rows.append((name, _BRANCH_TEXT[name], tuple(y.shape), sum(p.numel() for p in b.parameters())))
        cat = torch.cat(outs, 1)
        full = block(x)
    assert torch.allclose(cat, full)
    return InceptionDemo(tuple(x.shape), rows, tuple(full.shape), sum(p.numel() for p in block.parameters()))


@dataclass
class ResidualDemo:
    x: torch.Tensor          # (3, H, W) the block's input
    fx: torch.Tensor         # F(x), the residual branch
    sum: torch.Tensor        # F(x) + x
    out: torch.Tensor        # relu(F(x) + x), the block's output
    params: int


def residual_maps(x: torch.Tensor, seed: int = 0) -> ResidualDemo:
    """The tutorial's ResBlk (3 -> 3 channels, identity shortcut), seeded, on image tensor `x` (3,H,W)."""
    from ..models.resnet import ResBlk

    torch.manual_seed(seed)
    blk = ResBlk(x.shape[0], x.shape[0]).eval()
    with torch.no_grad():
        xb = x.unsqueeze(0)
        fx = blk.residual(xb)
        s = fx + blk.extra(xb)
        out = blk(xb)
    return ResidualDemo(x, fx[0], s[0], out[0], sum(p.numel() for p in blk.parameters()))


@dataclass
class ResidualPictures:
    """x, F(x), F(x) + x and relu(F(x) + x) as RGB pictures, with the numbers behind them."""

    x: Image.Image
    fx: Image.Image           # grey = 0; F(x) / (2 * fx_limit) added to mid-grey
    sum: Image.Image          # F(x) + x, clipped to [0, 1]
    out: Image.Image          # relu(F(x) + x), clipped to [0, 1]
    fx_limit: float           # max |F(x)|: the grey picture's full scale
    x_mean_abs: float         # mean |x|
    fx_mean_abs: float        # mean |F(x)|: how big the learned change is next to x
    negative: float           # fraction of F(x) + x below 0 (what the ReLU zeroes)


def residual_pictures(demo: ResidualDemo) -> ResidualPictures:
    """Pictures of a `residual_maps` result: the image, the change F(x) on grey, and the image after it."""
    from ..images.display import tensor_to_pil

    lim = float(demo.fx.abs().max()) or 1.0
    return ResidualPictures(
        tensor_to_pil(demo.x), tensor_to_pil(0.5 + demo.fx / (2 * lim)), tensor_to_pil(demo.sum),
        tensor_to_pil(demo.out), lim, float(demo.x.abs().mean()), float(demo.fx.abs().mean()),
        float((demo.sum < 0).float().mean()),
    )
