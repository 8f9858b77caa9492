"""Datasets: one registry, one call.

    ds = load_dataset("shapes", "train")          # built-in, offline, 32x32 RGB, 10 classes
    ds = load_dataset("digits", "test")           # built-in, offline, 5,000 MNIST digits, 28x28 grey
    ds = load_dataset("cifar10", "test")          # torchvision, under $CNNVIZ_DATA; download=True to fetch
    ds = load_dataset("folder:/data/pets")        # an ImageFolder tree
    ds = load_dataset("zip:/data/pets.zip")       # the same inside a zip, read safely

Every dataset comes back as an `ImageDataset`: uint8 images (N, C, H, W), int64 labels, class
names, and the per-channel mean/std of its TRAIN split. Decoded tensors are cached on disk
($CNNVIZ_CACHE) keyed by the source's identity (paths, sizes, mtimes), so the second load of
a 60,000-image folder reads one file instead of decoding every JPEG again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import cache
from . import shapes as _shapes
from .registry import KINDS, DatasetError, Progress, RawSplits, dataset_kind, report

__all__ = ["DatasetError", "ImageDataset", "load_dataset", "load_dataset_from_zip_bytes",
           "dataset_choices", "parse_spec", "channel_stats", "source_key", "visitor_spec", "SPLITS"]

SPLITS = ("train", "test")
SHAPES_TRAIN = 20_000
SHAPES_TEST = 4_000


@dataclass
class ImageDataset:
    """One split of a dataset, fully in memory."""

    spec: str
    split: str
    images: torch.Tensor      # uint8 (N, C, H, W), CPU, contiguous
    labels: torch.Tensor      # int64 (N,)
    classes: list[str]
    mean: tuple[float, ...]   # per channel in [0, 1] units, from the TRAIN split
    std: tuple[float, ...]
    skipped: int = 0          # unreadable files skipped (this split)
    note: str = ""

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> list[int]:
        """Number of images per class, in class order."""
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()


# ---------------------------------------------------------------- built-in shapes
def _shapes_seed(arg: str) -> int:
    if not arg.strip():
        return 0
    try:
        return int(arg)
    except ValueError:
        raise DatasetError(f"shapes takes an integer seed (shapes:1), not {arg!r}.") from None


@dataset_kind("shapes", fingerprint=lambda arg: ["shapes", _shapes_seed(arg), _shapes.VERSION,
                                                  SHAPES_TRAIN, SHAPES_TEST],
              description="built-in: 10 classes of coloured figures, 32x32 RGB, 20,000 train / 4,000 test")
def _load_shapes(arg: str, download: bool, progress: Progress) -> RawSplits:
    seed = _shapes_seed(arg)
    total = SHAPES_TRAIN + SHAPES_TEST
    x, y = _shapes.generate(SHAPES_TRAIN, seed, stream=0, progress=lambda f: report(
        progress, 0.9 * f * SHAPES_TRAIN / total, "drawing shapes (train)"))
    xt, yt = _shapes.generate(SHAPES_TEST, seed, stream=1, progress=lambda f: report(
        progress, 0.9 * (SHAPES_TRAIN + f * SHAPES_TEST) / total, "drawing shapes (test)"))
    return RawSplits(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xt), torch.from_numpy(yt),
                     list(_shapes.CLASSES), note=f"built-in shapes, seed {seed}: 32x32 RGB, generated")


# the other kinds register themselves on import
from . import digits as _digits  # noqa: E402,F401  (registers digits, the built-in MNIST sample)
from . import files as _files  # noqa: E402
from .files import visitor_spec  # noqa: E402,F401  (a browser's folder:/zip: confined to the data roots)
from . import downloads as _downloads  # noqa: E402,F401  (registers cifar10, mnist, fashion-mnist)


# ---------------------------------------------------------------- API
def dataset_choices() -> list[str]:
    """Named datasets to offer in a picker; "folder:PATH" and "zip:PATH" are free-form on top."""
    return [k.name for k in KINDS.values() if k.builtin]


def parse_spec(spec: str) -> tuple[str, str]:
    """"folder:/x" -> ("folder", "/x"); "shapes" -> ("shapes", ""). Raises DatasetError if unknown."""
    if not isinstance(spec, str) or not spec.strip():
        raise DatasetError("Empty dataset name.")
    name, _, arg = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in KINDS:
        known = ", ".join(dataset_choices() + ["folder:PATH", "zip:PATH"])
        raise DatasetError(f"Unknown dataset {spec!r}; known: {known}.")
    if KINDS[name].takes_arg and not arg.strip():
        raise DatasetError(f"{name}: needs a path, e.g. {name}:/data/my_images.")
    return name, arg


def check_dataset(spec: str) -> None:
    """Raise DatasetError (one line) when `spec` can't be loaded now, without decoding any image: an
    unknown kind, a download that was not made, a missing folder, a file that is not a zip."""
    name, arg = parse_spec(spec)
    if name in _downloads._SETS and not _downloads.is_present(name):
        raise DatasetError(f"{name} is not downloaded yet: download it on the Datasets page "
                           f"(or put {_downloads.expected_files(name)} in {_downloads.expected_location(name)}).")
    KINDS[name].fingerprint(arg)  # a path kind resolves (and lists) its path here
    if name == "zip":
        import zipfile

        if not zipfile.is_zipfile(Path(arg.strip()).expanduser()):
            raise DatasetError(f"{Path(arg.strip()).name} is not a zip file.")


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 (N, C, H, W) images, in [0, 1] units.

    Exact: built from each channel's 256-bin histogram (integer counts), ~10x faster than
    summing a float copy of the images."""
    c = images.shape[1]
    hist = torch.zeros(c, 256, dtype=torch.int64)
    for start in range(0, images.shape[0], chunk):
        block = images[start:start + chunk]
        for k in range(c):
            hist[k] += torch.bincount(block[:, k].reshape(-1), minlength=256)
    count = hist.sum(dim=1).to(torch.float64)
    if images.numel() == 0:
        return tuple([0.0] * c), tuple([1.0] * c)
    v = torch.arange(256, dtype=torch.float64) / 255.0
    h = hist.to(torch.float64)
    mean = (h * v).sum(dim=1) / count
    var = ((h * (v - mean[:, None]) ** 2).sum(dim=1) / count).clamp_min(0)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(d), 6) for d in var.sqrt())


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DatasetError(f"Unknown split {split!r}; use 'train' or 'test'.")


def _from_cache(spec: str, split: str, hit: tuple[dict[str, torch.Tensor], dict]) -> ImageDataset:
    tensors, meta = hit
    return ImageDataset(spec, split, tensors[f"{split}_images"], tensors[f"{split}_labels"],
                        list(meta["classes"]), tuple(meta["mean"]), tuple(meta["std"]),
                        int(meta["skipped"][split]), str(meta.get("note", "")))


def _cached_load(spec: str, kind: str, key_parts: Callable[[], object | None],
                 build: Callable[[], RawSplits], split: str, progress: Progress,
                 refresh: bool = False) -> ImageDataset:
    names = [f"{split}_images", f"{split}_labels"]
    parts = key_parts()
    if parts is not None and not refresh:
        path = cache.cache_path(kind, cache.digest(parts))
        hit = cache.load(path, names)
        if hit is not None:
            report(progress, 1.0, "loaded from the cache")
            return _from_cache(spec, split, hit)
    raw = build()
    report(progress, 0.95, "computing mean/std")
    mean, std = channel_stats(raw.train_images)
    meta = {"classes": raw.classes, "mean": mean, "std": std, "note": raw.note, "spec": spec,
            "skipped": {"train": raw.skipped_train, "test": raw.skipped_test}}
    parts = parts if parts is not None else key_parts()  # e.g. just downloaded
    if parts is not None:
        report(progress, 0.97, "writing the cache")
        cache.save(cache.cache_path(kind, cache.digest(parts)),
                       {"train_images": raw.train_images, "train_labels": raw.train_labels,
                        "test_images": raw.test_images, "test_labels": raw.test_labels}, meta)
    report(progress, 1.0, "done")
    images = raw.train_images if split == "train" else raw.test_images
    labels = raw.train_labels if split == "train" else raw.test_labels
    skipped = raw.skipped_train if split == "train" else raw.skipped_test
    return ImageDataset(spec, split, images.contiguous(), labels, list(raw.classes), mean, std, skipped, raw.note)


def load_dataset(spec: str, split: str = "train", *, download: bool = False, refresh: bool = False,
                 progress: Callable[[float, str], None] | None = None) -> ImageDataset:
    """Load one split of a dataset by spec ("shapes", "digits", "cifar10", "mnist", "fashion-mnist",
    "folder:PATH", "zip:PATH"). Never downloads unless download=True. refresh=True decodes the
    source again instead of reading the disk cache. `progress(fraction, message)` is called
    along the way. Raises DatasetError (a ValueError) with a message meant for the user."""
    _check_split(split)
    name, arg = parse_spec(spec)
    kind = KINDS[name]
    return _cached_load(spec.strip(), name, lambda: kind.fingerprint(arg),
                        lambda: kind.load(arg, download, progress), split, progress, refresh)


def source_key(spec: str) -> str | None:
    """A short hash of the source's current identity (the disk cache's key; no decoding), or None
    where the source is absent (a torchvision dataset not downloaded). Raises DatasetError for a
    bad spec or a missing folder/zip. Lets a caller keep loaded datasets in memory safely."""
    name, arg = parse_spec(spec)
    parts = KINDS[name].fingerprint(arg)
    return None if parts is None else cache.digest(parts)


def load_dataset_from_zip_bytes(data: bytes, split: str = "train", *, name: str = "upload.zip",
                                progress: Callable[[float, str], None] | None = None) -> ImageDataset:
    """An uploaded zip (bytes), checked like zip:PATH and decoded in memory; cached by content hash."""
    _check_split(split)
    if not data:
        raise DatasetError("The uploaded zip is empty.")
    sha = hashlib.sha256(data).hexdigest()
    return _cached_load(f"zip:{name}", "upload", lambda: ["upload", sha],
                        lambda: _files.load_zip_source(bytes(data), progress), split, progress)
