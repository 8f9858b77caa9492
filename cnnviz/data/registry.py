"""The dataset registry: each dataset kind registers a loader and a cache fingerprint.

A loader returns both splits decoded (`RawSplits`); `cnnviz.data.load_dataset` adds the
per-channel statistics, caches the result on disk and hands out one split.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

Progress = Callable[[float, str], None] | None


class DatasetError(ValueError):
    """A dataset could not be loaded; the message is meant for the user."""


@dataclass
class RawSplits:
    """Both splits of a dataset, decoded: uint8 (N, C, H, W) images and int64 labels."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    skipped_train: int = 0
    skipped_test: int = 0
    note: str = ""


@dataclass(frozen=True)
class DatasetKind:
    """One registered kind of dataset spec ("shapes", "cifar10", "folder:PATH", ...)."""

    name: str
    load: Callable[[str, bool, Progress], RawSplits]   # (arg, download, progress)
    fingerprint: Callable[[str], object | None]         # JSON-able cache key parts; None = don't look up
    takes_arg: bool = False                             # "folder:PATH" style
    builtin: bool = True                                # offered in dataset_choices()
    description: str = ""


KINDS: dict[str, DatasetKind] = {}


def dataset_kind(name: str, *, fingerprint: Callable[[str], object | None], takes_arg: bool = False,
                 builtin: bool = True, description: str = ""):
    """Decorator: register `fn(arg, download, progress) -> RawSplits` as the loader for `name`."""
    def deco(fn: Callable[[str, bool, Progress], RawSplits]):
        KINDS[name] = DatasetKind(name, fn, fingerprint, takes_arg, builtin, description)
        return fn
    return deco


def report(progress: Progress, fraction: float, message: str) -> None:
    """Call the progress callback if there is one (never lets it break loading)."""
    if progress is not None:
        progress(max(0.0, min(1.0, float(fraction))), message)


def data_root() -> Path:
    """$CNNVIZ_DATA or ./data: where torchvision datasets live."""
    return Path(os.environ.get("CNNVIZ_DATA") or "data")
