"""Turn tensors into pictures: images, signed heatmaps, channel grids.

Shared by every page that shows a tensor, so one visual language holds across the app:
images are shown as they are, single-channel maps with the 'viridis'-like ramp, and
signed maps with a blue-white-red diverging ramp centred on zero.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

# Small, dependency-free colour ramps (sampled from matplotlib's viridis and RdBu_r).
_VIRIDIS = np.array([
    [68, 1, 84], [72, 35, 116], [64, 67, 135], [52, 94, 141], [41, 120, 142], [32, 144, 140],
    [34, 167, 132], [68, 190, 112], [121, 209, 81], [189, 222, 38], [253, 231, 37],
], dtype=np.float64)
_RDBU = np.array([
    [5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240], [247, 247, 247],
    [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31],
], dtype=np.float64)


def _ramp(values01: np.ndarray, table: np.ndarray) -> np.ndarray:
    x = np.clip(values01, 0.0, 1.0) * (len(table) - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, len(table) - 1)
    t = (x - lo)[..., None]
    return (table[lo] * (1 - t) + table[hi] * t).round().astype(np.uint8)


def pil_to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL image -> float tensor (C, H, W) in [0, 1]."""
    arr = np.asarray(im, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


def tensor_to_pil(x: torch.Tensor, clamp: bool = True) -> Image.Image:
    """Float tensor (C, H, W) or (H, W) in [0, 1] -> PIL image (values clamped to [0, 1])."""
    x = x.detach().float().cpu()
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if clamp:
        x = x.clamp(0, 1)
    arr = (x.numpy() * 255.0).round().astype(np.uint8)
    if arr.ndim == 3:
        arr = arr.transpose(1, 2, 0)
    return Image.fromarray(arr)


def heatmap(x: torch.Tensor, vmin: float | None = None, vmax: float | None = None) -> Image.Image:
    """A 2-D map as a viridis image, scaled from vmin..vmax (default: its own range)."""
    a = x.detach().float().cpu().numpy()
    lo = float(a.min()) if vmin is None else vmin
    hi = float(a.max()) if vmax is None else vmax
    scaled = np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo)
    return Image.fromarray(_ramp(scaled, _VIRIDIS))


def signed_heatmap(x: torch.Tensor, limit: float | None = None) -> Image.Image:
    """A 2-D map where negative is blue, zero white and positive red, symmetric about 0."""
    a = x.detach().float().cpu().numpy()
    lim = float(np.abs(a).max()) if limit is None else limit
    scaled = np.full_like(a, 0.5) if lim == 0 else a / (2 * lim) + 0.5
    return Image.fromarray(_ramp(scaled, _RDBU))


def upscale_nearest(im: Image.Image, min_side: int = 256) -> Image.Image:
    """Enlarge small images with nearest neighbour so pixels stay visible as squares."""
    side = min(im.size)
    if side >= min_side:
        return im
    f = int(np.ceil(min_side / max(side, 1)))
    return im.resize((im.width * f, im.height * f), Image.Resampling.NEAREST)


def overlay(base: Image.Image, heat: Image.Image, alpha: float = 0.5) -> Image.Image:
    """Blend a heatmap over an image (heat resized to the image with bilinear)."""
    heat = heat.convert("RGB").resize(base.size, Image.Resampling.BILINEAR)
    return Image.blend(base.convert("RGB"), heat, alpha)


# --- Added by the operations pages (convolution, upsample & pooling, BatchNorm) ---------------

def preview(im: Image.Image, max_side: int = 640) -> tuple[Image.Image, float]:
    """Shrink `im` (box filter) so its longer side is at most max_side; returns (image, scale <= 1)."""
    side = max(im.size)
    if side <= max_side:
        return im, 1.0
    scale = max_side / side
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(size, Image.Resampling.BOX), scale


def pixel_grid(im: Image.Image, cell: int, line: tuple[int, int, int] = (60, 60, 60)) -> Image.Image:
    """Enlarge every pixel to a cell×cell square (nearest) and draw 1-px grid lines between them."""
    cell = max(1, int(cell))
    big = im.convert("RGB").resize((im.width * cell, im.height * cell), Image.Resampling.NEAREST)
    if cell >= 4:
        arr = np.array(big)
        arr[::cell, :, :] = line
        arr[:, ::cell, :] = line
        big = Image.fromarray(arr)
    return big


def draw_boxes(im: Image.Image, boxes: list[tuple[float, float, float, float]], scale: float = 1.0,
               colour: tuple[int, int, int] = (255, 40, 40), width: int = 2) -> Image.Image:
    """Copy of `im` with rectangles drawn; boxes are (top, left, bottom, right) inclusive, in pixels
    of the original image, multiplied by `scale` (the factor `im` was enlarged or shrunk by)."""
    from PIL import ImageDraw

    out = im.convert("RGB").copy()
    d = ImageDraw.Draw(out)
    for top, left, bottom, right in boxes:
        d.rectangle([left * scale, top * scale, (right + 1) * scale - 1, (bottom + 1) * scale - 1],
                    outline=colour, width=width)
    return out


def draw_dots(im: Image.Image, points: list[tuple[int, int]], cell: int, sizes: list[int] | None = None,
              colour: tuple[int, int, int] = (255, 40, 40)) -> Image.Image:
    """Mark pixel centres (row, col) on a pixel_grid image with cell-sized cells; `sizes` scales each dot."""
    from PIL import ImageDraw

    out = im.copy()
    d = ImageDraw.Draw(out)
    for i, (r, c) in enumerate(points):
        k = 1 if sizes is None else sizes[i]
        rad = max(2.0, cell * min(0.18 + 0.07 * k, 0.45))
        cy, cx = (r + 0.5) * cell, (c + 0.5) * cell
        d.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], fill=colour, outline=(255, 255, 255))
    return out
