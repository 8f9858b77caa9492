"""Upsampling: every F.interpolate mode, and a bilinear-initialised transposed convolution.

`upsample` wraps F.interpolate (scale factor or target size, align_corners where PyTorch
allows it); `transposed_upsample` runs ConvTranspose2d with the classic fixed bilinear kernel
(FCN, Long et al. 2015), so the two can be compared on the same image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import OpError

MODES: tuple[str, ...] = ("nearest", "nearest-exact", "bilinear", "bicubic", "area")
ALIGN_CORNERS_MODES: tuple[str, ...] = ("bilinear", "bicubic")
MAX_OUTPUT_PIXELS = 16_777_216  # per channel (4096²); beyond this the page would stall


def uses_align_corners(mode: str) -> bool:
    """Whether F.interpolate accepts align_corners for `mode` (only the (bi)linear/bicubic family)."""
    return mode in ALIGN_CORNERS_MODES


@dataclass
class UpsampleResult:
    """An interpolated image and the shapes involved."""

    output: torch.Tensor              # (C, H_out, W_out)
    mode: str
    align_corners: bool | None
    in_shape: tuple[int, ...]         # (1, C, H, W) as the layer sees it
    out_shape: tuple[int, ...]

    @property
    def call(self) -> str:
        """The F.interpolate call that produced this, as code."""
        ac = f", align_corners={self.align_corners}" if self.align_corners is not None else ""
        return f"F.interpolate(x, size={tuple(self.out_shape[2:])}, mode={self.mode!r}{ac})"


def target_size(hw: tuple[int, int], scale: float | None = None, size: tuple[int, int] | None = None) -> tuple[int, int]:
    """Output (H, W) for a scale factor (floor(H·s), as F.interpolate computes) or an explicit size."""
    if size is not None:
        return int(size[0]), int(size[1])
    if scale is None or scale <= 0:
        raise OpError("give a positive scale factor or a target size")
    return math.floor(hw[0] * scale), math.floor(hw[1] * scale)


def upsample(x: torch.Tensor, mode: str = "nearest", *, scale: float | None = None,
             size: tuple[int, int] | None = None, align_corners: bool = False) -> UpsampleResult:
    """Resize a (C, H, W) image with F.interpolate; align_corners is ignored where it doesn't apply."""
    if mode not in MODES:
        raise OpError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    c, h, w = x.shape
    oh, ow = target_size((h, w), scale, size)
    if oh < 1 or ow < 1:
        raise OpError(f"the output would be {oh}×{ow}: pick a larger scale or size for this {h}×{w} image")
    if oh * ow > MAX_OUTPUT_PIXELS:
        raise OpError(f"the output would be {oh}×{ow} ({oh * ow / 1e6:.0f} MP per channel): pick a smaller "
                      "scale or shrink the image in the sidebar")
    ac = bool(align_corners) if uses_align_corners(mode) else None
    out = F.interpolate(x[None], size=(oh, ow), mode=mode, align_corners=ac)
    if mode == "bicubic":
        out = out.clamp(0, 1) if x.min() >= 0 and x.max() <= 1 else out  # bicubic overshoots [0, 1]
    return UpsampleResult(out[0], mode, ac, (1, c, h, w), (1, c, oh, ow))


def bilinear_kernel(factor: int) -> torch.Tensor:
    """The (k, k) bilinear upsampling kernel for an integer factor, k = 2f − f mod 2."""
    k = 2 * factor - factor % 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    r = torch.arange(k, dtype=torch.float64)
    w1 = 1 - (r - center).abs() / factor
    return torch.outer(w1, w1).float()


@dataclass
class TransposedResult:
    """ConvTranspose2d(C, C, k, stride=f, padding=p, groups=C) with the fixed bilinear kernel."""

    output: torch.Tensor      # (C, f·H, f·W)
    kernel: torch.Tensor      # (k, k)
    factor: int
    padding: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    @property
    def layer(self) -> str:
        c = self.in_shape[1]
        k = self.kernel.shape[0]
        return (f"nn.ConvTranspose2d({c}, {c}, kernel_size={k}, stride={self.factor}, padding={self.padding}, "
                f"groups={c}, bias=False)")


def transposed_upsample(x: torch.Tensor, factor: int) -> TransposedResult:
    """Upsample (C, H, W) by an integer factor >= 1 with a bilinear-initialised transposed conv."""
    if int(factor) != factor or factor < 1:
        raise OpError(f"a transposed conv upsamples by a whole factor (1, 2, 3, ...), not {factor}")
    f = int(factor)
    c, h, w = x.shape
    kern = bilinear_kernel(f)
    pad = math.ceil((f - 1) / 2)
    weight = kern.to(device=x.device, dtype=x.dtype).expand(c, 1, *kern.shape)
    inp = x[None]
    if c > 1 and x.device.type == "cpu":
        inp = inp.contiguous(memory_format=torch.channels_last)  # ~3x faster grouped conv on CPU
    out = F.conv_transpose2d(inp, weight, stride=f, padding=pad, groups=c)
    return TransposedResult(out[0].contiguous(), kern, f, pad, (1, c, h, w), tuple(out.shape))


def compare(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(mean squared error, max absolute difference) between two same-shaped images."""
    d = a - b
    return float(d.pow(2).mean()), float(d.abs().max())
