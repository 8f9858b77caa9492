"""Shared fixtures. Tests run offline; data the tests need is made here or skipped with a reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CIFAR_JPEG = (ROOT.parent / "shared" / "data" / "cifar10-jpeg").resolve()


@pytest.fixture(autouse=True, scope="session")
def _isolated_dirs(tmp_path_factory):
    """Keep runs, data, caches and designs that tests make out of the working tree."""
    base = tmp_path_factory.mktemp("cnnviz-home")
    old = {k: os.environ.get(k) for k in ("CNNVIZ_RUNS", "CNNVIZ_DATA", "CNNVIZ_CACHE", "CNNVIZ_DESIGNS")}
    os.environ.setdefault("CNNVIZ_RUNS", str(base / "runs"))
    os.environ.setdefault("CNNVIZ_DATA", str(base / "data"))
    os.environ.setdefault("CNNVIZ_CACHE", str(base / "cache"))
    os.environ.setdefault("CNNVIZ_DESIGNS", str(base / "designs"))
    yield base
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def cifar_jpeg() -> Path:
    """The shared real CIFAR-10 JPEG copy; skips where it is absent (a user's fresh clone)."""
    if not (CIFAR_JPEG / "train").is_dir():
        pytest.skip(f"real CIFAR-10 JPEG copy not found at {CIFAR_JPEG} (only on project machines)")
    return CIFAR_JPEG
