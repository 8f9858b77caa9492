"""Turn operation results into pictures for the pages: same-scale previews, zoomed crops.

All tensor-to-picture arithmetic for the operation pages lives here (pages only draw).
Big tensors are shrunk with area averaging *before* colouring, so a 1024×768 result costs
a few milliseconds to show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..images import display


def display_scale(sizes: list[tuple[int, int]], max_w: int = 560, max_h: int = 480, max_zoom: int = 8) -> float:
    """One scale for several (H, W) images so the largest fits max_w×max_h; an integer zoom when > 1."""
    h = max(s[0] for s in sizes)
    w = max(s[1] for s in sizes)
    s = min(max_w / max(w, 1), max_h / max(h, 1))
    if s >= 1:
        return float(max(1, min(max_zoom, math.floor(s))))
    return 1.0 / math.ceil(1.0 / s)  # 1/2, 1/3, ...: shrinking is then a cheap, exact box average


def resize_tensor(t: torch.Tensor, scale: float) -> torch.Tensor:
    """(C, H, W) -> scaled by `scale`: nearest when enlarging (crisp pixels), area when shrinking."""
    if scale == 1:
        return t
    h, w = t.shape[-2:]
    inv = 1.0 / scale
    if scale < 1 and abs(inv - round(inv)) < 1e-9:
        f = int(round(inv))  # box average over f×f blocks (a partial last block averages what it has)
        return F.avg_pool2d(t[None].float(), f, f, ceil_mode=True, count_include_pad=False)[0]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    mode = "nearest" if scale > 1 else "area"
    return F.interpolate(t[None].float(), size=size, mode=mode)[0]


def to_image(t: torch.Tensor, scale: float = 1.0) -> Image.Image:
    """(C, H, W) in [0, 1] (clamped) -> PIL image at `scale`."""
    return display.tensor_to_pil(resize_tensor(t, scale))


def to_signed(t: torch.Tensor, scale: float = 1.0, limit: float | None = None) -> Image.Image:
    """(H, W) or (1, H, W) signed values -> blue-white-red heatmap at `scale` (limit from the full map)."""
    t = t if t.ndim == 3 else t[None]
    lim = float(t.abs().max()) if limit is None else limit
    return display.signed_heatmap(resize_tensor(t, scale)[0], limit=lim)


def to_heat(t: torch.Tensor, scale: float = 1.0) -> Image.Image:
    """(H, W) values -> viridis heatmap at `scale`, coloured over the full map's range."""
    t = t if t.ndim == 3 else t[None]
    return display.heatmap(resize_tensor(t, scale)[0], vmin=float(t.min()), vmax=float(t.max()))


@dataclass
class Crop:
    """A window of an image: rows top..top+h-1, cols left..left+w-1 (clipped to the image)."""

    top: int
    left: int
    h: int
    w: int


def crop_around(hw: tuple[int, int], cy: float, cx: float, size: int) -> Crop:
    """A size×size window (or smaller when the image is) centred at fractional position (cy, cx) in 0..1."""
    H, W = hw
    h, w = min(size, H), min(size, W)
    top = min(max(0, round(cy * H - h / 2)), H - h)
    left = min(max(0, round(cx * W - w / 2)), W - w)
    return Crop(top, left, h, w)


def crop_tensor(t: torch.Tensor, c: Crop) -> torch.Tensor:
    return t[..., c.top:c.top + c.h, c.left:c.left + c.w]


def grid_image(t: torch.Tensor, cell: int) -> Image.Image:
    """(C, h, w) in [0, 1] -> enlarged cell×cell per pixel with a pixel grid drawn."""
    return display.pixel_grid(display.tensor_to_pil(t), cell)


def cell_for(hw: tuple[int, int], target: int = 320, max_cell: int = 48) -> int:
    """Cell size so an h×w crop is about `target` px on its long side."""
    return int(max(2, min(max_cell, target // max(hw))))


def percent(mask: torch.Tensor) -> float:
    """Share of True values, in percent."""
    return 100.0 * float(mask.float().mean()) if mask.numel() else 0.0


def table(t: torch.Tensor, digits: int = 3) -> np.ndarray:
    """A small 2-D tensor as a rounded numpy array for st.dataframe."""
    return np.round(t.detach().double().cpu().numpy(), digits)


def image_grid(batch: torch.Tensor, cols: int = 8, cell: int = 64, gap: int = 2) -> Image.Image:
    """(N, 3, h, w) in [0, 1] -> one contact sheet, each image resized to cell×cell (nearest when enlarging)."""
    n = batch.shape[0]
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    mode = "nearest" if batch.shape[-1] < cell else "area"
    small = F.interpolate(batch.float(), size=(cell, cell), mode=mode).clamp(0, 1)
    sheet = torch.ones(3, rows * (cell + gap) - gap, cols * (cell + gap) - gap)
    for i in range(n):
        r, c = divmod(i, cols)
        sheet[:, r * (cell + gap):r * (cell + gap) + cell, c * (cell + gap):c * (cell + gap) + cell] = small[i]
    return display.tensor_to_pil(sheet)


def human(n: float) -> str:
    """A count in words for big numbers: 1234 -> '1,234', 8.6e10 -> '86.3 billion'."""
    for size, word in ((1e15, "quadrillion"), (1e12, "trillion"), (1e9, "billion"), (1e6, "million")):
        if abs(n) >= size:
            return f"{n / size:.3g} {word}"
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.3g}"


def zoom_same_area(out: torch.Tensor, in_hw: tuple[int, int], crop: Crop, cell: int
                   ) -> tuple[Image.Image, tuple[int, int], float]:
    """The part of a resized output `out` (C, h', w') covering input crop `crop`, drawn so it has the
    same physical size as the input crop drawn with `cell` px per pixel. Returns (image, (rows, cols), px per pixel)."""
    sy, sx = out.shape[1] / in_hw[0], out.shape[2] / in_hw[1]
    top, left = math.floor(crop.top * sy), math.floor(crop.left * sx)
    h = max(1, min(out.shape[1] - top, round(crop.h * sy)))
    w = max(1, min(out.shape[2] - left, round(crop.w * sx)))
    part = out[:, top:top + h, left:left + w]
    ocell = cell / max(sy, sx)
    if ocell >= 1 and float(ocell).is_integer():
        img = grid_image(part, int(ocell))
    else:
        target = (max(1, round(crop.w * cell)), max(1, round(crop.h * cell)))
        img = display.tensor_to_pil(part).resize(target, Image.Resampling.NEAREST)
        if ocell >= 4:
            img = display.pixel_grid(display.tensor_to_pil(part), max(1, round(ocell)))
    return img, (h, w), ocell


def windows_in_crop(out_hw: tuple[int, int], crop: Crop, stride: int, padding: int) -> Crop:
    """The output pixels of a pool/conv whose windows start inside input crop `crop`."""
    def rng(start: int, n: int, size: int) -> tuple[int, int]:
        lo = max(0, math.ceil((start + padding) / stride))
        hi = min(size - 1, math.floor((start + n - 1 + padding) / stride))
        return lo, max(lo, hi)
    (r0, r1), (c0, c1) = rng(crop.top, crop.h, out_hw[0]), rng(crop.left, crop.w, out_hw[1])
    return Crop(r0, c0, r1 - r0 + 1, c1 - c0 + 1)
