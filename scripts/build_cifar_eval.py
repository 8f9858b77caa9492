"""Build assets/cifar10-eval/cifar10-test-500.npz: a fixed 500-image evaluation subset of the CIFAR-10
test split (every 20th image of the JPEG copy's test folder in ImageFolder order: 50 per class), so the
shipped CIFAR-10 checkpoints are measured in any checkout (tests/test_train_shipped.py).

The images are kept as their original JPEG files' bytes (decoded by PIL exactly as ImageFolder decodes
them): `jpeg` (all files concatenated, uint8), `offsets` (N+1 int64), `labels` (N int64), `classes`.

    python scripts/build_cifar_eval.py [--src ../shared/data/cifar10-jpeg] [--out assets/cifar10-eval]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10-jpeg")
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "cifar10-eval")
    ap.add_argument("--every", type=int, default=20)
    args = ap.parse_args()
    test = args.src / "test"
    classes = sorted(d.name for d in test.iterdir() if d.is_dir())
    files = [(p, c) for c, name in enumerate(classes) for p in sorted((test / name).iterdir()) if p.is_file()]
    picked = files[::args.every]
    blobs = [p.read_bytes() for p, _ in picked]
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"cifar10-test-{len(picked)}.npz"
    np.savez(out, jpeg=np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets=offsets,
             labels=np.array([c for _, c in picked], dtype=np.int64), classes=np.array(classes),
             names=np.array([f"{classes[c]}/{p.name}" for p, c in picked]))
    print(f"{out}: {len(picked)} images, {out.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
