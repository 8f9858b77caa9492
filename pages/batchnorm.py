"""BatchNorm: a batch of images through a conv layer into nn.BatchNorm2d, every number shown."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui.image_state import current_image, current_label, image_digest
from ui.layout import page_header, user_error
from ui.pictures import picture

page_header(
    "BatchNorm",
    "Batch normalisation rescales each channel of a layer's output to mean 0 and variance 1 *over the "
    "batch*, then lets the network pick its own scale γ and shift β. During training it also keeps "
    "running averages of the statistics, which it uses instead at inference (eval mode). Here a batch of "
    "images goes through a fixed random conv layer into `nn.BatchNorm2d`.",
)

import plotly.graph_objects as go  # noqa: E402
import torch  # noqa: E402
from plotly.subplots import make_subplots  # noqa: E402

from cnnviz import images  # noqa: E402
from cnnviz.ops import OpError, batchnorm, previews  # noqa: E402

COLOURS = ["#d62728", "#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


@st.cache_resource(show_spinner=False)
def _sample_images() -> dict:
    return {s.title: images.prepare(images.load_image(s.path), max_side=256) for s in images.samples()}


@st.cache_resource(show_spinner=False, max_entries=4)
def _features(key: tuple, size: int, crops: int, seed: int, channels: int, _ims: list):
    batch = batchnorm.make_batch(_ims, size=size, crops_per_image=crops, seed=seed)
    feats = batchnorm.conv_features(batch, channels=channels, seed=seed)
    return batch, feats, previews.image_grid(batch, cols=12, cell=56)


@st.cache_resource(show_spinner=False, max_entries=6)
def _bn(key: tuple, settings_key: tuple, passes: int, _feats: torch.Tensor, _settings: batchnorm.BNSettings):
    return batchnorm.train_then_eval(_feats, _settings, passes)


@st.cache_resource(show_spinner=False, max_entries=8)
def _hist_figure(key: tuple, channels: int, _feats: torch.Tensor, _res):
    """Before/after histograms, built once per (batch, layer settings, passes) = `key`."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Before BatchNorm (conv output)", "After BatchNorm (train mode)"))
    for c in range(channels):
        for j, t in enumerate((_feats[:, c], _res.y_train[:, c])):
            counts, edges = batchnorm.histogram(t, bins=40)
            fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=edges[1] - edges[0], opacity=0.55,
                                 marker_color=COLOURS[c % len(COLOURS)], name=f"channel {c}", legendgroup=str(c),
                                 showlegend=j == 0), row=1, col=j + 1)
    fig.update_layout(barmode="overlay", height=330, margin=dict(l=10, r=10, t=40, b=10), bargap=0)
    fig.update_xaxes(title_text="value")
    fig.update_yaxes(title_text="count", col=1)
    return fig


@st.cache_resource(show_spinner=False, max_entries=8)
def _running_figure(key: tuple, channels: int, wc: int, _res):
    """running_mean per pass, built once per (batch, layer settings, passes) = `key` and followed channel."""
    line = go.Figure()
    xs = [0] + [p.index for p in _res.passes]
    for c in range(channels):
        ys = [float(_res.initial_mean[c])] + [float(p.running_mean[c]) for p in _res.passes]
        line.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"running_mean[{c}]",
                                  line=dict(color=COLOURS[c % len(COLOURS)], width=3 if c == wc else 1.5)))
        line.add_hline(y=float(_res.before.mean[c]), line_dash="dot", line_color=COLOURS[c % len(COLOURS)],
                       opacity=0.6)
    line.update_layout(height=320, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="train-mode pass",
                       yaxis_title="running_mean")
    return line


im = current_image()
label = current_label()
digest = image_digest(im)
samples = _sample_images()

# ---- the batch ---------------------------------------------------------------------------------
st.subheader("The batch", divider="gray")
b1, b2, b3, b4 = st.columns([2, 1, 1, 1])
others = [t for t in samples if t != label]
chosen = b1.multiselect("Other images in the batch", others, default=others, key="bn_others",
                        help="The sidebar image is always first; add or remove the shipped samples.")
crops = b2.slider("Augmented crops per image", 0, 4, 2, key="bn_crops",
                  help="Random resized crops with random flips (seeded), each a new batch member.")
size = b3.select_slider("Image size", [8, 16, 24, 32, 48, 64], value=32, key="bn_size",
                        help="Every batch member is resized to size×size.")
seed = b4.number_input("Seed", 0, 9999, 0, key="bn_seed", help="Seeds the crops and the conv weights.")
channels = b4.slider("Conv channels C", 1, 8, 4, key="bn_channels")
ims = [im] + [samples[t] for t in chosen]
fkey = (digest, tuple(chosen))
try:
    with st.spinner("Building the batch…"):
        batch, feats, sheet = _features(fkey, int(size), int(crops), int(seed), int(channels), ims)
except OpError as exc:
    user_error(str(exc))
    st.stop()
N = batch.shape[0]
st.image(**picture(sheet), caption=(
    f"The batch: {N} image{'s' if N > 1 else ''} of {size}×{size} ({len(ims)} image{'s' if len(ims) > 1 else ''} × "
    f"(1 resized + {crops} crops)), first one {label}. Tensor {tuple(batch.shape)} → "
    f"nn.Conv2d(3, {channels}, 3, padding=1), seeded with {seed} → features {tuple(feats.shape)}, "
    "BatchNorm's input."))

# ---- the layer --------------------------------------------------------------------------------
st.subheader("The layer", divider="gray")
l1, l2, l3, l4 = st.columns(4)
eps = l1.select_slider("eps", [1e-8, 1e-5, 1e-3, 1e-2, 0.1, 1.0], value=1e-5, key="bn_eps",
                       format_func=lambda v: f"{v:g}", help="Added to the variance before the square root.")
cma = l2.checkbox("momentum=None", value=False, key="bn_cma",
                  help="Cumulative average: running stats become the plain average of all batches so far (factor 1/t).")
momentum = l2.slider("momentum", 0.0, 1.0, 0.1, 0.01, key="bn_momentum", disabled=cma)
affine = l3.checkbox("affine (learnable γ, β)", value=True, key="bn_affine")
track = l3.checkbox("track_running_stats", value=True, key="bn_track")
passes = l4.slider("Train-mode passes k", 1, 50, 10, key="bn_passes",
                   help="Forward passes of the same batch in train mode before switching to eval.")
gammas, betas = [], []
if affine:
    with st.expander("Per-channel γ (weight) and β (bias)", expanded=True):
        gcols = st.columns(min(channels, 4))
        for c in range(channels):
            col = gcols[c % len(gcols)]
            gammas.append(col.slider(f"γ channel {c}", -3.0, 3.0, 1.0, 0.1, key=f"bn_gamma_{c}"))
            betas.append(col.slider(f"β channel {c}", -3.0, 3.0, 0.0, 0.1, key=f"bn_beta_{c}"))
settings = batchnorm.BNSettings(eps=float(eps), momentum=None if cma else float(momentum), affine=affine,
                                track_running_stats=track, gamma=gammas or None, beta=betas or None)
skey = (settings.eps, settings.momentum, affine, track, tuple(gammas), tuple(betas))
rkey = ((fkey, size, crops, seed, channels), skey, int(passes))
try:
    res = _bn(*rkey, feats, settings)
except OpError as exc:
    user_error(str(exc))
    st.stop()
layer = res.layer
st.markdown(f"`nn.BatchNorm2d({channels}, eps={eps:g}, momentum={settings.momentum}, affine={affine}, "
            f"track_running_stats={track})`")

# ---- statistics -------------------------------------------------------------------------------
st.subheader("Per-channel statistics, before and after", divider="gray")
st.dataframe(pd.DataFrame(batchnorm.stats_rows(res)).set_index("channel").style.format("{:.4f}"),
             key="bn_stats")
st.caption(f"Mean and (biased) variance of each channel over all N·H·W = {res.before.count:,} values. In train mode "
           "the output has mean β and variance γ²·var/(var+eps) in each channel, whatever the input was; in eval "
           "mode it uses the running estimates instead, so it only gets there once they have converged.")

st.plotly_chart(_hist_figure(rkey, channels, feats, res), width="stretch", key="bn_hist")
st.caption("Histograms of every value per channel (40 bins each). Left: each channel has its own centre and "
           "spread; right: train-mode BatchNorm has moved each to centre β, spread |γ|.")

# ---- train vs eval ----------------------------------------------------------------------------
st.subheader("Train vs eval: the running statistics", divider="gray")
if not track:
    st.info("track_running_stats is off: the layer keeps no running statistics, so eval mode also normalises "
            "with the current batch's statistics and gives exactly the train-mode output.",
            icon=":material/info:")
else:
    wc = st.columns(4)[0].selectbox("Channel to follow", list(range(channels)), key="bn_follow")
    st.plotly_chart(_running_figure(rkey, channels, int(wc), res), width="stretch", key="bn_running")
    st.caption(f"running_mean of each channel after each of the {passes} passes (solid), starting at 0, moving "
               "toward that channel's batch mean (dotted).")
    p1 = res.passes[0]
    pk = res.passes[-1]
    prev_k = res.passes[-2] if len(res.passes) > 1 else None
    bm = float(res.before.mean[wc])
    bv = float(res.before.var_unbiased[wc])
    m_formula = "m = 1/t (cumulative average)" if layer.momentum is None else f"m = momentum = {layer.momentum:g}"
    st.markdown(f"Update after every train-mode pass, with {m_formula}:")
    st.latex(r"\text{running} \leftarrow (1-m)\cdot\text{running} + m\cdot\text{batch statistic}")
    lines = [
        "pass 1:  " + batchnorm.momentum_text(float(res.initial_mean[wc]), bm, float(p1.running_mean[wc]), p1.factor),
        "pass 1:  " + batchnorm.momentum_text(float(res.initial_var[wc]), bv, float(p1.running_var[wc]), p1.factor,
                                              "running_var"),
    ]
    if prev_k is not None:
        lines += [
            f"pass {pk.index}: " + batchnorm.momentum_text(float(prev_k.running_mean[wc]), bm,
                                                          float(pk.running_mean[wc]), pk.factor),
            f"pass {pk.index}: " + batchnorm.momentum_text(float(prev_k.running_var[wc]), bv,
                                                          float(pk.running_var[wc]), pk.factor, "running_var"),
        ]
    st.code("\n".join(lines), language=None)
    st.caption(f"Channel {wc}: batch mean {bm:.4f}, batch variance {bv:.4f} — the *unbiased* one (÷(n−1), n = "
               f"{res.before.count:,}) goes into running_var, while the normalisation itself divides by the "
               f"biased one ({float(res.before.var[wc]):.4f}). num_batches_tracked = {pk.num_batches_tracked}.")
e1, e2, e3 = st.columns(3)
e1.metric("max |train − eval| output", f"{res.max_abs_diff:.4f}")
e2.metric("mean |train − eval| output", f"{res.mean_abs_diff:.4f}")
if res.after_eval is not None:
    e3.metric("eval output: mean of channel means", f"{float(res.after_eval.mean.mean()):.4f}")
st.caption("Eval mode (`layer.eval()`) on the same batch normalises with running_mean/running_var instead of "
           "the batch's own statistics. After few passes (or a small momentum) the running estimates lag "
           "behind, so eval output differs from train output; with more passes the difference shrinks."
           if track else "Without running statistics train and eval mode compute the same thing.")

# ---- state and the formula --------------------------------------------------------------------
st.subheader("The layer's state", divider="gray")
state_rows = batchnorm.layer_state_rows(layer)
st.dataframe(pd.DataFrame(state_rows), hide_index=True, key="bn_state", height=35 * (len(state_rows) + 1) + 3)
with st.expander("The same as JSON"):
    st.json(batchnorm.layer_state(layer), expanded=3)
st.caption("What vars(layer) holds, made readable (the layer is now in eval mode): plain attributes (hyper-parameters and the training "
           "flag), _parameters (learned by backprop: weight = γ, bias = β) and _buffers (updated by forward "
           "passes, saved in the state_dict, never by the optimiser).")
st.subheader("The formula for one value", divider="gray")
f1, f2, f3, f4, f5 = st.columns([1, 1, 1, 1, 1.2])
pn = f1.number_input("image n", 0, N - 1, 0, key="bn_px_n")
pc = f2.number_input("channel c", 0, channels - 1, 0, key="bn_px_c")
ph = f3.number_input("row h", 0, size - 1, size // 2, key="bn_px_h")
pw = f4.number_input("col w", 0, size - 1, size // 2, key="bn_px_w")
pmode = f5.radio("mode", ["train", "eval"], key="bn_px_mode")
wp = batchnorm.worked_pixel(feats, res, int(pn), int(pc), int(ph), int(pw), pmode)
st.latex(r"y = \gamma \cdot \frac{x - \mu}{\sqrt{\sigma^2 + \varepsilon}} + \beta")
st.code(wp.text, language=None)
src = ("the batch statistics (biased variance)" if pmode == "train" or not track
       else "running_mean and running_var")
ok = abs(wp.y - wp.y_torch) < 1e-4 * max(1.0, abs(wp.y_torch))
st.success(f"By hand: **{wp.y:.6f}**; nn.BatchNorm2d in {pmode} mode: **{wp.y_torch:.6f}**"
           + (" — the same." if ok else " — they differ beyond float rounding."), icon=":material/calculate:")
st.caption(f"x = features[{pn}, {pc}, {ph}, {pw}]; μ and σ² are {src} of channel {pc}.")
