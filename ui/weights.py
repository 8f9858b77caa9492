"""Where a page's model weights come from, shared by Feature maps and the Microscope: the kinds of
source, the cached loader (random, shipped or a run's checkpoint file, an upload's bytes, cached
torchvision weights) and the runs that have a checkpoint."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cnnviz.device import pick_device
from cnnviz.inspect import viewing

RANDOM, RUN, UPLOAD, TORCHVISION, HANDED = (
    "Random weights", "A training run", "Upload a checkpoint", "torchvision ImageNet weights", "From the Runs page")
SHIPPED = {d: f"Trained (shipped, {label})" for d, label in viewing.SHIPPED_DATASETS.items()}


@st.cache_resource(show_spinner=False, max_entries=4)
def load_weights(key: str, kind: str, name: str, seed: int, path: str, _raw: bytes | None) -> viewing.Loaded:
    """The model `name` with weights of `kind` (cached by `key`; on the picked device)."""
    if kind == RANDOM:
        loaded = viewing.random_model(name, seed)
    elif kind == TORCHVISION:
        loaded = viewing.torchvision_model(name)
    elif kind == UPLOAD:
        loaded = viewing.from_checkpoint(_raw or b"", name, label=f"uploaded {path}")
    else:
        loaded = viewing.from_checkpoint(Path(path), name, label=Path(path).name)
    loaded.model.to(pick_device("auto"))
    return loaded


def runs_with_checkpoints() -> list:
    """The training runs that have saved weights (newest first); [] when none can be read."""
    try:
        from cnnviz.train import runs
    except ImportError:
        return []
    try:
        return [r for r in runs.list_runs() if r.checkpoints or r.last_checkpoint]
    except Exception:  # a half-written run folder must not break this page
        return []
