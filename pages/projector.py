"""Projector: a trained model's features of the test set in 2-D or 3-D (PCA, t-SNE, UMAP); select points to
see their images and open one in Feature maps; watch the classes separate across a run's epochs."""

from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitAPIException

from ui.image_state import use_image
from ui.layout import page_header, user_error

page_header(
    "Projector",
    "What does the network group together? Every test image goes through the model and leaves one vector "
    "(the **penultimate** features, what the last layer classifies, or any layer averaged over positions); "
    "PCA, t-SNE or UMAP lays the vectors out in 2-D or 3-D so that images the network finds alike land close. "
    "Colour by true class, predicted class or right/wrong; hover a point to see its image; **select points** "
    "(click, box or lasso) to see their images, and open one in Feature maps. For a training run, scrub "
    "through its saved epochs to watch the classes pull apart.",
)

import copy  # noqa: E402  (after the header has painted)

import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402

from cnnviz.images import display  # noqa: E402
from cnnviz.inspect import features, projector, loading, sprites  # noqa: E402
from ui.pick_weights import pick_weights  # noqa: E402
from ui.scatter_hover import hover_pictures  # noqa: E402
from ui.weights import RUN, SHIPPED, UPLOAD  # noqa: E402

THUMB = 72
GALLERY_MAX = 40
SCRUB_POINTS = 2000


# ---------------------------------------------------------------- background work (cached per checkpoint)
def _features_work(spec: str, layer: str, limit: int, model, mean, std, size: int, channels: int):
    def work(progress, _cancelled):
        progress(0.0, f"loading {loading.dataset_label(spec)}")
        ts = projector.test_set(spec, size, limit)
        if ts.inputs.shape[1] != channels:
            raise ValueError(f"{loading.dataset_label(spec)} has {ts.inputs.shape[1]}-channel images; this model "
                             f"reads {channels}-channel ones: choose its own test images.")
        f = projector.extract(model, ts.inputs, mean, std, layer=layer, progress=lambda a, m: progress(0.1 + 0.8 * a, m))
        progress(0.95, "silhouette of the true classes")
        return ts, f, projector.silhouette(f.vectors, ts.labels)
    return work


@st.cache_resource(show_spinner=False, max_entries=6)
def _features(weights_key: str, spec: str, layer: str, limit: int, _loaded) -> projector.Job:
    """Test set + feature vectors, computed in the background (one job per weights, data, layer, size)."""
    model = copy.deepcopy(_loaded.model)  # its own copy: hooks never meet another page's
    return projector.Job(_features_work(spec, layer, limit, model, _loaded.mean, _loaded.std, _loaded.input_size,
                                         _loaded.in_channels),
                         name=f"features of {loading.dataset_label(spec)}")


@st.cache_resource(show_spinner=False, max_entries=12)
def _projection(weights_key: str, spec: str, layer: str, limit: int, method: str, dim: int, perplexity: float,
                neighbours: int, _fjob: projector.Job) -> projector.Job:
    """The 2-D/3-D layout of the features job's vectors (cached per weights, data, layer and method)."""
    def work(progress, cancelled):
        _ts, f, _s = _fjob.wait()
        return projector.reduce(f.vectors, method, dim, perplexity=perplexity, neighbours=neighbours,
                                progress=progress, cancelled=cancelled)
    return projector.Job(work, name=f"{method} {dim}-D", after=_fjob)


@st.cache_resource(show_spinner=False, max_entries=4)
def _epochs(run_id: str, paths: tuple[tuple[int, str], ...], spec: str, layer: str, name: str) -> projector.Job:
    """Features of the same test images at every saved epoch, on the PCA axes of the last epoch."""
    def work(progress, _cancelled):
        vecs, labels, sil = {}, None, {}
        ts = None
        for i, (epoch, path) in enumerate(paths):
            loaded = loading.from_checkpoint(path, name)
            if ts is None:
                ts = projector.test_set(spec, loaded.input_size, SCRUB_POINTS)
                labels = ts.labels
            f = projector.extract(loaded.model, ts.inputs, loaded.mean, loaded.std, layer=layer,
                                  progress=lambda a, m, i=i, e=epoch: progress((i + a) / len(paths), f"epoch {e}: {m}"))
            vecs[epoch] = f.vectors
            sil[epoch] = projector.silhouette(f.vectors, labels)
        coords, basis = projector.epochs_in_last_basis(vecs, 2)
        return coords, basis, labels, sil
    return projector.Job(work, name=f"epochs of {run_id}")


@st.cache_resource(show_spinner=False, max_entries=8)
def _layer_names(weights_key: str, shape: tuple[int, ...], _model) -> list[str]:
    return [projector.PENULTIMATE] + [li.name for li in features.list_layers(_model, shape) if len(li.shape) in (2, 4)]


@st.cache_resource(show_spinner=False, max_entries=16)
def _figure(job_id: int, colour: str, _proj, _ts, _feats, _classes):
    """The scatter of one finished projection (rebuilt only when the colouring changes)."""
    return projector.scatter(_proj.coords, _ts.indices, _ts.labels, _feats.preds, _feats.confidence, _classes, colour)


@st.cache_resource(show_spinner=False, max_entries=6)
def _sprite(features_job_id: int, _ts) -> sprites.Sprite | str:
    """Every test image's thumbnail in one sprite sheet (the hover pictures), or why not (one line)."""
    try:
        return sprites.sprite_sheet(_ts.images)
    except ValueError as exc:   # no points, or over the memory budget (BudgetError)
        return (str(exc).strip().splitlines() or ["no sprite sheet"])[0]


def scatter_with_pictures(fig, dim: int, sprite):
    """The scatter (2-D: selectable) with the picture of the point under the mouse; its selection event."""
    key = "pj_scatter" if dim == 2 else "pj_scatter3d"
    with st.container(key=f"{key}_box"):
        if dim == 2:
            event = st.plotly_chart(fig, width="stretch", key=key, on_select="rerun",
                                    selection_mode=("points", "box", "lasso"))
        else:
            event = None
            st.plotly_chart(fig, width="stretch", key=key)
        if isinstance(sprite, sprites.Sprite):
            hover_pictures(f"{key}_box", sprite)
    if not isinstance(sprite, sprites.Sprite):
        st.caption(f"No pictures on hover: {sprite}")
    return event


def wait_for(job: projector.Job, what: str) -> bool:
    """True when `job` is done; else a progress bar that refreshes itself each second until it is."""
    if job.done:
        return True

    @st.fragment(run_every=1.0)
    def _poll():
        if job.done:
            st.rerun()
        st.progress(job.fraction, text=f"{what}: {job.message} ({job.elapsed:.0f} s)")

    _poll()
    return False


def thumb(images, pos: int):
    t = images[pos].float().div(255)
    return display.upscale_nearest(display.tensor_to_pil(t.expand(3, -1, -1) if t.shape[0] == 1 else t), THUMB)


def open_in_feature_maps(picked, ts, f, pos: int) -> None:
    """Make test image `pos` the sidebar image, the same weights Feature maps', and go there."""
    loaded = picked.loaded
    idx = int(ts.indices[pos])
    t = ts.images[pos].float().div(255)
    use_image(display.tensor_to_pil(t.expand(3, -1, -1) if t.shape[0] == 1 else t),
               f"test image #{idx} of {loading.dataset_label(ts.spec)} ({ts.classes[int(ts.labels[pos])]})")
    if picked.kind in SHIPPED.values():
        st.session_state["fm_model"] = loaded.name
        st.session_state[f"fm_source_{loaded.name}"] = picked.kind
    elif picked.path and picked.kind != UPLOAD:
        st.session_state["feature_maps_checkpoint"] = picked.path
    st.session_state["fm_mnist"] = False  # a dataset digit is MNIST-style already
    try:
        st.switch_page("pages/feature_maps.py")
    except StreamlitAPIException:  # the page run on its own, outside the app's navigation
        st.success(f"Test image #{idx} is now the sidebar image: open Feature maps from the menu.")


def gallery(picked, ts, f, chosen: list[int]) -> None:
    pos_of = {int(i): p for p, i in enumerate(ts.indices)}
    shown = [pos_of[i] for i in chosen if i in pos_of][:GALLERY_MAX]
    right = sum(int(f.preds[p] == ts.labels[p]) for p in shown)
    st.markdown(f"**{len(chosen):,} selected** (showing {len(shown)}): {right} of them right.")
    for row in range(0, len(shown), 8):
        for col, p in zip(st.columns(8), shown[row:row + 8]):
            true, pred = ts.classes[int(ts.labels[p])], ts.classes[int(f.preds[p])]
            col.image(thumb(ts.images, p), width=THUMB,
                      caption=f"#{int(ts.indices[p])}: {true}" + ("" if true == pred else f" → {pred}")
                      + f" ({100 * float(f.confidence[p]):.0f}%)")
            if col.button("Open", key=f"pj_open_{int(ts.indices[p])}", help="Open in Feature maps"):
                open_in_feature_maps(picked, ts, f, p)


def scrubber(picked, spec: str, layer: str) -> None:
    st.subheader("Across epochs")
    paths = tuple((e, str(p)) for e, p in sorted(picked.epochs.items()))
    if st.button(f"Compute the {len(paths)} saved epochs", key="pj_epochs_go", icon=":material/timeline:"):
        st.session_state["pj_epochs_for"] = (picked.run.run_id, paths, spec, layer)
    if st.session_state.get("pj_epochs_for") != (picked.run.run_id, paths, spec, layer):
        st.caption(f"{SCRUB_POINTS:,} test images through each saved epoch's weights, on one set of axes.")
        return
    job = _epochs(picked.run.run_id, paths, spec, layer, picked.loaded.name)
    if not wait_for(job, "epochs"):
        return
    if job.error:
        user_error(job.error)
        return
    coords, basis, labels, sil = job.result
    epochs = list(coords)
    ep = st.select_slider("Epoch", epochs, value=epochs[-1], key="pj_epoch")
    ranges = projector.padded_ranges(list(coords.values()))
    c1, c2 = st.columns([2, 1])
    n = len(labels)
    fig = projector.scatter(coords[ep], np.arange(n), labels, labels, np.ones(n), _classes(picked, labels),
                            "true class", ranges=ranges)
    c1.plotly_chart(fig, width="stretch", key="pj_epoch_chart")
    sfig = go.Figure(go.Scatter(x=list(sil), y=list(sil.values()), mode="lines+markers"))
    sfig.update_layout(height=300, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="epoch",
                       yaxis_title="silhouette (true classes)")
    c2.plotly_chart(sfig, width="stretch", key="pj_epoch_sil")
    c1.caption(f"Epoch {ep}: {n:,} test images on the two PCA axes **fitted on the last epoch ({epochs[-1]})** "
               f"(they explain {basis.explained[0]:.0%} and {basis.explained[1]:.0%} of its variance); every epoch is "
               "projected on those same axes, so positions are comparable and the classes can be seen separating.")
    c2.caption("Silhouette of the true classes in the feature space at each epoch (-1..1; higher: tighter, "
               f"better separated classes): {sil[epochs[0]]:.2f} at epoch {epochs[0]}, {sil[epochs[-1]]:.2f} at "
               f"epoch {epochs[-1]}.")


def _classes(picked, labels) -> list[str]:
    cl = list(picked.loaded.classes)
    return cl if len(cl) > int(np.max(labels)) else [str(i) for i in range(int(np.max(labels)) + 1)]


# ---------------------------------------------------------------- page body
picked = pick_weights("pj", default=("lenet5", "digits"))
if picked.loaded is None:
    st.info(f"Choose weights to project ({picked.why_none}).", icon=":material/info:")
    st.stop()
loaded = picked.loaded
own = picked.dataset
specs = list(dict.fromkeys([s for s in (own, "digits", "shapes") if s]))
shape = (loaded.in_channels, loaded.input_size, loaded.input_size)
layer_names = _layer_names(picked.key, shape, loaded.model)
c1, c2, c3, c4 = st.columns([1.2, 1.4, 1, 1])
spec = c1.selectbox("Test images", specs, key="pj_spec", format_func=lambda s: loading.dataset_label(s)
                    + (" (the weights' own)" if s == own else ""))
layer = c2.selectbox("Features", layer_names, key=f"pj_layer_{loaded.name}",
                     format_func=lambda n: "penultimate (input of the last Linear)" if n == projector.PENULTIMATE else n)
limit = c3.select_slider("Points (at most)", [500, 1000, 2000, 5000, 10_000], value=5000, key="pj_limit",
                         help="All test images up to this many, else a stratified sample (each class keeps its share).")
method = c4.radio("Method", projector.METHODS, key="pj_method", horizontal=True)
d1, d2, d3 = st.columns([1, 1.4, 2])
dim = 3 if d1.radio("View", ["2-D", "3-D"], key="pj_dim", horizontal=True) == "3-D" else 2
colour = d2.radio("Colour by", projector.COLOUR_BY, key="pj_colour", horizontal=True)
perplexity, neighbours = 30.0, 15
if method == "t-SNE":
    perplexity = float(d3.slider("Perplexity", 5, 100, 30, key="pj_perplexity", help="About how many neighbours "
                                 "each point keeps close (openTSNE)."))
elif method == "UMAP":
    neighbours = int(d3.slider("Neighbours", 5, 100, 15, key="pj_neighbours", help="Local (few) vs global (many) "
                               "structure (umap-learn)."))

fjob = _features(picked.key, spec, layer, int(limit), loaded)
pjob = _projection(picked.key, spec, layer, int(limit), method, dim, perplexity, neighbours, fjob)
if not wait_for(pjob, f"{method} of the {loading.dataset_label(spec)} test set"):
    st.stop()
if fjob.error or pjob.error:
    user_error(f"Couldn't project {loading.dataset_label(spec)}: {fjob.error or pjob.error}")
    if st.button("Try again", key="pj_retry"):
        _features.clear()
        _projection.clear()
        st.rerun()
    st.stop()
ts, feats, sil = fjob.result
proj = pjob.result
classes = ts.classes if len(ts.classes) == len(loaded.classes) else _classes(picked, ts.labels)
fig = _figure(pjob.id, colour, proj, ts, feats, tuple(classes))
acc = float((feats.preds == ts.labels).mean())
event = scatter_with_pictures(fig, dim, _sprite(fjob.id, ts))
axes = (f"; the axes explain {', '.join(f'{v:.0%}' for v in proj.explained)} of the variance"
        if proj.explained is not None else "")
st.caption(f"{len(ts.indices):,} of the {ts.total:,} {loading.dataset_label(spec)} test images"
           + (" (a stratified sample)" if len(ts.indices) < ts.total else "")
           + f", {feats.layer} ({feats.vectors.shape[1]} values each), laid out by {method} in {dim}-D in "
           f"{proj.seconds:.1f} s{axes}. The model is right on {acc:.1%} of them; silhouette of the true classes in "
           f"the feature space {sil:.2f} (-1..1). Hover a point to see its image and classes"
           + ("; select points (click, box or lasso) to see their images." if dim == 2 else
              "; drag to rotate. Selecting points works in the 2-D view."))
chosen = projector.selected_indices(event) if event is not None else []
if chosen:
    gallery(picked, ts, feats, chosen)
if picked.kind == RUN and picked.run is not None and len(picked.epochs) >= 2:
    scrubber(picked, spec, layer)
