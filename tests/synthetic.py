"""A task whose answer is known, for attribution and projector tests: the class is decided by one
quadrant of the image. Every image is grey noise; each of the three other quadrants holds a dark
8x8 square half of the time whatever the class (distractors); the top-left quadrant holds a bright
one exactly when the class is 1. A LeNet5 learns it in a few hundred steps on the CPU."""

from __future__ import annotations

import functools

import torch
from torch.nn import functional as F

from cnnviz import models

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
QUADRANT = 0  # top-left decides


def quadrant_images(n: int, seed: int = 0, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (n, 3, size, size) and labels (n,) of the quadrant task."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    imgs = (128 + 20 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 255)
    half, sq = size // 2, size // 4
    rows = torch.arange(size).view(1, size, 1)
    cols = torch.arange(size).view(1, 1, size)
    for q in range(4):
        r0, c0 = (q // 2) * half, (q % 2) * half
        r = r0 + torch.randint(0, half - sq + 1, (n, 1, 1), generator=g)
        c = c0 + torch.randint(0, half - sq + 1, (n, 1, 1), generator=g)
        box = (rows >= r) & (rows < r + sq) & (cols >= c) & (cols < c + sq)         # (n, size, size)
        if q == QUADRANT:
            present, value = labels.bool(), 250.0
        else:
            present, value = torch.rand(n, generator=g) < 0.5, 5.0
        mask = (box & present.view(n, 1, 1)).unsqueeze(1).expand(-1, 3, -1, -1)
        imgs[mask] = value
    return imgs.to(torch.uint8), labels


def normalise(imgs: torch.Tensor) -> torch.Tensor:
    m = torch.tensor(MEAN).view(1, 3, 1, 1)
    s = torch.tensor(STD).view(1, 3, 1, 1)
    return (imgs.float() / 255 - m) / s


@functools.lru_cache(maxsize=2)
def train_quadrant_model(steps: int = 120, seed: int = 0) -> tuple[torch.nn.Module, float]:
    """A LeNet5 trained on the quadrant task (eval mode) and its accuracy on 400 fresh images (trained once
    per test process: the attribution and projector tests share it; callers must not change it)."""
    torch.manual_seed(seed)
    model = models.create("lenet5", num_classes=2)
    imgs, labels = quadrant_images(2000, seed)
    x = normalise(imgs)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = F.cross_entropy(model(x[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    ti, tl = quadrant_images(400, seed + 1)
    with torch.no_grad():
        acc = float((model(normalise(ti)).argmax(1) == tl).float().mean())
    return model, acc
