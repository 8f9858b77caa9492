"""The built-in `shapes` dataset: 10 classes of coloured figures on textured backgrounds.

Everything is drawn with vectorised numpy: each figure is an implicit function (inside < 0)
evaluated on a 2x supersampled grid in the figure's own rotated, scaled frame, then averaged
down to 32x32 for anti-aliased edges. Random position, scale, rotation, aspect, colour,
background texture (gradient + stripes + blotches + noise) and an occluding bar make it
learnable but not trivial. The same seed always gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

CLASSES: list[str] = ["circle", "square", "triangle", "star", "cross",
                      "ring", "diamond", "hexagon", "heart", "arrow"]
SIZE = 32
SUPER = 2  # supersampling factor for anti-aliased edges
VERSION = 3  # bump when the drawing changes (part of the cache key)

# difficulty knobs (tuned so LeNet5 gets well above chance, far from 100%, after 1 epoch)
TEXTURE = 0.12
BLOTCH = 0.06
NOISE = (0.01, 0.06)
OCCLUDE = 0.25
RADIUS = (8.0, 13.0)
ROTATE = 15.0  # degrees either way

Inside = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _polar(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.hypot(u, v), np.arctan2(v, u)


def _circle(u, v):
    return u * u + v * v - 0.85 ** 2


def _square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) - 0.72


def _triangle(u, v):
    # equilateral triangle with circumradius 1, pointing up (v grows downwards)
    d = v - 0.5
    for ang in (7 * np.pi / 6, 11 * np.pi / 6):
        d = np.maximum(d, u * np.cos(ang) + v * np.sin(ang) - 0.5)
    return d


def _star(u, v):
    r, t = _polar(u, v)
    k = 5
    sector = np.mod(t + np.pi / 2, 2 * np.pi / k) - np.pi / k  # -pi/k..pi/k
    frac = np.abs(sector) / (np.pi / k)
    return r - (1.0 * (1 - frac) + 0.42 * frac)


def _cross(u, v):
    a, b = np.abs(u), np.abs(v)
    arm1 = np.maximum(a - 0.9, b - 0.28)
    arm2 = np.maximum(a - 0.28, b - 0.9)
    return np.minimum(arm1, arm2)


def _ring(u, v):
    return np.abs(np.hypot(u, v) - 0.68) - 0.24


def _diamond(u, v):
    return np.abs(u) / 0.55 + np.abs(v) / 1.0 - 1.0


def _hexagon(u, v):
    r, t = _polar(u, v)
    sector = np.mod(t, np.pi / 3) - np.pi / 6
    return r * np.cos(sector) - 0.82


def _heart(u, v):
    x, y = u * 1.15, -v * 1.15 + 0.15
    q = x * x + y * y - 1
    return q * q * q - x * x * (y * y * y)


def _arrow(u, v):
    shaft = np.maximum(np.abs(v) - 0.2, np.maximum(-u - 0.95, u - 0.15))
    head = np.maximum(u - 0.95, np.maximum(-u + 0.05, np.abs(v) - (0.95 - u) * 0.7))
    head = np.maximum(head, -u - 0.2)
    return np.minimum(shaft, head)


SHAPES: list[Inside] = [_circle, _square, _triangle, _star, _cross,
                        _ring, _diamond, _hexagon, _heart, _arrow]


def _grid() -> tuple[np.ndarray, np.ndarray]:
    n = SIZE * SUPER
    c = (np.arange(n, dtype=np.float32) + 0.5) / SUPER  # pixel units, 0..32
    return c[None, :].repeat(n, 0), c[:, None].repeat(n, 1)  # x (cols), y (rows)


def _downsample(mask: np.ndarray) -> np.ndarray:
    b, n, _ = mask.shape
    return mask.reshape(b, SIZE, SUPER, SIZE, SUPER).mean(axis=(2, 4), dtype=np.float32)


def _backgrounds(rng: np.random.Generator, b: int) -> np.ndarray:
    """Textured backgrounds (b, 32, 32, 3) float32 (about [0, 1]) and their base colours (b, 3)."""
    lin = (np.arange(SIZE, dtype=np.float32) + 0.5) / SIZE
    x, y = lin[None, None, :], lin[None, :, None]
    c1 = rng.uniform(0, 0.55, (b, 1, 1, 3)).astype(np.float32)
    c2 = np.clip(c1 + rng.uniform(-0.25, 0.25, (b, 1, 1, 3)), 0, 1).astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi, (b, 1, 1)).astype(np.float32)
    g = (np.cos(ang) * (x - 0.5) + np.sin(ang) * (y - 0.5)) + 0.5
    bg = c1 + (c2 - c1) * np.clip(g, 0, 1)[..., None]
    # stripes / checks of random frequency and orientation
    freq = rng.uniform(2, 9, (b, 1, 1)).astype(np.float32)
    ang2 = rng.uniform(0, np.pi, (b, 1, 1)).astype(np.float32)
    amp = rng.uniform(0, TEXTURE, (b, 1, 1)).astype(np.float32)
    s = np.sin(2 * np.pi * freq * (np.cos(ang2) * x + np.sin(ang2) * y))
    checker = rng.random((b, 1, 1)) < 0.3
    s = np.where(checker, s * np.sin(2 * np.pi * freq * (np.cos(ang2) * y - np.sin(ang2) * x)), s)
    bg = bg + (amp * s)[..., None]
    # low-frequency blotches: a coarse noise field upsampled
    coarse = rng.standard_normal((b, 4, 4, 3), dtype=np.float32) * rng.uniform(0, BLOTCH, (b, 1, 1, 1)).astype(np.float32)
    bg = bg + np.repeat(np.repeat(coarse, SIZE // 4, axis=1), SIZE // 4, axis=2)
    return bg, c1[:, 0, 0, :]


def _render_batch(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    b = len(labels)
    img, base = _backgrounds(rng, b)
    gx, gy = _grid()
    # pose: centre, radius (pixels), rotation, mild anisotropic stretch
    radius = rng.uniform(*RADIUS, b).astype(np.float32)
    margin = radius * 0.75
    cx = rng.uniform(margin, SIZE - margin).astype(np.float32)
    cy = rng.uniform(margin, SIZE - margin).astype(np.float32)
    theta = np.deg2rad(rng.uniform(-ROTATE, ROTATE, b)).astype(np.float32)
    stretch = rng.uniform(0.85, 1.15, b).astype(np.float32)
    # figure colour: clearly darker than a light background or lighter than a dark one
    fg = np.clip(base + rng.uniform(0.3, 0.75, (b, 1)) * rng.dirichlet((1, 1, 1), b) * 3, 0, 1).astype(np.float32)
    alpha = np.zeros((b, SIZE * SUPER, SIZE * SUPER), dtype=np.float32)
    for k, fn in enumerate(SHAPES):
        idx = np.nonzero(labels == k)[0]
        if idx.size == 0:
            continue
        dx = gx[None] - cx[idx, None, None]
        dy = gy[None] - cy[idx, None, None]
        c, s = np.cos(theta[idx])[:, None, None], np.sin(theta[idx])[:, None, None]
        u = (c * dx + s * dy) / (radius[idx, None, None] * stretch[idx, None, None])
        v = (-s * dx + c * dy) / (radius[idx, None, None] / stretch[idx, None, None])
        alpha[idx] = fn(u, v) < 0
    a = _downsample(alpha)[..., None]
    # figure texture: a little shading across the figure
    shade = rng.uniform(-0.15, 0.15, (b, 1, 1, 1)).astype(np.float32)
    lin = (np.arange(SIZE, dtype=np.float32)[None, :, None, None] - cy[:, None, None, None]) / SIZE
    fgimg = fg[:, None, None, :] + shade * lin * 4
    img = img * (1 - a) + fgimg * a
    # occluding bar on some images
    occ = rng.random(b) < OCCLUDE
    if occ.any():
        oi = np.nonzero(occ)[0]
        ox, oy = rng.uniform(0, SIZE, len(oi)), rng.uniform(0, SIZE, len(oi))
        oa = rng.uniform(0, np.pi, len(oi))
        ow = rng.uniform(0.8, 2.0, len(oi))
        x = np.arange(SIZE, dtype=np.float32)[None, None, :] + 0.5
        y = np.arange(SIZE, dtype=np.float32)[None, :, None] + 0.5
        d = np.abs(-np.sin(oa)[:, None, None] * (x - ox[:, None, None]) + np.cos(oa)[:, None, None] * (y - oy[:, None, None]))
        m = np.clip(ow[:, None, None] - d, 0, 1)[..., None].astype(np.float32)
        col = rng.uniform(0, 1, (len(oi), 1, 1, 3)).astype(np.float32)
        img[oi] = img[oi] * (1 - m) + col * m
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(*NOISE, (b, 1, 1, 1)).astype(np.float32)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def generate(n: int, seed: int = 0, *, stream: int = 0, batch: int = 2000,
             progress: Callable[[float], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`n` images as uint8 (n, 3, 32, 32) and int64 labels (n,), balanced across the 10 classes.

    Deterministic: the same (n, seed, stream) always gives identical arrays; `stream`
    separates independent sets drawn from one seed (train = 0, test = 1).
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(stream), 20260901])))
    labels = np.arange(n, dtype=np.int64) % len(CLASSES)
    rng.shuffle(labels)
    out = np.empty((n, 3, SIZE, SIZE), dtype=np.uint8)
    for start in range(0, n, batch):
        lab = labels[start:start + batch]
        out[start:start + len(lab)] = _render_batch(rng, lab).transpose(0, 3, 1, 2)
        if progress is not None:
            progress(min(1.0, (start + len(lab)) / max(n, 1)))
    return out, labels
