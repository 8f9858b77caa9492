"""Named convolution kernels (presets) at any size 1-7, odd or even.

Every preset is defined for every size so a user can switch sizes freely; at 3x3 each one is
the textbook kernel. For even sizes the "centre" is the pixel at (k//2, k//2), which is how
PyTorch lines up an even kernel with the output grid.
"""

from __future__ import annotations

import math

import torch

PRESETS: tuple[str, ...] = (
    "identity", "box blur", "gaussian", "sharpen", "sobel x", "sobel y", "laplacian", "emboss", "outline",
)
MIN_SIZE, MAX_SIZE = 1, 7

_DESCRIPTIONS = {
    "identity": "a single 1 at the centre: the output copies the input (shifted by the padding).",
    "box blur": "every weight 1/k²: each output is the plain mean of its k×k window.",
    "gaussian": "bell-shaped weights summing to 1: a smooth blur that favours the centre.",
    "sharpen": "identity minus a Laplacian: boosts a pixel against its neighbours.",
    "sobel x": "smooth vertically, differentiate horizontally: positive where brightness rises to the right.",
    "sobel y": "smooth horizontally, differentiate vertically: positive where brightness rises downwards.",
    "laplacian": "second derivative: zero on flat areas and ramps, large at edges and dots; sums to 0.",
    "emboss": "a diagonal difference plus the pixel itself: looks like light from the top left.",
    "outline": "k²−1 at the centre, −1 elsewhere: flat areas go to 0, edges light up; sums to 0.",
}


def describe(name: str) -> str:
    """One line on what the preset does."""
    return _DESCRIPTIONS[name]


def _binomial(n: int) -> torch.Tensor:
    """Row of Pascal's triangle with n entries (n >= 1), e.g. 3 -> [1, 2, 1]."""
    return torch.tensor([math.comb(n - 1, i) for i in range(n)], dtype=torch.float64)


def _delta(k: int) -> torch.Tensor:
    d = torch.zeros(k, k, dtype=torch.float64)
    d[k // 2, k // 2] = 1.0
    return d


def _gaussian(k: int) -> torch.Tensor:
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8  # OpenCV's default sigma for a k-tap kernel
    r = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g2 = torch.outer(g, g)
    return g2 / g2.sum()


def _laplacian(k: int) -> torch.Tensor:
    if k == 1:
        return torch.zeros(1, 1, dtype=torch.float64)
    if k == 3:
        return torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=torch.float64)
    # Gaussian minus the centre tap, scaled so the centre weight is -4 like the 3x3 one.
    lap = _gaussian(k) - _delta(k)
    return lap * (4.0 / -lap[k // 2, k // 2])


def _sobel(k: int) -> torch.Tensor:
    """x-derivative kernel (rows smooth, columns differentiate)."""
    if k == 1:
        return torch.zeros(1, 1, dtype=torch.float64)
    smooth = _binomial(k)
    deriv = torch.nn.functional.conv1d(
        _binomial(k - 1).view(1, 1, -1), torch.tensor([[[1.0, -1.0]]], dtype=torch.float64), padding=1
    ).view(-1)  # binomial(k-1) * [-1, 1] (cross-correlation with the flipped pair)
    return torch.outer(smooth, deriv)


def make(name: str, size: int) -> torch.Tensor:
    """The preset `name` as a (size, size) float32 kernel; size 1..7."""
    if name not in PRESETS:
        raise ValueError(f"unknown kernel preset {name!r}; choose one of {', '.join(PRESETS)}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"kernel size must be between {MIN_SIZE} and {MAX_SIZE}, got {size}")
    k = size
    if name == "identity":
        w = _delta(k)
    elif name == "box blur":
        w = torch.full((k, k), 1.0 / (k * k), dtype=torch.float64)
    elif name == "gaussian":
        w = _gaussian(k)
    elif name == "sharpen":
        w = _delta(k) - _laplacian(k)
    elif name == "sobel x":
        w = _sobel(k)
    elif name == "sobel y":
        w = _sobel(k).T.contiguous()
    elif name == "laplacian":
        w = _laplacian(k)
    elif name == "emboss":
        i = torch.arange(k, dtype=torch.float64)
        w = (i.view(-1, 1) + i.view(1, -1) - (k - 1)).clamp(-2, 2) if k > 1 else torch.zeros(1, 1, dtype=torch.float64)
        w[k // 2, k // 2] = 1.0
    else:  # outline
        w = -torch.ones(k, k, dtype=torch.float64)
        w[k // 2, k // 2] = k * k - 1
    return w.float()
