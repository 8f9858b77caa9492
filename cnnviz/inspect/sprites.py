"""Sprite sheets: every point's thumbnail tiled in one picture (what TensorBoard's projector sends).

The Projector's hover view shows the image under the mouse. Sending one picture per point (or per
hover) would be thousands of requests; instead `sprite_sheet` tiles all N thumbnails, row by row, in
a grid of `cols` = ceil(sqrt(N)) columns of `tile` x `tile` pixels, encodes it once (PNG for 1-channel
images, JPEG for colour ones: 10,000 CIFAR-sized tiles are ~25 MB as PNG, ~3 MB as JPEG), and the
browser shows tile i with a CSS background-position of (-(i % cols) * tile, -(i // cols) * tile).

`thumbnail` is the one-image version (a tile is exactly `thumbnail(image)`); the memory a sheet needs
is checked against the server's budget (cnnviz.limits) before anything is allocated.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..limits import check_budget

MAX_TILE = 32
CHUNK = 512          # images resized at once (bounds the float copy)


@dataclass(frozen=True)
class Sprite:
    """An encoded sprite sheet: tile i is at column i % cols, row i // cols."""

    data: bytes
    mime: str            # "image/png" or "image/jpeg"
    count: int           # tiles (points)
    tile: int            # side of one tile in pixels
    cols: int
    rows: int

    @property
    def width(self) -> int:
        return self.cols * self.tile

    @property
    def height(self) -> int:
        return self.rows * self.tile

    def offset(self, i: int) -> tuple[int, int]:
        """(x, y) in pixels of tile i's top-left corner."""
        return (i % self.cols) * self.tile, (i // self.cols) * self.tile


def tile_side(images: torch.Tensor, max_tile: int = MAX_TILE) -> int:
    """The tile side for `images` (N, C, H, W): their own side when it is at most `max_tile` (no resampling)."""
    return int(max(1, min(int(max_tile), max(int(images.shape[-2]), int(images.shape[-1])))))


def _as_uint8_nchw(images) -> torch.Tensor:
    t = torch.as_tensor(images)
    if t.ndim == 3:                      # (N, H, W): one channel
        t = t.unsqueeze(1)
    if t.ndim != 4 or t.dtype != torch.uint8:
        raise ValueError(f"sprite images must be uint8 (N, C, H, W), not {t.dtype} {tuple(t.shape)}")
    c = t.shape[1]
    if c not in (1, 3):                  # 2 or 4+ channels (designs): the first three, else the first one
        t = t[:, :3] if c > 3 else t[:, :1]
    return t


def _resize(batch: torch.Tensor, tile: int) -> torch.Tensor:
    """uint8 (n, C, H, W) -> uint8 (n, C, tile, tile): unchanged at that size, else antialiased bilinear."""
    if tuple(batch.shape[-2:]) == (tile, tile):
        return batch
    x = F.interpolate(batch.float(), size=(tile, tile), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)


def thumbnail(image, tile: int) -> np.ndarray:
    """One image (C, H, W) uint8 as its tile: (tile, tile) for 1 channel, (tile, tile, 3) for colour."""
    t = _resize(_as_uint8_nchw(torch.as_tensor(image).unsqueeze(0)), int(tile))[0]
    return t[0].numpy() if t.shape[0] == 1 else t.permute(1, 2, 0).numpy()


def sprite_grid(images, tile: int | None = None, budget: int | None = None) -> np.ndarray:
    """The sheet as pixels: uint8 (rows*tile, cols*tile) for 1-channel images, (.., .., 3) for colour ones.
    BudgetError (a ValueError) before allocating when it would not fit the memory budget."""
    t = _as_uint8_nchw(images)
    n, c = int(t.shape[0]), int(t.shape[1])
    if n == 0:
        raise ValueError("No points: there is nothing to make a sprite sheet of.")
    tile = tile_side(t) if tile is None else int(tile)
    if tile < 1:
        raise ValueError(f"tile must be at least 1 pixel, not {tile}")
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid_bytes = rows * cols * tile * tile * c
    chunk = min(n, CHUNK) * c * (tile * tile + int(t.shape[-2]) * int(t.shape[-1])) * 4.0
    # the grid, PIL's copy of it and the encoder's output, plus one chunk resized in float
    check_budget(f"a sprite sheet of {n:,} thumbnails of {tile}x{tile} pixels", grid_bytes * 3.0 + chunk, budget)
    tiles = np.zeros((rows * cols, tile, tile, c), np.uint8)
    for s in range(0, n, CHUNK):
        tiles[s:min(n, s + CHUNK)] = _resize(t[s:s + CHUNK], tile).permute(0, 2, 3, 1).numpy()
    grid = tiles.reshape(rows, cols, tile, tile, c).transpose(0, 2, 1, 3, 4).reshape(rows * tile, cols * tile, c)
    return grid[..., 0] if c == 1 else grid


def sprite_sheet(images, tile: int | None = None, budget: int | None = None, quality: int = 90) -> Sprite:
    """All of `images` (uint8 (N, C, H, W)) tiled and encoded once: PNG when they have one channel, else JPEG."""
    t = _as_uint8_nchw(images)
    tile = tile_side(t) if tile is None and len(t) else tile
    grid = sprite_grid(t, tile, budget)
    tile = int(tile)
    cols, rows = grid.shape[1] // tile, grid.shape[0] // tile
    im = Image.fromarray(grid, "L" if grid.ndim == 2 else "RGB")
    buf = io.BytesIO()
    if grid.ndim == 2:
        im.save(buf, format="PNG", optimize=False, compress_level=6)
        mime = "image/png"
    else:
        im.save(buf, format="JPEG", quality=int(quality))
        mime = "image/jpeg"
    return Sprite(buf.getvalue(), mime, int(t.shape[0]), tile, cols, rows)
