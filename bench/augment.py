"""Throughput of the training-time augmentation: batched BatchAugmenter vs torchvision's per-image PIL path.

    .venv/bin/python bench/augment.py [--n 4096] [--batch 256] [--device cpu] [--presets cifar-standard ...]

Both sides run the same Pipeline on the same 32x32 RGB images (the built-in shapes test split when
cnnviz.data is available, random pixels otherwise), in one run, and print images/s and the ratio.
The per-image side is what a tutorial does: a Dataset of PIL images with `pipeline.build()` as its
transform, through a DataLoader (num_workers=0, so both sides use the same cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cnnviz import augment as A  # noqa: E402
from cnnviz.augment.batch import BatchAugmenter  # noqa: E402


def _images(n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    try:
        from cnnviz.data import load_dataset
        ds = load_dataset("shapes", "test")
        reps = -(-n // len(ds))
        return ds.images.repeat(reps, 1, 1, 1)[:n], ds.labels.repeat(reps)[:n], "shapes test split"
    except Exception:  # noqa: BLE001 - bench still runs without the data module
        g = torch.Generator().manual_seed(0)
        return (torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
                torch.randint(0, 10, (n,), generator=g), "random pixels")


class _PILSet(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        from PIL import Image
        self.ims = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images]
        self.labels = labels.tolist()
        self.t = transform

    def __len__(self) -> int:
        return len(self.ims)

    def __getitem__(self, i: int):
        return self.t(self.ims[i]), self.labels[i]


def measure(pipe: A.Pipeline, x: torch.Tensor, y: torch.Tensor, batch: int, dev: torch.device
            ) -> tuple[float, float, list]:
    """Images/s of the per-image PIL DataLoader path and of BatchAugmenter on `dev`, and its fallback steps."""
    n = len(x)
    ds = _PILSet(x, y, pipe.build())
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=False, num_workers=0)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    for xb, _ in dl:
        pass
    per_image = n / (time.perf_counter() - t0)

    ba = BatchAugmenter(pipe, dev, 10)
    g = torch.Generator(device=dev).manual_seed(0)
    xd, yd = x.to(dev), y.to(dev)
    ba(xd[:batch], yd[:batch], g)          # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        out, _ = ba(xd[i:i + batch], yd[i:i + batch], g)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    batched = n / (time.perf_counter() - t0)
    return per_image, batched, list(ba.fallback_steps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--presets", nargs="+", default=["cifar-standard", "tutorial-mnist"])
    args = ap.parse_args()
    x, y, src = _images(args.n)
    dev = torch.device(args.device)
    print(f"{args.n} images 32x32 ({src}), batch {args.batch}, batched path on {dev}, "
          f"torch threads {torch.get_num_threads()}")
    for name in args.presets:
        per_image, batched, fallback = measure(A.resolve(name), x, y, args.batch, dev)
        print(f"{name:16s} per-image PIL DataLoader {per_image:10,.0f} img/s | batched {batched:10,.0f} img/s | "
              f"ratio {batched / per_image:6.1f}x | fallback steps: {fallback or 'none'}")

if __name__ == "__main__":
    main()
