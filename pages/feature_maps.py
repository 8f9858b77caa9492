"""Feature maps: what each layer of a model sees in the sidebar image; predictions and Grad-CAM."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from ui.image_state import current_image, current_label, image_digest, is_drawing
from ui.layout import error_line, page_header, user_error
from ui.pictures import picture

page_header(
    "Feature maps",
    "Each channel of a convolutional layer is one learned detector slid over the image; its output, the "
    "**feature map**, lights up where that pattern is. Pick a model, its weights and a layer to see every "
    "channel for your image, one channel large with the patch of the input it can see (its receptive "
    "field), and, for trained weights, the top-5 predictions and a Grad-CAM map of where the evidence "
    "for a class lies. **Draw a digit** in the sidebar and a model trained on digits reads it as you draw.",
)


import torch  # noqa: E402  (after the header has painted)

from cnnviz import models  # noqa: E402
from cnnviz.images import display, prepare_digit  # noqa: E402
from cnnviz.inspect import features, loading  # noqa: E402
from cnnviz.models.checkpoints import CheckpointError  # noqa: E402
from cnnviz.limits import BudgetError  # noqa: E402
from cnnviz.inspect.receptive import draw_box  # noqa: E402
from cnnviz.train import bundle  # noqa: E402
from ui.bundle import bundle_download  # noqa: E402
from ui.weights import HANDED, RANDOM, RUN, SHIPPED, TORCHVISION, UPLOAD  # noqa: E402,F401
from ui.weights import load_weights as _load, open_in_microscope, runs_with_checkpoints as _runs  # noqa: E402

HANDOFF = "feature_maps_checkpoint"
SHIPPED_WHAT = {"cifar10": "CIFAR-10 (32x32 photos, 10 classes)",
                "digits": "the built-in digits (4,500 MNIST handwritten digits, 28x28, resized to 32x32), "
                          "with the digit-safe augmentation"}


@st.cache_data(show_spinner=False, max_entries=32)
def _digit(digest: str, _im):
    return prepare_digit(_im)


@st.cache_resource(show_spinner=False, max_entries=8)
def _layers(key: str, _model, shape: tuple[int, ...]):
    return features.list_layers(_model, shape)


@st.cache_resource(show_spinner=False, max_entries=16)
def _fmap(key: str, digest: str, layer: str, _model, _x) -> torch.Tensor:
    return features.feature_maps(_model, _x, [layer])[layer][0].float().cpu()


@st.cache_resource(show_spinner=False, max_entries=8)
def _predict(key: str, digest: str, _model, _x, _classes: tuple[str, ...]):
    return features.predict(_model, _x, list(_classes), k=5)


@st.cache_resource(show_spinner=False, max_entries=8)
def _cam(key: str, digest: str, layer: str, target: int, _model, _x):
    return features.grad_cam(_model, _x, layer, target)


def _within_budget(call):
    """call(); activations over the server's memory budget (estimated before the forward pass) are one
    line on the page, which stops there."""
    try:
        return call()
    except BudgetError as exc:
        user_error(str(exc))
        st.stop()


@dataclass
class Choice:
    """The weights the visitor picked: their kind and what identifies them."""

    name: str
    kind: str
    seed: int = 0
    path: str = ""
    raw: bytes | None = None
    run: object = None
    tv_cached: bool = False
    note: str = ""


@dataclass
class Input:
    """The sidebar image as the model takes it."""

    im: object
    x: torch.Tensor
    small: object
    prep: object
    digest: str
    size: int
    ch: int


# ---- model and weights ---------------------------------------------------------------------
def preselect(names: list[str], handed: str | None) -> None:
    """A hand-off from the Runs page selects its model and weights once; a new drawing switches to a
    model trained on digits once (the user may pick other weights afterwards)."""
    if handed and st.session_state.get("fm_handoff_seen") != handed:
        st.session_state["fm_handoff_seen"] = handed
        try:
            from cnnviz.models.checkpoints import load_checkpoint

            handed_model = load_checkpoint(Path(handed)).meta.get("model")
        except CheckpointError:
            handed_model = None
        if handed_model in names:
            st.session_state["fm_model"] = handed_model
            st.session_state[f"fm_source_{handed_model}"] = HANDED
    if is_drawing() and not handed:
        if not st.session_state.get("fm_drawing_seen") or "fm_model" not in st.session_state:
            st.session_state["fm_drawing_seen"] = True
            digit_models = [n for n in names if "digits" in loading.shipped_for(n)]
            if digit_models:
                if st.session_state.get("fm_model") not in digit_models:
                    st.session_state["fm_model"] = digit_models[0]
                st.session_state[f"fm_source_{st.session_state['fm_model']}"] = SHIPPED["digits"]
    else:
        st.session_state["fm_drawing_seen"] = False


def weights_detail(ch: Choice, shipped_here: dict, handed: str | None) -> None:
    """The third column: what identifies the chosen weights (a file, a run and epoch, a seed, an upload)."""
    name, kind = ch.name, ch.kind
    if kind == HANDED:
        ch.path = str(handed)
        st.info(f"Opened from the Runs page: `{Path(ch.path).name}`", icon=":material/link:")
        if st.button("Choose other weights", key="fm_clear_handoff"):
            st.session_state.pop(HANDOFF, None)
            st.rerun()
    elif kind in SHIPPED.values():
        dataset = next(d for d, label in SHIPPED.items() if label == kind)
        ch.path = path = str(shipped_here[dataset])
        st.caption(f"`{Path(path).name}`, trained by cnnviz on {SHIPPED_WHAT.get(dataset, dataset)}. Its bundle "
                   "is the model as ONNX with a predict.py that runs without PyTorch.")
        bundle_download("fm", f"{path}|{Path(path).stat().st_mtime_ns}", f"{name}-{dataset}-bundle",
                        lambda p=path: bundle.source_from_checkpoint(Path(p)))
    elif kind == RANDOM:
        ch.seed = int(st.number_input("Seed", 0, 10_000, 0, key="fm_seed"))
    elif kind == RUN:
        runs = [r for r in _runs() if r.config.get("model", name) == name] or _runs()
        if not runs:
            st.info("No training run with a checkpoint yet: train one on the Train page.", icon=":material/info:")
            return
        ch.run = run = st.selectbox("Run", runs, key="fm_run",
                                    format_func=lambda r: f"{r.run_id} ({r.config.get('model')}, {r.status})")
        ckpts = run.checkpoints
        epochs = sorted(ckpts)
        if epochs:
            ep = st.select_slider("Epoch", epochs, value=epochs[-1], key=f"fm_epoch_{run.run_id}") \
                if len(epochs) > 1 else epochs[0]
            ch.path = str(ckpts[ep])
        else:
            ch.path = str(run.last_checkpoint)
    elif kind == UPLOAD:
        up = st.file_uploader("Checkpoint (.safetensors, .pt, .pth)", type=["safetensors", "pt", "pth"],
                              key="fm_upload", help="Loaded safely: safetensors, or torch.load(weights_only=True). "
                              "Pickles that try to build Python objects are refused; nothing in the file runs.")
        if up is not None:
            ch.raw, ch.path = up.getvalue(), up.name
    elif kind == TORCHVISION:
        status = models.pretrained_status(name)
        if status.cached:
            st.caption(f"Found `{status.filename}` in `{status.folder}`.")
        else:
            st.warning(status.how_to, icon=":material/cloud_off:")


def pick_weights(names: list[str], shipped: dict, handed: str | None) -> Choice:
    """Model, weights and what identifies them, in three columns."""
    c1, c2, c3 = st.columns([1.1, 1.3, 1.4], gap="medium")
    default_model = next(iter(shipped), "lenet5")
    name = c1.selectbox("Model", names, index=names.index(default_model), key="fm_model",
                        format_func=lambda n: f"{n} ({models.info(n).family}, {models.info(n).input_size} px)")
    info = models.info(name)
    shipped_here = loading.shipped_for(name)  # {dataset: path}
    sources = [HANDED] if handed else []
    sources += [SHIPPED[d] for d in shipped_here] + [RANDOM, RUN, UPLOAD]
    if info.torchvision_name:
        sources.append(TORCHVISION)
    tv_cached = bool(info.torchvision_name) and models.pretrained_status(name).cached
    with c2:
        kind = st.radio("Weights", sources, key=f"fm_source_{name}", horizontal=False,
                        format_func=lambda k: k if k != TORCHVISION else
                        f"{k} ({'in the local cache' if tv_cached else 'not downloaded'})")
    ch = Choice(name, kind, tv_cached=tv_cached)
    if not shipped and kind == RANDOM:
        ch.note = ("No trained checkpoints are shipped yet (assets/checkpoints/*.safetensors): showing random "
                   "weights, whose maps show edges and colours by chance only.")
    with c3:
        weights_detail(ch, shipped_here, handed)
    return ch


def load_chosen(ch: Choice):
    """(the loaded model, its cache key): the chosen weights, or random ones (said why) when they can't be used."""
    name, kind, path, raw = ch.name, ch.kind, ch.path, ch.raw
    loaded, fallback_reason = None, ""
    needs_file = (kind in (RUN, UPLOAD, HANDED) or kind in SHIPPED.values()) and not path
    if kind == TORCHVISION and not ch.tv_cached:
        fallback_reason = "ImageNet weights not cached"
    elif needs_file:
        fallback_reason = "no checkpoint chosen yet"
    else:
        digest = hashlib.sha1(raw).hexdigest() if raw is not None else ""
        mtime = Path(path).stat().st_mtime if path and raw is None and Path(path).is_file() else 0
        key = f"{kind}|{name}|{ch.seed}|{path}|{mtime}|{digest}|{models.design.stamp(name)}"  # a re-saved design
        try:
            with st.spinner(f"Loading {name}..."):
                loaded = _load(key, kind, name, ch.seed, path, raw)
        except (CheckpointError, FileNotFoundError, ValueError, RuntimeError) as exc:
            error_line("Couldn't use these weights", exc)
            fallback_reason = "the weights could not be loaded"
    if loaded is None:
        key = f"{RANDOM}|{name}|0|||"
        loaded = _within_budget(lambda: _load(key, RANDOM, name, 0, "", None))
        st.caption(f"Showing {name} with random weights (seed 0) while {fallback_reason}.")
    elif ch.note:
        st.caption(ch.note)
    if loaded.name != name:
        st.info(f"The checkpoint is for **{loaded.name}**, so that model is shown.", icon=":material/info:")
    for w in loaded.warnings:
        st.warning(w, icon=":material/warning:")
    return loaded, key


# ---- the input -----------------------------------------------------------------------------
def prepare_input(loaded) -> Input:
    """The sidebar image as the model takes it (MNIST-style for a digits model, unless switched off)."""
    im = current_image()
    size, ch = loaded.input_size, loaded.in_channels
    prep = None
    if loading.reads_digits(loaded):
        mnist = st.toggle("Prepare the input like MNIST", value=True, key="fm_mnist",
                          help="MNIST's digits are white ink on black, scaled into a 20x20 box and centred by their "
                               "centre of mass in 28x28. A model trained on them reads a drawing well only when it "
                               "is made the same way. Off: the image is just centre-cropped and resized, as for "
                               "photos.")
        if mnist:
            prep = _digit(image_digest(im), im)
    if prep is not None:
        x, small = features.digit_input(prep.pixels, size, loaded.mean, loaded.std, ch)
        digest = f"{image_digest(im)}|digit|{size}|{ch}"
    else:
        x, small = features.preprocess(im, size, loaded.mean, loaded.std, ch)
        digest = f"{image_digest(im)}|{size}|{ch}"
    norm = (f"normalised with mean {tuple(round(v, 3) for v in loaded.mean)} and std "
            f"{tuple(round(v, 3) for v in loaded.std)}")
    if prep is not None:
        st.caption(f"**{loaded.name}** with {loaded.source}; input: {current_label()} made into a 28x28 "
                   f"MNIST-style digit, resized to {ch}x{size}x{size} as in training, {norm}.")
    else:
        st.caption(f"**{loaded.name}** with {loaded.source}; input: {current_label()} centre-cropped and resized "
                   f"to {ch}x{size}x{size}, {norm}.")
    return Input(im, x, small, prep, digest, size, ch)


def digit_reading(loaded, model_key: str, inp: Input):
    """For a digits model: what it reads, beside the 28x28 it reads; the top-5, or None."""
    reading = None
    prep, im = inp.prep, inp.im
    if prep is not None:
        d1, d2, d3 = st.columns([1, 1, 2.2], gap="medium")
        d1.image(**picture(display.upscale_nearest(im, 168) if max(im.size) < 168 else im, width=168),
                 caption=f"{current_label()}, {im.width}x{im.height}")
        d2.image(**picture(display.upscale_nearest(prep.image(), 168), width=168),
                 caption="what the model reads: 28x28 (shown 6x)")
        with d3:
            if prep.empty:
                st.info("Nothing to read yet: draw a digit on the canvas in the sidebar (**Or draw one**), as large "
                        "as you like: it is scaled and centred the way MNIST was.", icon=":material/draw:")
            else:
                reading = _within_budget(lambda: _predict(model_key, inp.digest, loaded.model, inp.x,
                                                          tuple(loaded.classes)))
                best, name_best, p_best = reading[0]
                st.metric("The model reads", name_best, f"{p_best:.1%} sure", delta_color="off", delta_arrow="off")
                st.caption("Next: " + ", ".join(f"{n} {p:.1%}" for _, n, p in reading[1:4]) + ".")
            st.caption(prep.describe())
    if loading.reads_digits(loaded) and not is_drawing():
        st.caption("This model was trained on handwritten digits: draw one in the sidebar (**Or draw one**) to see "
                   "it read.")
    return reading


# ---- layer and channels ----------------------------------------------------------------------
def channel_panel(fmap, layer: str, li, chans: list[int], inp: Input, ch: Choice, loaded) -> None:
    """One channel large, over the input, its receptive field, and the way to the Microscope."""
    C, H, W = fmap.shape
    means = fmap.mean(dim=(1, 2))
    pick = st.selectbox("Channel to look at", chans, key=f"fm_channel_{layer}",
                        format_func=lambda c: f"channel {c} (mean {float(means[c]):.3g}, "
                                              f"max {float(fmap[c].max()):.3g})")
    big = features.channel_picture(fmap[pick], 320)
    ov = display.overlay(inp.small.resize((320, 320)), display.heatmap(fmap[pick]), 0.55)
    if st.button(f"Open channel {pick} in the Microscope", key="fm_open_microscope", icon=":material/biotech:",
                 help="Its filters, the test images that drive it most and least, and the input it likes best."):
        run_here = ch.run if ch.kind == RUN and ch.path else None
        open_in_microscope("Feature maps", loaded.name, ch.kind, ch.path, ch.seed, ch.raw,
                           run_id=run_here.run_id if run_here else None,
                           epoch=int(loaded.meta["epoch"]) if run_here and loaded.meta.get("epoch") else None,
                           layer=layer, channel=int(pick))
    a, b = st.columns(2)
    a.image(**picture(big, width="stretch"), caption=f"channel {pick}, {H}x{W} (viridis, own range)")
    b.image(**picture(ov, width="stretch"), caption="the same map over the input")
    rf = li.rf
    if rf is not None and not rf.whole:
        r1, r2 = st.columns(2)
        row = r1.slider("Cell row", 0, H - 1, H // 2, key=f"fm_row_{H}") if H > 1 else 0
        col = r2.slider("Cell column", 0, W - 1, W // 2, key=f"fm_col_{W}") if W > 1 else 0
        boxed = draw_box(inp.small.resize((320, 320), 0), rf.box(row, col), (inp.size, inp.size))
        st.image(**picture(boxed, width=320))
        st.caption(f"Receptive field of cell ({row}, {col}) of `{layer}`: {rf.size[0]:.0f}x{rf.size[1]:.0f} "
                   f"input pixels, neighbouring cells {rf.jump[0]:.0f} px apart (the total stride), computed "
                   f"through every conv and pooling before it (branches and shortcuts included). The box "
                   f"is clipped to the {inp.size}x{inp.size} input.")


def vector_view(fmap, layer: str) -> None:
    """A layer without a spatial map: its first values as bars."""
    import plotly.graph_objects as go

    vals = fmap.flatten()
    st.info(f"`{layer}` outputs a vector of {vals.numel()} values (no spatial map): its cells see the whole image.",
            icon=":material/info:")
    fig = go.Figure(go.Bar(y=vals[:512].tolist(), marker_color="#21918c"))
    fig.update_layout(height=260, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"title": "unit"}, yaxis={"title": "value"})
    st.plotly_chart(fig, width="stretch", key="fm_vector")
    st.caption(f"The first {min(512, vals.numel())} of the {vals.numel()} output values of `{layer}`.")


def layer_view(loaded, model_key: str, inp: Input, ch: Choice, layers: list) -> None:
    """A layer's channels as a grid (ordered, scaled as chosen) and one channel large."""
    by_name = {li.name: li for li in layers}
    default_layer = next((li.name for li in layers if li.type == "Conv2d"), layers[0].name)
    l1, l2, l3, l4 = st.columns([2.2, 1, 1, 1.2], gap="medium")
    layer = l1.selectbox(
        f"Layer ({len(layers)} in forward order)", [li.name for li in layers],
        index=[li.name for li in layers].index(default_layer), key=f"fm_layer_{loaded.name}",
        format_func=lambda n: f"{'  ' * (by_name[n].depth - 1)}{n} · {by_name[n].type} · "
                              f"{' x '.join(map(str, by_name[n].shape[1:])) or '-'}")
    li = by_name[layer]
    fmap = _within_budget(lambda: _fmap(model_key, inp.digest, layer, loaded.model, inp.x))
    if fmap.dim() != 3:
        vector_view(fmap, layer)
        return
    C, H, W = fmap.shape
    order = l2.radio("Order", ["strongest first", "index"], key="fm_order")
    scale = l3.radio("Colour scale", ["per channel", "shared"], key="fm_scale")
    top_k = l4.slider("Channels shown", 1, C, min(C, 32), key=f"fm_topk_{C}") if C > 1 else 1
    chans = features.channel_order(fmap, "mean" if order == "strongest first" else "index", top_k)
    grid = features.channel_grid(fmap, chans, shared=scale == "shared", tile=64 if H <= 64 else H)
    left, right = st.columns([1.5, 1], gap="large")
    with left:
        st.image(**picture(grid.image, width="stretch"))
        rng = (f"one shared scale from {grid.vmin:.3g} (dark purple) to {grid.vmax:.3g} (yellow)" if grid.shared
               else "each tile scaled to its own min (dark purple) and max (yellow)")
        st.caption(f"{len(chans)} of the {C} channels of `{layer}` ({li.type}, {H}x{W} each), "
                   f"{'sorted by mean activation, strongest first' if order == 'strongest first' else 'in index order'}"
                   f", row by row: channel numbers {', '.join(map(str, chans[:8]))}{'…' if len(chans) > 8 else ''}; "
                   f"{rng}.")
    with right:
        channel_panel(fmap, layer, li, chans, inp, ch, loaded)


# ---- predictions and Grad-CAM ------------------------------------------------------------------
def predictions(loaded, model_key: str, inp: Input, layers: list, reading) -> None:
    """Top-5 and Grad-CAM for a chosen class and layer (trained weights only)."""
    st.subheader("Predictions and Grad-CAM")
    spatial = [li for li in layers if len(li.shape) == 4]
    if inp.prep is not None and inp.prep.empty:
        st.info("No predictions for an empty canvas: draw a digit in the sidebar.", icon=":material/draw:")
        return
    if not loaded.trained:
        st.info("These are random weights: predictions and Grad-CAM would mean nothing. Choose trained weights "
                "(shipped, a training run, an upload or cached torchvision weights) to see them.",
                icon=":material/info:")
        return
    if not spatial:
        st.info("This model has no spatial layer for Grad-CAM.")
        return
    top = reading or _within_budget(lambda: _predict(model_key, inp.digest, loaded.model, inp.x,
                                                     tuple(loaded.classes)))
    p1, p2, p3 = st.columns([1, 1, 1.2], gap="large")
    with p1:
        st.dataframe(pd.DataFrame([{"class": n, "probability": p} for _, n, p in top]), hide_index=True,
                     key="fm_top5", column_config={"probability": st.column_config.ProgressColumn(
                         "probability", format="percent", min_value=0.0, max_value=1.0)})
        st.caption(f"Top-5 of {len(loaded.classes)} classes for {current_label()}"
                   + (" (made MNIST-style)." if inp.prep is not None else
                      " (a CIFAR-10 model sees a 32x32 thumbnail: expect low confidence on photos that "
                      "aren't one of its classes)." if inp.size == 32 else "."))
    cam_default = features.last_spatial_layer(layers) or spatial[-1].name
    spatial_names = [s.name for s in spatial]
    with p3:
        target = st.selectbox("Explain class", list(range(len(loaded.classes))), index=top[0][0],
                              key=f"fm_cam_class_{loaded.name}", format_func=lambda i: loaded.classes[i])
        cam_layer = st.selectbox("Grad-CAM layer", spatial_names, index=spatial_names.index(cam_default),
                                 key=f"fm_cam_layer_{loaded.name}")
    with st.spinner("Grad-CAM..."):
        cam = _within_budget(lambda: _cam(model_key, inp.digest, cam_layer, int(target), loaded.model, inp.x))
    with p2:
        st.image(**picture(features.cam_overlay(inp.small.resize((320, 320)), cam.cam, 0.5), width="stretch"))
        st.caption(f"Grad-CAM for **{loaded.classes[cam.target]}** (p = {float(cam.probs[cam.target]):.1%}) at "
                   f"`{cam_layer}`: the layer's channels weighted by how much the class score rises with each "
                   "(mean gradient), summed, kept where positive, scaled 0 (purple) to 1 (yellow), over the input.")


def main() -> None:
    shipped = loading.shipped_checkpoints()
    handed = st.session_state.get(HANDOFF)
    names = models.names() + models.design_names()  # the designs saved on the Architectures page too
    preselect(names, handed)
    ch = pick_weights(names, shipped, handed)
    loaded, model_key = load_chosen(ch)
    inp = prepare_input(loaded)
    layers = _layers(f"{model_key}|{inp.size}|{inp.ch}", loaded.model, (inp.ch, inp.size, inp.size))
    reading = digit_reading(loaded, model_key, inp)
    layer_view(loaded, model_key, inp, ch, layers)
    predictions(loaded, model_key, inp, layers, reading)


main()
