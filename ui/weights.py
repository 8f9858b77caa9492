"""Where a page's model weights come from, shared by Feature maps and the Microscope: the kinds of
source, the cached loader (random, shipped or a run's checkpoint file, an upload's bytes, cached
torchvision weights) and the runs that have a checkpoint."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cnnviz.device import pick_device
from cnnviz.inspect import loading

RANDOM, RUN, UPLOAD, TORCHVISION, HANDED = (
    "Random weights", "A training run", "Upload a checkpoint", "torchvision ImageNet weights", "From the Runs page")
SHIPPED = {d: f"Trained (shipped, {label})" for d, label in loading.SHIPPED_DATASETS.items()}


@st.cache_resource(show_spinner=False, max_entries=4)
def load_weights(key: str, kind: str, name: str, seed: int, path: str, _raw: bytes | None) -> loading.Loaded:
    """The model `name` with weights of `kind` (cached by `key`; on the picked device)."""
    if kind == RANDOM:
        loaded = loading.random_model(name, seed)
    elif kind == TORCHVISION:
        loaded = loading.torchvision_model(name)
    elif kind == UPLOAD:
        loaded = loading.from_checkpoint(_raw or b"", name, label=f"uploaded {path}")
    else:
        loaded = loading.from_checkpoint(Path(path), name, label=Path(path).name)
    loaded.model.to(pick_device("auto"))
    return loaded


def runs_with_checkpoints() -> list:
    """The training runs that have saved weights, newest first (listed from their summaries: a
    half-written run has no checkpoint yet)."""
    from cnnviz.runs import list_runs
    from cnnviz.runs.access import mine
    from ui.auth import current_user

    user = current_user()  # with sign-in: the user's own runs (a teacher's: all); signed out: none
    return [r for r in mine(user, list_runs()) if r.checkpoints or r.last_checkpoint] if user is not None else []


MICROSCOPE_HANDOFF = "microscope_handoff"


def open_in_microscope(page: str, name: str, kind: str, path: str = "", seed: int = 0, raw: bytes | None = None,
                       run_id: str | None = None, epoch: int | None = None, layer: str | None = None,
                       channel: int | None = None, label: str = "") -> None:
    """Hand the model, its weights, a layer and a channel to the Microscope page and go there."""
    from streamlit.errors import StreamlitAPIException

    st.session_state[MICROSCOPE_HANDOFF] = {
        "page": page, "name": name, "kind": kind, "path": path, "seed": seed, "raw": raw, "run_id": run_id,
        "epoch": epoch, "layer": layer, "channel": channel, "label": label or (Path(path).name if path else kind)}
    try:
        st.switch_page("pages/microscope.py")
    except StreamlitAPIException:  # a page run on its own, outside the app's navigation
        st.success("The Microscope will open on this: open it from the menu.")
