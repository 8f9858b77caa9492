"""Sprite sheets (cnnviz.inspect.sprites): every point's thumbnail tiled in one picture for the
Projector's hover view: tile i sits at column i % cols, row i // cols and is exactly the thumbnail of
image i; 1-channel images stay grey (PNG, lossless), colour ones JPEG; odd input and the memory
budget are refused in one line before anything is allocated."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from cnnviz.inspect import sprites as SP
from cnnviz.limits import BudgetError


def _tile(grid: np.ndarray, i: int, tile: int, cols: int) -> np.ndarray:
    r, c = divmod(i, cols)
    return grid[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile]


def test_one_channel_tiles_are_the_images_themselves_and_the_png_is_lossless():
    imgs = torch.randint(0, 256, (11, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    sp = SP.sprite_sheet(imgs)
    assert (sp.mime, sp.count, sp.tile, sp.cols, sp.rows) == ("image/png", 11, 28, 4, 3)
    assert (sp.width, sp.height) == (112, 84) and sp.offset(6) == (56, 28)
    grid = np.asarray(Image.open(io.BytesIO(sp.data)))
    assert grid.shape == (84, 112) and grid.dtype == np.uint8
    assert np.array_equal(grid, SP.sprite_grid(imgs))
    for i in range(11):
        x, y = sp.offset(i)
        assert np.array_equal(grid[y:y + 28, x:x + 28], imgs[i, 0].numpy())
        assert np.array_equal(SP.thumbnail(imgs[i], 28), imgs[i, 0].numpy())
    assert not grid[56:, 84:].any()          # the unused 12th tile is black


def test_colour_images_are_shrunk_to_their_thumbnails_and_sent_as_jpeg():
    g = torch.Generator().manual_seed(1)
    imgs = torch.randint(0, 256, (7, 3, 8, 8), dtype=torch.uint8, generator=g)
    imgs = imgs.repeat_interleave(5, -1).repeat_interleave(5, -2)      # 40x40, smooth enough for JPEG
    grid = SP.sprite_grid(imgs)
    assert grid.shape == (3 * 32, 3 * 32, 3)                            # tile min(32, 40); 3 x 3 for 7
    for i in range(7):
        thumb = SP.thumbnail(imgs[i], 32)
        assert thumb.shape == (32, 32, 3) and np.array_equal(_tile(grid, i, 32, 3), thumb)
        # a thumbnail is the image shrunk: its mean colour is the image's
        assert np.allclose(thumb.reshape(-1, 3).mean(0), imgs[i].float().mean((1, 2)).numpy(), atol=2)
    sp = SP.sprite_sheet(imgs, quality=95)
    assert sp.mime == "image/jpeg" and (sp.tile, sp.cols, sp.rows) == (32, 3, 3)
    decoded = np.asarray(Image.open(io.BytesIO(sp.data)).convert("RGB")).astype(int)
    assert decoded.shape == grid.shape
    for i in range(7):   # JPEG (chroma subsampled) keeps each tile's colours, not every pixel exactly
        assert np.abs(_tile(decoded, i, 32, 3).mean((0, 1)) - _tile(grid, i, 32, 3).mean((0, 1))).max() < 4
    # other channel counts: the first three channels (or the first one)
    four = torch.cat([imgs, torch.zeros_like(imgs[:, :1])], 1)
    assert np.array_equal(SP.sprite_grid(four), grid)
    assert SP.sprite_grid(imgs[:, :2]).shape == (96, 96)
    assert SP.sprite_grid(imgs, tile=10).shape == (30, 30, 3)


def test_odd_input_and_the_memory_budget_are_refused_in_one_line():
    with pytest.raises(ValueError, match="No points"):
        SP.sprite_sheet(torch.zeros((0, 1, 28, 28), dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        SP.sprite_grid(torch.zeros((3, 1, 8, 8)))
    with pytest.raises(ValueError, match="tile must be"):
        SP.sprite_grid(torch.zeros((3, 1, 8, 8), dtype=torch.uint8), tile=0)
    # 200,000 CIFAR-sized images (a view of one: nothing allocated) are over the default 1 GiB budget
    many = torch.zeros((1, 3, 32, 32), dtype=torch.uint8).expand(200_000, -1, -1, -1)
    with pytest.raises(BudgetError) as err:
        SP.sprite_sheet(many)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("Refused: a sprite sheet of 200,000 thumbnails of 32x32 pixels")
    with pytest.raises(BudgetError):
        SP.sprite_grid(torch.zeros((500, 1, 28, 28), dtype=torch.uint8), budget=2**20)
    assert SP.sprite_grid(torch.zeros((500, 1, 28, 28), dtype=torch.uint8), budget=8 * 2**20).shape == (616, 644)
