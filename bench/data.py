"""Datasets: first vs cached load of a JPEG folder, and batched vs per-image augmentation, in one run.

    .venv/bin/python bench/data.py [--folder ../shared/data/cifar10-jpeg] [--cold] [--n 8192] [--device cpu]

1. `load_dataset("folder:...")` with an empty, private cache ($CNNVIZ_CACHE in a temp dir): the first
   load decodes every file; the second reads the decoded tensors back. The cached load is timed
   on its own (best of 3) and together with one pass over every byte (the cache is memory-mapped,
   so pages are read on first touch). --cold first evicts the folder's files from the OS page
   cache (posix_fadvise DONTNEED on those files only), as after a reboot.
2. The training-time augmentation "cifar-standard" (pad-4 random crop + horizontal flip) followed
   by Normalize with the dataset's computed mean/std: cnnviz.augment.batch.BatchAugmenter on
   uint8 batches against torchvision's per-image PIL path in a DataLoader (bench/augment.py's
   `measure`, the same pipeline on the same images).
Targets (issue 3): cached load < 1 s; batched >= 5x the per-image path on CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _evict(folder: Path) -> int:
    n = 0
    for d, _, files in os.walk(folder):
        for f in files:
            fd = os.open(os.path.join(d, f), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                n += 1
            finally:
                os.close(fd)
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg"))
    ap.add_argument("--cold", action="store_true", help="evict the folder's files from the page cache first")
    ap.add_argument("--n", type=int, default=8192, help="images for the augmentation comparison")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    folder = Path(args.folder).resolve()
    if not folder.is_dir():
        sys.exit(f"{folder} not found: pass --folder PATH (an ImageFolder tree)")
    cache = tempfile.mkdtemp(prefix="cnnviz-bench-cache-")
    os.environ["CNNVIZ_CACHE"] = cache

    import torch  # noqa: E402  (after CNNVIZ_CACHE is set)
    import torchvision  # noqa: E402,F401  (imported before timing: the app has it loaded already)

    from augment import measure  # noqa: E402  (bench/augment.py)
    from cnnviz import augment as A  # noqa: E402
    from cnnviz.data import load_dataset  # noqa: E402

    spec = f"folder:{folder}"
    print(f"folder {folder}, torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}")
    if args.cold:
        print(f"evicted {_evict(folder):,} files from the page cache")
    t0 = time.perf_counter()
    ds = load_dataset(spec, "train")
    first = time.perf_counter() - t0
    print(f"first load (decode every file, write the cache): {first:7.2f} s  "
          f"-> {tuple(ds.images.shape)}, skipped {ds.skipped}")
    times, touched = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        again = load_dataset(spec, "train")
        times.append(time.perf_counter() - t0)
        int(again.images.sum())            # read every byte once
        touched.append(time.perf_counter() - t0)
    assert torch.equal(again.images, ds.images)
    print(f"cached load:                                          {min(times):7.3f} s  "
          f"(+ one pass over all {again.images.numel() / 1e6:.0f} MB: {min(touched):.3f} s)")
    print(f"ratio first / cached: {first / min(times):,.0f}x   target cached < 1 s: "
          f"{'met' if min(touched) < 1 else 'NOT met'}")

    steps = A.preset("cifar-standard").to_dict()["steps"] + [
        {"name": "Normalize", "params": {"mean": list(ds.mean), "std": list(ds.std)}}]
    pipe = A.Pipeline.from_dict({"steps": steps})
    n = min(args.n, len(ds))
    x, y = ds.images[:n].clone(), ds.labels[:n].clone()
    per_image, batched, fallback = measure(pipe, x, y, args.batch, torch.device(args.device))
    print(f"augmentation cifar-standard + Normalize, {n:,} images 32x32, batch {args.batch}:")
    print(f"  per-image PIL DataLoader {per_image:10,.0f} img/s | batched on {args.device} {batched:10,.0f} img/s | "
          f"ratio {batched / per_image:5.1f}x (target >= 5x) | fallback steps: {fallback or 'none'}")
    for p in Path(cache).glob("*"):
        p.unlink()
    os.rmdir(cache)


if __name__ == "__main__":
    main()
