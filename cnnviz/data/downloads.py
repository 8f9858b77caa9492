"""CIFAR-10, MNIST and Fashion-MNIST through torchvision.datasets, under $CNNVIZ_DATA.

Nothing is downloaded unless the caller passes download=True; when the files are missing
or the download fails, the DatasetError says what failed and where the files belong.
MNIST-like data stay 1-channel 28x28 (models take in_channels).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .registry import DatasetError, Progress, RawSplits, data_root, dataset_kind, report

# spec -> (torchvision class name, folder under the data root, what the folder must hold, note)
_SETS: dict[str, tuple[str, str, str, str]] = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py",
                "data_batch_1..5, test_batch and batches.meta (the 'python version' archive "
                "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extracted)",
                "CIFAR-10: 32x32 RGB, 50,000 train / 10,000 test"),
    "mnist": ("MNIST", "MNIST/raw",
              "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
              "t10k-labels-idx1-ubyte (gunzipped)",
              "MNIST is 1-channel (greyscale) 28x28: models are built with in_channels=1"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw",
                      "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                      "t10k-labels-idx1-ubyte (gunzipped)",
                      "Fashion-MNIST is 1-channel (greyscale) 28x28: models are built with in_channels=1"),
}


def _fingerprint(name: str) -> object | None:
    folder = data_root() / _SETS[name][1]
    if not folder.is_dir():
        return None
    files = []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            files.append((p.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns))
    return [str(folder.resolve()), files] if files else None


def _to_tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
    data = ds.data
    x = torch.as_tensor(data)
    if x.ndim == 3:                      # MNIST: (N, H, W)
        x = x.unsqueeze(1)
    else:                                # CIFAR: (N, H, W, C) numpy
        x = x.permute(0, 3, 1, 2)
    y = torch.as_tensor(ds.targets, dtype=torch.int64)
    return x.to(torch.uint8).contiguous(), y


def _reason(exc: BaseException) -> str:
    """One line from an exception: torchvision's download errors span several lines, the last
    of which (e.g. "<urlopen error [Errno -2] Name or service not known>") says what went wrong."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    text = lines[0].rstrip(":") if len(lines) == 1 else f"{lines[0].rstrip(':')}: {lines[-1]}"
    return text[:240]


def _load(name: str, download: bool, progress: Progress) -> RawSplits:
    import torchvision.datasets as tvd

    cls_name, folder, needs, note = _SETS[name]
    cls = getattr(tvd, cls_name)
    root = data_root()
    where = (root / folder).resolve()
    if download:
        report(progress, 0.0, f"downloading {name} into {root.resolve()} (needs the network)")
        try:
            root.mkdir(parents=True, exist_ok=True)
            cls(str(root), train=True, download=True)
            cls(str(root), train=False, download=True)
        except Exception as exc:  # no network, proxy, disk full...: say so plainly
            reason = _reason(exc)
            raise DatasetError(f"Downloading {name} failed ({reason}). This needs the network; offline, "
                               f"put {needs} in {where}.") from None
    report(progress, 0.1, f"reading {name} from {where}")
    try:
        train = cls(str(root), train=True, download=False)
        test = cls(str(root), train=False, download=False)
    except (RuntimeError, OSError, ValueError, EOFError) as exc:
        reason = _reason(exc)
        raise DatasetError(f"{name} is not available offline: {reason}. Use the Download button "
                           f"(needs the network) or put {needs} in {where}.") from None
    x, y = _to_tensors(train)
    xt, yt = _to_tensors(test)
    classes = [str(c) for c in train.classes]
    report(progress, 0.9, "converted to tensors")
    return RawSplits(x, y, xt, yt, classes, note=note)


def _register(name: str) -> None:
    @dataset_kind(name, fingerprint=lambda arg, n=name: _fingerprint(n),
                  description=_SETS[name][3])
    def loader(arg: str, download: bool, progress: Progress, n=name) -> RawSplits:
        return _load(n, download, progress)


for _name in _SETS:
    _register(_name)


def expected_location(name: str) -> Path:
    """Where the files for a torchvision dataset are expected (for messages and the UI)."""
    return (data_root() / _SETS[name][1]).resolve()


def expected_files(name: str) -> str:
    """What the dataset's folder must hold when it is put there by hand."""
    return _SETS[name][2]


def is_present(name: str) -> bool:
    """True if the dataset's folder exists under the data root (it may still be incomplete)."""
    folder = data_root() / _SETS[name][1]
    if not folder.is_dir():
        return False
    with os.scandir(folder) as it:
        return any(True for _ in it)
