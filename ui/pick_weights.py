"""A model-and-weights picker for the pages that look at a trained model (Attribution, Projector):
the same sources and loader as Feature maps (`ui.weights`): shipped weights, a training run at any
saved epoch, an uploaded checkpoint, cached torchvision weights, random weights."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from cnnviz import models
from cnnviz.inspect import loading
from cnnviz.models.checkpoints import CheckpointError
from ui.layout import user_error
from ui.weights import RANDOM, RUN, SHIPPED, TORCHVISION, UPLOAD, load_weights, runs_with_checkpoints


@dataclass
class Picked:
    """What the picker chose and loaded (`loaded` None when nothing usable is chosen yet)."""

    loaded: loading.Loaded | None
    key: str                      # cache key of the weights (kind, model, file, its mtime, upload digest)
    kind: str
    path: str = ""
    run: object | None = None     # the runs.RunInfo for RUN
    epochs: dict[int, Path] = field(default_factory=dict)   # a run's saved epochs
    why_none: str = ""

    @property
    def dataset(self) -> str:
        """The dataset the weights were trained on, as their metadata names it; "" for an upload's
        folder or zip (a visitor's file must not make the server read a folder of its choosing)."""
        spec = str((self.loaded.meta if self.loaded else {}).get("dataset") or "")
        if self.kind == UPLOAD and spec.partition(":")[0] in ("folder", "zip"):
            return ""
        return spec


def _label(name: str) -> str:
    info = models.info(name)
    return f"{name} ({info.family}, {info.input_size} px)"


def pick_weights(prefix: str, *, default: tuple[str, str] = ("lenet5", "cifar10"), torchvision: bool = True,
                 random: bool = True) -> Picked:
    """Model, weights and (for a run) epoch widgets in three columns; the weights loaded (cached).

    `default`: (model, shipped dataset) chosen first. Widget keys start with `prefix`."""
    names = models.names() + models.design_names()
    c1, c2, c3 = st.columns([1.1, 1.3, 1.4], gap="medium")
    want = default[0] if default[0] in names else names[0]
    name = c1.selectbox("Model", names, index=names.index(want), key=f"{prefix}_model", format_func=_label)
    here = loading.shipped_for(name)
    sources = [SHIPPED[d] for d in here] + [RUN, UPLOAD] + ([RANDOM] if random else [])
    if torchvision and models.info(name).torchvision_name:
        sources.append(TORCHVISION)
    first = SHIPPED.get(default[1]) if name == default[0] and default[1] in here else None
    kind = c2.radio("Weights", sources, key=f"{prefix}_source_{name}",
                    index=sources.index(first) if first in sources else 0)
    seed, path, raw, run, epochs = 0, "", None, None, {}
    with c3:
        if kind in SHIPPED.values():
            dataset = next(d for d, label in SHIPPED.items() if label == kind)
            path = str(here[dataset])
            st.caption(f"`{Path(path).name}`, trained by cnnviz and shipped with it.")
        elif kind == RANDOM:
            seed = int(st.number_input("Seed", 0, 10_000, 0, key=f"{prefix}_seed"))
        elif kind == RUN:
            runs = [r for r in runs_with_checkpoints() if r.config.get("model", name) == name] or runs_with_checkpoints()
            if not runs:
                st.info("No training run with a checkpoint yet: train one on the Train page.",
                        icon=":material/info:")
            else:
                run = st.selectbox("Run", runs, key=f"{prefix}_run",
                                   format_func=lambda r: f"{r.run_id} ({r.config.get('model')}, {r.status})")
                epochs = dict(sorted(run.checkpoints.items()))
                if epochs:
                    ep = st.select_slider("Epoch", list(epochs), value=max(epochs), key=f"{prefix}_epoch_{run.run_id}") \
                        if len(epochs) > 1 else next(iter(epochs))
                    path = str(epochs[ep])
                else:
                    path = str(run.last_checkpoint)
        elif kind == UPLOAD:
            up = st.file_uploader("Checkpoint (.safetensors, .pt, .pth)", type=["safetensors", "pt", "pth"],
                                  key=f"{prefix}_upload", help="Loaded safely: safetensors, or "
                                  "torch.load(weights_only=True); nothing in the file runs.")
            if up is not None:
                raw, path = up.getvalue(), up.name
        elif kind == TORCHVISION:
            status = models.pretrained_status(name)
            if not status.cached:
                st.warning(status.how_to, icon=":material/cloud_off:")
                return Picked(None, "", kind, why_none="ImageNet weights are not cached")
    if kind in (RUN, UPLOAD) and not path:
        return Picked(None, "", kind, run=run, epochs=epochs, why_none="no checkpoint chosen yet")
    digest = hashlib.sha1(raw).hexdigest() if raw is not None else ""
    mtime = Path(path).stat().st_mtime if path and raw is None and Path(path).is_file() else 0
    key = f"{kind}|{name}|{seed}|{path}|{mtime}|{digest}|{models.design.stamp(name)}"
    try:
        with st.spinner(f"Loading {name}..."):
            loaded = load_weights(key, kind, name, seed, path, raw)
    except (CheckpointError, FileNotFoundError, ValueError, RuntimeError) as exc:
        user_error(f"Couldn't use these weights: {(str(exc).splitlines() or [type(exc).__name__])[0]}")
        return Picked(None, "", kind, path, run, epochs, "the weights could not be loaded")
    for w in loaded.warnings:
        st.warning(w, icon=":material/warning:")
    return Picked(loaded, key, kind, path, run, epochs)
