"""Attribution: where a trained model looks, eight methods side by side; whether a map means anything
(the sanity check, deletion/insertion curves); and how easily the model is fooled (FGSM, PGD)."""

from __future__ import annotations

import streamlit as st

from ui.image_state import current_image, current_label, image_digest, is_drawing
from ui.layout import page_header, user_error

page_header(
    "Attribution",
    "Which pixels made the model say what it said? **Methods** puts eight answers side by side: four class "
    "activation maps (Grad-CAM, Grad-CAM++, Score-CAM, Layer-CAM) from one layer, three gradient maps "
    "(Saliency, Integrated Gradients, SmoothGrad) and Occlusion, with deletion and insertion curves that test "
    "each map against the model. **Sanity check** re-initialises the layers from the top down and watches "
    "whether each map changes (Adebayo et al. 2018): a map that survives randomised weights shows the image, "
    "not the model. **Fool it** changes every pixel by a few levels out of 255 and flips the prediction.",
)

import numpy as np  # noqa: E402  (after the header has painted)
import pandas as pd  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
import torch  # noqa: E402

from cnnviz.images import display, prepare_digit  # noqa: E402
from cnnviz.inspect import adversarial, attribution, features, loading  # noqa: E402
from cnnviz.limits import BudgetError  # noqa: E402
from ui.pick_weights import pick_weights  # noqa: E402
from ui.pictures import picture  # noqa: E402
from ui.weights import RANDOM, SHIPPED, load_weights  # noqa: E402

TILE = 192
METHODS = list(attribution.METHODS)


# ---------------------------------------------------------------- cached work
@st.cache_resource(show_spinner=False, max_entries=256)  # not copied on every rerun: the page only reads them
def _attr(model_key: str, digest: str, method: str, target: int, layer: str, params: tuple, _loaded, _x):
    return attribution.attribute(_loaded.model, _x, method, target, layer=layer, params=dict(params),
                                 mean=_loaded.mean, std=_loaded.std)


@st.cache_data(show_spinner=False, max_entries=256)
def _faith(model_key: str, digest: str, method: str, target: int, layer: str, params: tuple, _loaded, _x, _heat):
    return attribution.faithfulness(_loaded.model, _x, _heat, target, mean=_loaded.mean, std=_loaded.std)


def _sanity(key: tuple, loaded, x, target: int, layer: str, methods: list, params: dict):
    """The sanity check, kept in this session per (weights, image, class, layer, methods, parameters)
    (not st.cache_data: it draws its progress as it goes)."""
    kept = st.session_state.get("at_sanity_result")
    if kept is not None and kept[0] == key:
        return kept[1]
    bar = st.progress(0.0, text="Randomising layers...")
    res = attribution.sanity_check(loaded.model, x, methods, target, layer=layer,
                                   params={m: dict(params[m]) for m in methods}, mean=loaded.mean, std=loaded.std,
                                   progress=lambda f, m: bar.progress(f, text=f"Sanity check: {m}..."))
    bar.empty()
    st.session_state["at_sanity_result"] = (key, res)
    return res


@st.cache_data(show_spinner=False, max_entries=64)
def _sweep(model_key: str, digest: str, method: str, steps: int, _loaded, _pixels):
    if method == "FGSM":
        return adversarial.fgsm_sweep(_loaded.model, _pixels, _loaded.mean, _loaded.std, 32)
    return adversarial.pgd_sweep(_loaded.model, _pixels, _loaded.mean, _loaded.std, 16, steps)


@st.cache_resource(show_spinner=False, max_entries=2)
def _test_images(spec: str):
    from cnnviz import data

    ds = data.load_dataset(spec, "test")
    return ds.images, ds.labels, [str(c) for c in ds.classes]


@st.cache_data(show_spinner=False, max_entries=256)
def _attack(model_key: str, digest: str, method: str, eps: int, steps: int, _loaded, _pixels) -> adversarial.Attack:
    """One attack per (weights, image, method, ε, steps): both are deterministic (PGD's start is seeded),
    so a rerun that changed none of them does no forward or backward pass."""
    loaded, pixels = _loaded, _pixels
    if method == "FGSM":
        return adversarial.fgsm(loaded.model, pixels, loaded.mean, loaded.std, eps)
    return adversarial.pgd(loaded.model, pixels, loaded.mean, loaded.std, eps, steps)


@st.cache_data(show_spinner=False, max_entries=256)
def _predict(model_key: str, digest: str, _loaded, _x) -> list:
    return features.predict(_loaded.model, _x, _loaded.classes, k=5)


@st.cache_resource(show_spinner=False, max_entries=16)
def _layers(model_key: str, shape: tuple, _model) -> list:
    return features.list_layers(_model, shape)


@st.cache_resource(show_spinner=False, max_entries=64)
def _overlays(key: tuple, _small, _maps: tuple):
    """The maps drawn over the input, per (weights, image, class, layer, methods, parameters)."""
    base = _small.convert("RGB").resize((TILE, TILE), 0)
    return [features.cam_overlay(base, m, 0.55) for m in _maps]


# ---------------------------------------------------------------- pictures
def _pic(t: torch.Tensor) -> "display.Image.Image":
    """(C,H,W) in [0,1] -> an RGB picture TILE px wide (nearest, so pixels stay visible)."""
    im = display.tensor_to_pil(t.expand(3, -1, -1) if t.shape[0] == 1 else t)
    return display.upscale_nearest(im.convert("RGB"), TILE)


def _strip(maps: list[torch.Tensor], side: int = 72, gap: int = 3) -> "display.Image.Image":
    from PIL import Image

    tiles = [display.upscale_nearest(display.heatmap(m, vmin=0.0, vmax=1.0), side).resize((side, side)) for m in maps]
    out = Image.new("RGB", (len(tiles) * (side + gap) - gap, side), "white")
    for i, t in enumerate(tiles):
        out.paste(t, (i * (side + gap), 0))
    return out


def _top5(probs: torch.Tensor, classes: list[str]) -> pd.DataFrame:
    p, i = probs.topk(min(5, probs.numel()))
    return pd.DataFrame({"class": [classes[int(k)] for k in i], "probability": [float(v) for v in p]})


PROB = st.column_config.ProgressColumn("probability", format="percent", min_value=0.0, max_value=1.0)


# ---------------------------------------------------------------- the input
def _input(loaded, spec: str) -> tuple[torch.Tensor, "display.Image.Image", str, str]:
    """The normalised input (1,C,S,S), the picture of it, a cache digest and a caption; `spec`: the
    weights' dataset, for a test image ("" for none)."""
    size, ch = loaded.input_size, loaded.in_channels
    choices = ["The sidebar image"] + (["A test image"] if spec else [])
    src = st.radio("Image", choices, horizontal=True, key="at_image_source",
                   help="The sidebar's image, or one of the test images of the dataset the weights were trained on.")
    if src == "A test image":
        try:
            images, labels, classes = _test_images(spec)
        except (ValueError, OSError) as exc:
            user_error(f"Couldn't load {loading.dataset_label(spec)}: {str(exc).splitlines()[0]}")
            st.stop()
        k = int(st.number_input(f"Test image (0-{len(images) - 1})", 0, len(images) - 1, 0, key="at_test_index"))
        from cnnviz.train.device_data import resize_uint8
        from cnnviz.train.evaluate import prepare_inputs

        img = resize_uint8(images[k:k + 1], (size, size))
        x = prepare_inputs(img, loaded.mean, loaded.std)
        small = display.tensor_to_pil(img[0].float().div(255).expand(3, -1, -1))
        return x, small, f"test|{spec}|{k}|{size}", f"test image #{k} of {loading.dataset_label(spec)} " \
                                                     f"(a {classes[int(labels[k])]})"
    im = current_image()
    if loading.reads_digits(loaded) and is_drawing():
        prep = prepare_digit(im)
        x, small = features.digit_input(prep.pixels, size, loaded.mean, loaded.std, ch)
        return x, small, f"{image_digest(im)}|digit|{size}|{ch}", f"{current_label()} made MNIST-style"
    x, small = features.preprocess(im, size, loaded.mean, loaded.std, ch)
    return x, small, f"{image_digest(im)}|{size}|{ch}", f"{current_label()} at {size}x{size}"


def _param_widgets(method: str, size: int) -> tuple:
    spec = attribution.METHODS[method]
    vals = attribution.defaults(method, size)
    if not spec.params:
        return ()
    cols = st.columns(len(spec.params))
    for col, p in zip(cols, spec.params):
        key = f"at_p_{method}_{p.key}"
        if p.options:
            vals[p.key] = col.selectbox(p.label, p.options, index=p.options.index(vals[p.key]), key=key, help=p.help)
        else:
            lo, hi = int(p.lo) if p.step >= 1 else p.lo, int(p.hi) if p.step >= 1 else p.hi
            default = min(max(vals[p.key], lo), hi)
            vals[p.key] = col.slider(p.label, lo, hi, default, p.step if p.step < 1 else int(p.step), key=key,
                                     help=p.help)
    return tuple(sorted(vals.items()))


# ---------------------------------------------------------------- tabs
def methods_tab(loaded, mkey: str, digest: str, x, small, target: int, layer: str, params: dict) -> None:
    chosen = st.multiselect("Methods", METHODS, default=METHODS, key="at_methods")
    bar = st.progress(0.0, text="Computing the maps...")
    maps: dict[str, attribution.Attribution] = {}
    for i, m in enumerate(chosen):
        bar.progress(i / max(len(chosen), 1), text=f"{m} ({i + 1} of {len(chosen)})...")
        maps[m] = _attr(mkey, digest, m, target, layer, params[m], loaded, x)
    bar.empty()
    cls = loaded.classes[target]
    drawn = dict(zip(chosen, _overlays((mkey, digest, target, layer, tuple(chosen), tuple(params[m] for m in chosen)),
                                       small, tuple(maps[m].map for m in chosen))))
    for row in range(0, len(chosen), 4):
        for col, m in zip(st.columns(4), chosen[row:row + 4]):
            a = maps[m]
            top = float(np.sort(a.map.flatten().numpy())[::-1][: max(1, a.map.numel() // 10)].sum()
                        / max(float(a.map.sum()), 1e-12))
            col.image(**picture(drawn[m], width="stretch"))
            where = f" at `{layer}`" if attribution.METHODS[m].family == "CAM" else ""
            col.caption(f"**{m}**{where} for **{cls}** ({attribution.METHODS[m].library}), {a.seconds:.2f} s"
                        + (f"; the top 10% of pixels hold {top:.0%} of the map" if a.map.max() > 0
                           else "; all zeros: nothing positive here"))
    st.caption("Each map is scaled to its own maximum (purple 0, yellow 1) and drawn over the input. The CAM "
               "methods explain one layer's maps, upsampled; the others explain each input pixel.")
    with st.expander("What each method computes", icon=":material/help:"):
        for m in chosen:
            st.markdown(f"- **{m}** ({attribution.METHODS[m].library}): {attribution.METHODS[m].about}")

    st.subheader("Faithfulness: deletion and insertion")
    rows, fig_d, fig_i = _faith_figures((mkey, digest, target, layer, tuple(chosen), tuple(params[m] for m in chosen)),
                                        cls, loaded, x, maps)
    if rows:
        c1, c2, c3 = st.columns([1, 1, 1])
        c1.plotly_chart(fig_d, width="stretch", key="at_deletion")
        c2.plotly_chart(fig_i, width="stretch", key="at_insertion")
        c3.dataframe(pd.DataFrame(rows), hide_index=True, key="at_auc", width="stretch",
                     column_config={k: st.column_config.NumberColumn(format="%.3f") for k in rows[0] if k != "method"})
        st.caption(f"Deletion: the most important pixels by each map are replaced by the mean colour, 1/32 of them "
                   f"at a time, and p({cls}) is measured; a faithful map makes it fall fast (small area). Insertion: "
                   f"they are put, in the same order, into a blurred copy; a faithful map makes it rise fast (large "
                   f"area). Dotted: the pixels in a random order, what a map that knows nothing scores. ↓: lower is "
                   f"better, ↑: higher is better.")


@st.cache_resource(show_spinner=False, max_entries=32)
def _faith_figures(key: tuple, cls: str, _loaded, _x, _maps: dict):
    """The deletion/insertion curves and their table, built once per (weights, image, class, layer,
    methods, parameters): `key` is (model key, digest, target, layer, methods, their parameters)."""
    mkey, digest, target, layer, chosen, params = key
    rows, fig_d, fig_i = [], go.Figure(), go.Figure()
    for m, pm in zip(chosen, params):
        f = _faith(mkey, digest, m, target, layer, pm, _loaded, _x, _maps[m].map)
        rows.append({"method": m, "deletion AUC ↓": f.deletion_auc,
                     "insertion AUC ↑": f.insertion_auc})
        fig_d.add_scatter(x=f.fractions, y=f.deletion, name=m, mode="lines")
        fig_i.add_scatter(x=f.fractions, y=f.insertion, name=m, mode="lines")
    if rows:
        fig_d.add_scatter(x=f.fractions, y=f.deletion_random, name="random order", line=dict(dash="dot", color="gray"))
        fig_i.add_scatter(x=f.fractions, y=f.insertion_random, name="random order", line=dict(dash="dot", color="gray"))
        rows.append({"method": "random order", "deletion AUC ↓": float(np.trapezoid(
            f.deletion_random, f.fractions)), "insertion AUC ↑": float(np.trapezoid(
                f.insertion_random, f.fractions))})
        for fig, what in ((fig_d, "deleted"), (fig_i, "inserted")):
            fig.update_layout(height=380, margin=dict(l=10, r=10, t=30, b=10), title=f"pixels {what}, most important first",
                              xaxis_title=f"fraction of pixels {what}", yaxis_title=f"p({cls})", yaxis_range=[0, 1],
                              legend=dict(orientation="h", y=-0.25, font=dict(size=10)))
    return rows, fig_d, fig_i


def sanity_tab(loaded, mkey: str, digest: str, x, target: int, layer: str, params: dict) -> None:
    chosen = st.multiselect("Methods to check", METHODS, default=METHODS, key="at_sanity_methods")
    st.caption("Cascading randomisation: a copy of the model gets fresh random weights in its top layer, then the "
               "one below as well, and so on to the input; after each step every method's map is compared with "
               "the trained model's by Spearman rank correlation (1: the same ranking of pixels). A method "
               f"**fails** when, fully randomised, its map still correlates {attribution.SANITY_THRESHOLD} or more.")
    if not loaded.trained:
        st.info("These are random weights already: choose trained weights for the check to mean anything.",
                icon=":material/info:")
    key = (mkey, digest, target, layer, tuple(chosen))
    if st.button("Run the sanity check", key="at_sanity_run", icon=":material/science:", disabled=not chosen):
        st.session_state["at_sanity_key"] = key
    if st.session_state.get("at_sanity_key") != key:
        return
    res = _sanity(key + (tuple(params[m] for m in chosen),), loaded, x, target, layer, chosen, params)
    steps = ["trained"] + [g[0] + (f" (+{len(g) - 1})" if len(g) > 1 else "") for g in res.layers]
    fig = go.Figure()
    for m in chosen:
        fig.add_scatter(x=list(range(len(steps))), y=res.rho[m], name=m, mode="lines+markers")
    fig.add_hline(y=attribution.SANITY_THRESHOLD, line_dash="dot", line_color="gray")
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=10, b=10), yaxis_title="Spearman ρ to the trained map",
                      xaxis=dict(tickmode="array", tickvals=list(range(len(steps))), ticktext=steps, tickangle=-30))
    st.plotly_chart(fig, width="stretch", key="at_sanity_chart")
    st.caption(f"ρ after each step, for class **{loaded.classes[res.target]}**, {res.seconds:.1f} s in all. Step k has "
               "re-initialised the k layers from the top (a BatchNorm goes with the layer before it).")
    for m in chosen:
        ok = res.passes(m)
        st.markdown(f"{':green[**passes**]' if ok else ':red[**fails**]' if res.defined(m) else '**no verdict**'} "
                    f"**{m}**: {res.verdict(m).split(': ', 1)[1]}.")
        st.image(**picture(_strip(res.maps[m])), caption=f"{m}: left to right, the maps after each step ("
                 + ", ".join(f"{r:.2f}" for r in res.rho[m]) + ")")


def fool_tab(loaded, mkey: str, digest: str, x) -> None:
    if not loaded.trained:
        st.info("Choose trained weights: fooling random weights shows nothing.", icon=":material/info:")
        return
    c1, c2, c3 = st.columns([1, 2, 1])
    method = c1.radio("Attack", ["FGSM", "PGD"], key="at_attack", horizontal=True,
                      help="FGSM: one step of ε·sign(gradient). PGD: several smaller steps, each kept within ε.")
    eps = c2.slider("ε (pixel levels out of 255)", 0, 32, 8, key="at_eps",
                    help="Every pixel of every channel may change by at most this many levels.")
    steps = c3.slider("PGD steps", 1, 40, 10, key="at_steps", disabled=method != "PGD")
    _show_attack(loaded, mkey, digest, x, method, eps, steps, "at")
    st.subheader("The same attack on a digit")
    digit = _digit_case()
    if digit is not None:
        dl, dx, ddigest, what = digit
        st.caption(f"The shipped digits LeNet5 on {what}.")
        _show_attack(dl, "digits|" + dl.source, ddigest, dx, method, eps, steps, "at_digit")


def _digit_case():
    path = loading.shipped_for("lenet5").get("digits")
    if path is None:
        st.info("The digits LeNet5 is not shipped here.", icon=":material/info:")
        return None
    dl = load_weights(f"{SHIPPED['digits']}|lenet5|{path}", SHIPPED["digits"], "lenet5", 0, str(path), None)
    if is_drawing():
        prep = prepare_digit(current_image())
        if not prep.empty:
            dx, _ = features.digit_input(prep.pixels, dl.input_size, dl.mean, dl.std, dl.in_channels)
            return dl, dx, f"draw|{image_digest(current_image())}", "your drawing, made MNIST-style"
    images, labels, classes = _test_images("digits")
    from cnnviz.train.device_data import resize_uint8
    from cnnviz.train.evaluate import prepare_inputs

    dx = prepare_inputs(resize_uint8(images[:1], (dl.input_size, dl.input_size)), dl.mean, dl.std)
    return dl, dx, "digits-test-0", f"test digit #0 (a {classes[int(labels[0])]}; draw one in the sidebar to use yours)"


@st.cache_resource(show_spinner=False, max_entries=64)
def _sweep_figure(key: tuple, name: str, _sw):
    """The sweep's curve, built once per (weights, image, method, steps) = `key`."""
    fig = go.Figure(go.Scatter(x=_sw.epsilons, y=_sw.probs[:, _sw.pred_clean], mode="lines+markers"))
    fig.update_layout(height=200, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="ε (levels)",
                      yaxis_title=f"p({name})", yaxis_range=[0, 1])
    return fig


def _show_attack(loaded, mkey: str, digest: str, x, method: str, eps: int, steps: int, key: str) -> None:
    pixels = adversarial.denormalise(x[0], loaded.mean, loaded.std)
    a = _attack(mkey, digest, method, eps, steps, loaded, pixels)
    sw = _sweep(mkey, digest, method, steps, loaded, pixels)
    cl = loaded.classes
    c1, c2, c3 = st.columns(3)
    c1.image(**picture(_pic(a.clean), width="stretch"),
             caption=f"original: {cl[a.pred_clean]} ({float(a.probs_clean.max()):.1%})")
    c2.image(**picture(_pic(adversarial.amplified(a.delta)), width="stretch"),
             caption=f"the change, amplified: at most {a.linf_levels:.0f} of 255 levels per pixel (grey = none)")
    c3.image(**picture(_pic(a.adversarial), width="stretch"),
             caption=f"{method}, ε = {eps}/255: {cl[a.pred_adv]} ({float(a.probs_adv.max()):.1%})")
    t1, t2, t3 = st.columns([1, 1, 1.3])
    t1.dataframe(_top5(a.probs_clean, cl), hide_index=True, key=f"{key}_top_before", column_config={"probability": PROB})
    t2.dataframe(_top5(a.probs_adv, cl), hide_index=True, key=f"{key}_top_after", column_config={"probability": PROB})
    flip = sw.smallest_flip
    with t3:
        if a.flipped:
            st.markdown(f":red[**Fooled**]: {cl[a.pred_clean]} → **{cl[a.pred_adv]}**.")
        else:
            st.markdown(f"Still **{cl[a.pred_adv]}** at ε = {eps}.")
        st.metric("Smallest ε that flips it", f"{flip}/255" if flip is not None else f"none up to {sw.epsilons[-1]}",
                  help=f"{method} at every ε from 0 to {sw.epsilons[-1]} levels, batched.")
        st.plotly_chart(_sweep_figure((mkey, digest, method, steps), cl[sw.pred_clean], sw), width="stretch",
                        key=f"{key}_sweep")
    st.caption(f"Top-5 before (left) and after (right). The curve: the probability of the original class "
               f"{cl[sw.pred_clean]} as ε grows ({method}{f', {steps} steps' if method == 'PGD' else ''}).")


# ---------------------------------------------------------------- page body
picked = pick_weights("at", default=("lenet5", "cifar10"))
if picked.loaded is None:
    st.info(f"Choose weights to explain ({picked.why_none}).", icon=":material/info:")
    st.stop()
loaded = picked.loaded
if picked.kind == RANDOM:
    st.warning("Random weights: their maps explain nothing (useful only as the sanity check's end point).",
               icon=":material/warning:")
x, small, digest, what = _input(loaded, picked.dataset)
shape = (loaded.in_channels, loaded.input_size, loaded.input_size)
layers = _layers(picked.key, shape, loaded.model)
spatial = [li.name for li in layers if len(li.shape) == 4]
if not spatial:
    user_error("This model has no spatial layer: the CAM methods need one.")
    st.stop()
top = _predict(picked.key, digest, loaded, x)
c1, c2, c3 = st.columns([1, 1, 1.2])
c1.image(**picture(small.convert("RGB").resize((TILE, TILE), 0), width=TILE),
         caption=f"{what}: the model reads **{top[0][1]}** ({top[0][2]:.1%})")
target = c2.selectbox("Explain class", list(range(len(loaded.classes))), index=top[0][0], key=f"at_class_{loaded.name}",
                      format_func=lambda i: f"{loaded.classes[i]}" + (" (predicted)" if i == top[0][0] else ""))
default_layer = features.last_spatial_layer(layers) or spatial[-1]
layer = c3.selectbox("CAM layer", spatial, index=spatial.index(default_layer), key=f"at_layer_{loaded.name}",
                     help="Grad-CAM, Grad-CAM++, Score-CAM and Layer-CAM explain one layer's maps; the last "
                          "spatial one by default.")
with st.expander("Method parameters", icon=":material/tune:"):
    params = {}
    for m in METHODS:
        if attribution.METHODS[m].params:
            st.markdown(f"**{m}**")
        params[m] = _param_widgets(m, loaded.input_size)

tab_m, tab_s, tab_f = st.tabs(["Methods", "Sanity check", "Fool it"])
try:
    with tab_m:
        methods_tab(loaded, picked.key, digest, x, small, int(target), layer, params)
    with tab_s:
        sanity_tab(loaded, picked.key, digest, x, int(target), layer, params)
    with tab_f:
        fool_tab(loaded, picked.key, digest, x)
except (BudgetError, ValueError) as exc:
    user_error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
