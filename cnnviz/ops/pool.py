"""Pooling: max (with the winning pixel of every window), average, LP and adaptive pooling,
the parameter rules PyTorch enforces, and a pool -> upsample round trip with its error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import OpError

KINDS: tuple[str, ...] = ("max", "avg", "lp", "adaptive max", "adaptive avg")
ROUND_TRIP_MODES: tuple[str, ...] = ("nearest", "bilinear", "bicubic", "max unpool")


def output_size(size: int, kernel: int, stride: int, padding: int = 0, dilation: int = 1,
                ceil_mode: bool = False) -> int:
    """Pooling output length, as PyTorch computes it (with its ceil_mode rule).

    floor or ceil of (size + 2p − d(k−1) − 1)/s, + 1; with ceil_mode the last window is dropped
    if it would start inside the right padding only.
    """
    num = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (-(-num // stride) if ceil_mode else num // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def check(kind: str, hw: tuple[int, int], kernel: int, stride: int, padding: int = 0, dilation: int = 1,
          ceil_mode: bool = False) -> None:
    """Raise OpError with PyTorch's rule, in one line, if these settings can't pool an h×w image."""
    if kind not in KINDS:
        raise OpError(f"pooling kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind.startswith("adaptive"):
        return
    if kernel < 1 or stride < 1 or dilation < 1 or padding < 0:
        raise OpError("kernel, stride and dilation must be at least 1, padding at least 0")
    if kind == "lp" and padding:
        raise OpError("LP pooling has no padding argument in PyTorch (F.lp_pool2d): set padding to 0")
    if kind != "max" and dilation != 1:
        raise OpError("only max pooling takes a dilation in PyTorch: set dilation to 1")
    if padding * 2 > kernel:
        raise OpError(f"PyTorch rule: padding must be at most half the kernel size (pad ≤ k/2); "
                      f"got padding {padding} with kernel {kernel}")
    for axis, n in zip("HW", hw):
        out = output_size(n, kernel, stride, padding, dilation, ceil_mode)
        if out < 1:
            span = dilation * (kernel - 1) + 1
            raise OpError(f"image smaller than the window: {axis} = {n} (+2·{padding} padding) but the "
                          f"window spans {span} px, so the output would be {out} long")


@dataclass
class PoolResult:
    """A pooled image; for max pooling also the flat index (into H·W) of each window's winner."""

    output: torch.Tensor               # (C, H_out, W_out)
    indices: torch.Tensor | None       # (C, H_out, W_out) int64 for max pooling, else None
    kind: str
    kernel: int
    stride: int
    padding: int
    dilation: int
    ceil_mode: bool
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    call: str                          # the torch call, as code


def pool(x: torch.Tensor, kind: str = "max", *, kernel: int = 2, stride: int | None = None, padding: int = 0,
         dilation: int = 1, ceil_mode: bool = False, norm_type: float = 2.0,
         output_hw: tuple[int, int] | None = None, count_include_pad: bool = True) -> PoolResult:
    """Pool a (C, H, W) image. stride defaults to kernel; output_hw is for the adaptive kinds."""
    c, h, w = x.shape
    stride = kernel if stride is None else stride
    check(kind, (h, w), kernel, stride, padding, dilation, ceil_mode)
    xb = x[None]
    idx = None
    if kind == "max":
        out, idx = F.max_pool2d(xb, kernel, stride, padding, dilation, ceil_mode=ceil_mode, return_indices=True)
        call = (f"F.max_pool2d(x, kernel_size={kernel}, stride={stride}, padding={padding}, dilation={dilation}, "
                f"ceil_mode={ceil_mode}, return_indices=True)")
    elif kind == "avg":
        out = F.avg_pool2d(xb, kernel, stride, padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
        call = (f"F.avg_pool2d(x, kernel_size={kernel}, stride={stride}, padding={padding}, ceil_mode={ceil_mode}, "
                f"count_include_pad={count_include_pad})")
    elif kind == "lp":
        out = F.lp_pool2d(xb, norm_type, kernel, stride, ceil_mode=ceil_mode)
        call = f"F.lp_pool2d(x, norm_type={norm_type:g}, kernel_size={kernel}, stride={stride}, ceil_mode={ceil_mode})"
    else:
        if output_hw is None or min(output_hw) < 1:
            raise OpError("adaptive pooling needs an output size of at least 1×1")
        oh, ow = int(output_hw[0]), int(output_hw[1])
        if kind == "adaptive max":
            out, idx = F.adaptive_max_pool2d(xb, (oh, ow), return_indices=True)
            call = f"F.adaptive_max_pool2d(x, output_size=({oh}, {ow}), return_indices=True)"
        else:
            out = F.adaptive_avg_pool2d(xb, (oh, ow))
            call = f"F.adaptive_avg_pool2d(x, output_size=({oh}, {ow}))"
    return PoolResult(out[0], None if idx is None else idx[0], kind, kernel, stride, padding, dilation, ceil_mode,
                      (1, c, h, w), tuple(out.shape), call)


def winner_counts(indices: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(C, H, W) int: how many windows each input pixel won (from max pooling's flat indices)."""
    c = indices.shape[0]
    counts = torch.zeros(c, hw[0] * hw[1], dtype=torch.int64, device=indices.device)
    counts.scatter_add_(1, indices.reshape(c, -1), torch.ones_like(indices.reshape(c, -1)))
    return counts.view(c, *hw)


@dataclass
class RoundTrip:
    """pool -> upsample back to the input size, and how much was lost."""

    reconstruction: torch.Tensor   # (C, H, W)
    mode: str
    mse: float
    psnr: float                    # dB, for values in [0, 1]; inf when identical


def round_trip(x: torch.Tensor, pooled: PoolResult, mode: str = "nearest") -> RoundTrip:
    """Upsample `pooled` back to x's size (or max-unpool it) and compare with x."""
    if mode not in ROUND_TRIP_MODES:
        raise OpError(f"round-trip mode must be one of {', '.join(ROUND_TRIP_MODES)}")
    h, w = x.shape[1:]
    if mode == "max unpool":
        if pooled.indices is None or pooled.kind != "max":
            raise OpError("max unpool needs max pooling (it puts each max back where it came from)")
        rec = F.max_unpool2d(pooled.output[None], pooled.indices[None], pooled.kernel, pooled.stride,
                             pooled.padding, output_size=(h, w))[0]
    else:
        rec = F.interpolate(pooled.output[None], size=(h, w), mode=mode,
                            align_corners=False if mode != "nearest" else None)[0]
        if mode == "bicubic":
            rec = rec.clamp(0, 1)
    mse = float(F.mse_loss(rec, x))
    psnr = math.inf if mse == 0 else 10 * math.log10(1.0 / mse)
    return RoundTrip(rec, mode, mse, psnr)
