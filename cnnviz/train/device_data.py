"""Device-resident batching: a dataset's uint8 tensors moved to the device once, batches cut there.

No DataLoader, no worker processes, no per-image PIL: a per-epoch permutation drawn on the
device, one index_select per batch, uint8 -> float and normalisation in one fused op on the
device (or the BatchAugmenter's batched pipeline).
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.nn import functional as F


def subsample(images: torch.Tensor, labels: torch.Tensor, limit: int | None, seed: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random subset of `limit` samples (all of them when limit is None or large)."""
    n = labels.shape[0]
    if limit is None or limit >= n:
        return images, labels
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=g)[:limit].sort().values
    return images[idx], labels[idx]


class DeviceData:
    """uint8 images (N,C,H,W) and int64 labels held on `device`, batched by index."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 (N,C,H,W) images, got {images.dtype} {tuple(images.shape)}")
        self.images = images.to(device, non_blocking=False).contiguous()
        self.labels = labels.to(device=device, dtype=torch.long)
        self.device = device

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def num_batches(self, batch_size: int, drop_tiny: bool = True, world: int = 1) -> int:
        """Global batches per epoch. A final partial batch too small to give each of the `world`
        ranks two samples is dropped when `drop_tiny` (BatchNorm needs 2 per batch)."""
        n = len(self)
        full, rest = divmod(n, batch_size)
        keep = rest >= 2 * world if drop_tiny else rest > 0
        return full + (1 if keep else 0)

    def batches(self, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True,
                drop_tiny: bool = True, rank: int = 0, world: int = 1, start: int = 0
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (uint8 images, labels) batches; shuffled with `generator` (on the data's device).
        `start` skips the first batches of the order (a run resumed inside an epoch).

        With `world` > 1 this rank yields its share `[rank::world]` of each global batch of
        `batch_size`, so the ranks together see exactly the batches one process would (for full
        batches this is `perm[rank::world]` cut into batches of batch_size / world)."""
        n = len(self)
        order = (torch.randperm(n, generator=generator, device=self.device) if shuffle else None)
        for b in range(start, self.num_batches(batch_size, drop_tiny, world)):
            lo, hi = b * batch_size, min(n, (b + 1) * batch_size)
            if order is None and world == 1:
                yield self.images[lo:hi], self.labels[lo:hi]
                continue
            idx = (order[lo:hi] if order is not None
                   else torch.arange(lo, hi, device=self.device))[rank::world]
            yield self.images.index_select(0, idx), self.labels.index_select(0, idx)


class Normalizer:
    """uint8 (B,C,H,W) -> float32 normalised with per-channel mean/std in [0,1] units, in one pass."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device,
                 channels_last: bool = False) -> None:
        m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * s)          # x/255 - m) / s  ==  x * scale + shift
        self.shift = -m / s
        self.channels_last = channels_last

    def from_uint8(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise raw uint8 pixels."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return torch.addcmul(self.shift, x.to(torch.float32), self.scale).contiguous(memory_format=fmt)

    def from_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise float pixels already in [0,1] (the BatchAugmenter's output)."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return torch.addcmul(self.shift, x, self.scale * 255.0).contiguous(memory_format=fmt)


def resize_uint8(images: torch.Tensor, hw: tuple[int, int], chunk: int = 4096) -> torch.Tensor:
    """Resize uint8 (N,C,H,W) images to `hw` (bilinear, antialiased), in chunks, staying uint8."""
    if tuple(images.shape[-2:]) == tuple(hw):
        return images
    out = []
    for i in range(0, images.shape[0], chunk):
        x = images[i:i + chunk].float()
        x = F.interpolate(x, size=hw, mode="bilinear", antialias=True, align_corners=False)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out) if out else images.new_zeros((0, images.shape[1], *hw))
