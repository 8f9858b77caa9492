"""cnnviz.ops.pool against manual window loops and torch's own layers."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from cnnviz.ops import OpError, pool


def manual_max(x: torch.Tensor, k: int, s: int, p: int, d: int, ceil_mode: bool):
    """Loop over windows: max value and its flat index (padding never wins)."""
    c, h, w = x.shape
    oh = pool.output_size(h, k, s, p, d, ceil_mode)
    ow = pool.output_size(w, k, s, p, d, ceil_mode)
    out = torch.empty(c, oh, ow)
    idx = torch.empty(c, oh, ow, dtype=torch.int64)
    for ch, i, j in itertools.product(range(c), range(oh), range(ow)):
        best, where = -math.inf, -1
        for a, b in itertools.product(range(k), range(k)):
            r, q = i * s - p + a * d, j * s - p + b * d
            if 0 <= r < h and 0 <= q < w and float(x[ch, r, q]) > best:
                best, where = float(x[ch, r, q]), r * w + q
        out[ch, i, j], idx[ch, i, j] = best, where
    return out, idx


@pytest.mark.parametrize("k,s,p,d,ceil", [(2, 2, 0, 1, False), (3, 2, 1, 1, True), (3, 1, 1, 2, False),
                                          (2, 3, 1, 1, True), (4, 3, 2, 1, False)])
def test_max_pool_matches_manual_windows_and_indices(k, s, p, d, ceil):
    x = torch.rand(2, 9, 11, generator=torch.Generator().manual_seed(k * 10 + s))
    res = pool.pool(x, "max", kernel=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    out, idx = manual_max(x, k, s, p, d, ceil)
    torch.testing.assert_close(res.output, out)
    assert torch.equal(res.indices, idx)  # random values: ties have probability 0
    # the winner really holds the output value
    torch.testing.assert_close(x.reshape(2, -1).gather(1, res.indices.reshape(2, -1)).view_as(out), out)
    counts = pool.winner_counts(res.indices, (9, 11))
    assert int(counts.sum()) == 2 * out.shape[1] * out.shape[2]


def test_avg_lp_adaptive_match_torch_layers():
    x = torch.rand(3, 10, 13, generator=torch.Generator().manual_seed(5))
    for include in (True, False):
        res = pool.pool(x, "avg", kernel=3, stride=2, padding=1, ceil_mode=True, count_include_pad=include)
        ref = nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=include)(x[None])[0]
        torch.testing.assert_close(res.output, ref)
    # LP pooling by hand: (sum of x^p over the window)^(1/p)
    res = pool.pool(x, "lp", kernel=2, stride=2, norm_type=3.0)
    hand = x[:, :10, :12].pow(3).unfold(1, 2, 2).unfold(2, 2, 2).sum((-1, -2)).pow(1 / 3)
    torch.testing.assert_close(res.output, hand)
    res = pool.pool(x, "adaptive avg", output_hw=(4, 5))
    torch.testing.assert_close(res.output, nn.AdaptiveAvgPool2d((4, 5))(x[None])[0])
    res = pool.pool(x, "adaptive max", output_hw=(3, 3))
    ref, ref_idx = nn.AdaptiveMaxPool2d((3, 3), return_indices=True)(x[None])
    torch.testing.assert_close(res.output, ref[0])
    assert torch.equal(res.indices, ref_idx[0])
    assert res.out_shape == (1, 3, 3, 3) and res.in_shape == (1, 3, 10, 13)


def test_output_size_matches_torch_including_ceil_mode():
    x = torch.zeros(1, 1, 13, 10)
    for k, s, p, d, ceil in itertools.product(range(1, 6), range(1, 4), range(0, 3), (1, 2), (False, True)):
        if 2 * p > k:
            continue
        try:
            out = nn.MaxPool2d(k, s, p, d, ceil_mode=ceil)(x)
        except RuntimeError:
            assert min(pool.output_size(13, k, s, p, d, ceil), pool.output_size(10, k, s, p, d, ceil)) < 1
            continue
        assert out.shape[2:] == (pool.output_size(13, k, s, p, d, ceil), pool.output_size(10, k, s, p, d, ceil))


def test_invalid_combinations_say_the_torch_rule():
    x = torch.rand(3, 8, 8)
    with pytest.raises(RuntimeError):  # torch itself refuses ...
        nn.MaxPool2d(2, 2, padding=2)(x[None])
    with pytest.raises(OpError, match="padding must be at most half the kernel size"):  # ... we say why
        pool.pool(x, "max", kernel=2, stride=2, padding=2)
    with pytest.raises(OpError, match="only max pooling takes a dilation"):
        pool.pool(x, "avg", kernel=2, dilation=2)
    with pytest.raises(OpError, match="LP pooling has no padding"):
        pool.pool(x, "lp", kernel=2, padding=1)
    with pytest.raises(OpError, match="image smaller than the window"):
        pool.pool(torch.rand(3, 1, 1), "max", kernel=3, stride=1)
    assert pool.pool(torch.rand(3, 1, 1), "max", kernel=1).output.shape == (3, 1, 1)


def test_round_trip_error_by_hand():
    x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(9))
    identity = pool.pool(x, "max", kernel=1, stride=1)
    rt = pool.round_trip(x, identity, "nearest")
    assert rt.mse == 0 and rt.psnr == math.inf
    pooled = pool.pool(x, "avg", kernel=2, stride=2)
    rt = pool.round_trip(x, pooled, "nearest")
    rec = pooled.output.repeat_interleave(2, 1).repeat_interleave(2, 2)
    mse = float(((rec - x) ** 2).mean())
    assert rt.mse == pytest.approx(mse, rel=1e-5)
    assert rt.psnr == pytest.approx(10 * math.log10(1 / mse), rel=1e-5)
    mx = pool.pool(x, "max", kernel=2, stride=2)
    un = pool.round_trip(x, mx, "max unpool").reconstruction
    assert int((un != 0).sum()) == 3 * 16  # one survivor per window ...
    assert torch.equal(un[un != 0], x[un != 0])  # ... at its own place
    with pytest.raises(OpError):
        pool.round_trip(x, pooled, "max unpool")
