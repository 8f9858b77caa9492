"""Architectures: any model layer by layer, the classics side by side, and their ideas worked through."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui.image_state import current_image, current_label, image_digest
from ui.layout import one_line, page_header, user_error
from ui.pictures import picture

page_header(
    "Architectures",
    "Every network here is a stack of the same few operations. Pick a model and an input size to see "
    "each layer's output shape, parameters and FLOPs, measured by running it once; compare the classic "
    "ImageNet networks side by side; check the idea each one introduced with real numbers; or design "
    "your own network layer by layer, checked shape by shape as you type.",
)

import torch  # noqa: E402  (after the header has painted)

from cnnviz import models  # noqa: E402
from cnnviz.images import display  # noqa: E402
from cnnviz.inspect import ideas  # noqa: E402
from cnnviz.inspect.summary import Summary, profile_figure, summarize  # noqa: E402

FLOP_NOTE = ("FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode`, which counts one "
             "multiply-add as **2 FLOPs**; MACs (multiply-accumulates) = FLOPs / 2. Only convolutions and "
             "matrix products are counted; ReLU, BatchNorm, pooling and additions add a little more.")
COMPARE = ["lenet5", "alexnet", "vgg16", "googlenet", "resnet18", "resnet50"]


def _fmt(n: float) -> str:
    for unit, k in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= k:
            return f"{n / k:.2f} {unit}"
    return f"{n:.0f}"


@st.cache_data(show_spinner=False, max_entries=24)
def _summary(name: str, size: int, channels: int, classes: int) -> Summary:
    torch.manual_seed(0)
    model = models.create(name, num_classes=classes, in_channels=channels)
    return summarize(model, (channels, size, size))


@st.cache_data(show_spinner=False, max_entries=2)
def _compare() -> list[dict]:
    rows = []
    for name in COMPARE:
        info = models.info(name)
        # The meta device runs the real forward code on shapes only: same counts, no arithmetic.
        with torch.device("meta"):
            model = models.create(name, num_classes=1000 if info.input_size == 224 else 10)
        s = summarize(model, (3, info.input_size, info.input_size), device="meta")
        rows.append({"model": name, "year": info.year, "depth": info.depth,
                     "input": f"{info.in_channels}x{info.input_size}x{info.input_size}",
                     "parameters": s.total_params, "GFLOPs": s.total_flops / 1e9, "idea": info.idea})
    return rows


@st.cache_resource(show_spinner=False, max_entries=24)
def _profile(name: str, size: int, channels: int, classes: int):
    """The depth profile figure of a model (building a plotly figure costs more than drawing it);
    shared, never modified: st.plotly_chart only reads it."""
    return profile_figure(_summary(name, size, channels, classes))


@st.cache_resource(show_spinner=False, max_entries=1)
def _compare_figure():
    import plotly.graph_objects as go

    rows = _compare()
    fig = go.Figure(go.Scatter(
        x=[r["parameters"] / 1e6 for r in rows], y=[r["GFLOPs"] for r in rows], text=[r["model"] for r in rows],
        mode="markers+text", textposition="top center", marker={"size": 12, "color": "#21918c"},
        hovertemplate="%{text}<br>%{x:.2f} M parameters<br>%{y:.2f} GFLOPs<extra></extra>"))
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"title": "parameters (millions, log scale)", "type": "log", "dtick": 1},
                      yaxis={"title": "GFLOPs per image (log scale)", "type": "log", "dtick": 1})
    return fig


@st.cache_data(show_spinner=False, max_entries=16)
def _stacked(c: int) -> list:
    return [ideas.stacked_vs_single(c, 2), ideas.stacked_vs_single(c, 3)]


@st.cache_data(show_spinner=False, max_entries=16)
def _one_by_one(c_in: int, c_out: int, size: int) -> ideas.OneByOne:
    """The 1x1 conv's shapes and counts: one forward pass per (C in, C out), not one per rerun."""
    return ideas.one_by_one(c_in, c_out, size)


@st.cache_data(show_spinner=False, max_entries=2)
def _inception(size: int) -> ideas.InceptionDemo:
    """The Inception block's branches: the same for everyone, so computed once per process."""
    return ideas.inception_block(size)


@st.cache_data(show_spinner=False, max_entries=16)
def _residual(digest: str, seed: int, _small) -> tuple[int, ideas.ResidualPictures]:
    """The residual block on the (thumbnailed) image, keyed by the image's digest and the seed:
    a rerun that changed neither runs no forward pass."""
    res = ideas.residual_maps(display.pil_to_tensor(_small), seed)
    return res.params, ideas.residual_pictures(res)


tab_layers, tab_compare, tab_ideas, tab_design = st.tabs(
    ["Layer by layer", "The classics side by side", "The ideas, worked", "Design your own"])

# ---- layer by layer ------------------------------------------------------------------------
with tab_layers:
    c1, c2, c3, c4 = st.columns([1.4, 1, 1, 1])
    name = c1.selectbox("Model", models.names(), key="arch_model",
                        format_func=lambda n: f"{n} ({models.info(n).family}, {models.info(n).year})")
    info = models.info(name)
    size = c2.number_input("Input size (px)", min_value=8, max_value=512, value=info.input_size, step=8,
                           key=f"arch_size_{name}", help=f"{name} expects {info.input_size} px.")
    channels = c3.number_input("Input channels", min_value=1, max_value=4, value=info.in_channels,
                               key=f"arch_channels_{name}")
    classes = c4.number_input("Classes", min_value=1, max_value=1000, value=1000 if info.input_size == 224 else 10,
                              key=f"arch_classes_{name}")
    st.caption(f"**{name}**: {info.description} *Idea:* {info.idea}")
    summ = None
    try:
        with st.spinner(f"Building {name} and running one {channels}x{size}x{size} input through it..."):
            summ = _summary(name, int(size), int(channels), int(classes))
    except (RuntimeError, ValueError) as exc:
        user_error(f"{name} cannot take a {channels}x{size}x{size} input: {one_line(exc)[:200]}. "
                   f"It expects {info.in_channels}x{info.input_size}x{info.input_size}.")
    if summ is not None:
        m1, m2, m3, m4, m5 = st.columns(5)
        m1.metric("Parameters", f"{summ.total_params:,}")
        m2.metric("FLOPs", _fmt(summ.total_flops), help=FLOP_NOTE)
        m3.metric("MACs", _fmt(summ.total_macs), help="multiply-accumulates = FLOPs / 2")
        m4.metric("Weights (float32)", f"{summ.param_bytes / 2**20:.1f} MB")
        m5.metric("Layers listed", len(summ.rows))
        st.caption(FLOP_NOTE)
        df = pd.DataFrame(summ.records())[["name", "type", "output_shape", "params", "flops", "macs"]]
        st.dataframe(
            df, hide_index=True, height=min(420, 35 * (len(df) + 1) + 3), key="arch_table", width="stretch",
            column_config={
                "name": st.column_config.TextColumn("layer"),
                "output_shape": st.column_config.TextColumn("output (C x H x W)"),
                "params": st.column_config.NumberColumn("parameters", format="localized"),
                "flops": st.column_config.NumberColumn("FLOPs", format="localized"),
                "macs": st.column_config.NumberColumn("MACs", format="localized"),
            },
        )
        st.caption(f"Every leaf layer of {name} in the order the forward pass calls it, for a batch of one "
                   f"{channels}x{size}x{size} input (output {' x '.join(map(str, summ.output_shape[1:]))}). "
                   "A module used twice (e.g. torchvision's shared ReLU) appears again, its parameters "
                   f"counted once: the column sums to {summ.total_params:,}.")
        st.plotly_chart(_profile(name, int(size), int(channels), int(classes)), width="stretch", key="arch_profile")
        st.caption(f"How the picture changes with depth in {name}: the spatial size (top, from the "
                   f"{size}x{size} input) shrinks at every stride or pooling while the channel count (bottom) "
                   "grows: fewer positions, more kinds of feature. Only layers with a spatial output are "
                   "plotted; hover for names.")

# ---- side by side -------------------------------------------------------------------------
with tab_compare:
    rows = _compare()
    st.table(pd.DataFrame([{"model": r["model"], "year": str(r["year"]), "depth": r["depth"], "input": r["input"],
                            "parameters": f"{r['parameters']:,}", "GFLOPs": f"{r['GFLOPs']:.2f}",
                            "the idea it introduced": r["idea"]} for r in rows]).set_index("model"))
    st.caption("The tutorial's classic networks. Parameters and FLOPs (1 multiply-add = 2 FLOPs) for one image at "
               "each model's own input size, the ImageNet models with 1000 classes, LeNet5 with 10. Depth counts "
               "weight layers on the longest path, as the papers do (the tutorial's LeNet5 has 4). Measured by "
               "FlopCounterMode on a shape-only (`meta` device) forward of the real torchvision models: the same "
               "counts as a real run, without allocating a single weight.")
    st.plotly_chart(_compare_figure(), width="stretch", key="arch_compare_fig")
    st.caption("Size vs cost, one dot per model: VGG-16 has the most of both; AlexNet's parameters sit mostly in "
               "its fully connected layers (cheap to run, costly to store); GoogLeNet and ResNet-50 go deep with "
               "1x1 convolutions, so they cost far fewer parameters per layer.")

# ---- the ideas ----------------------------------------------------------------------------
with tab_ideas:
    st.subheader("Stacked 3x3 kernels vs one larger kernel (VGG)")
    c = st.columns([1, 3])[0].number_input("Channels C (in = out)", min_value=1, max_value=1024, value=64,
                                           key="arch_idea_c")
    comps = _stacked(int(c))
    st.dataframe(pd.DataFrame([{
        "compare": f"{k.n_stacked} x (3x3)  vs  1 x ({k.big_kernel}x{k.big_kernel})",
        "receptive field": f"{k.rf_stacked} px vs {k.rf_big} px",
        "weights": f"{k.n_stacked}*9*C^2 = {k.weights_stacked:,}  vs  {k.big_kernel ** 2}*C^2 = {k.weights_big:,}",
        "saving": f"{1 - k.weights_stacked / k.weights_big:.0%}",
        "ReLUs in between": f"{k.nonlinearities_stacked} vs 0",
    } for k in comps]), hide_index=True, key="arch_idea_kernels")
    st.caption(f"Measured on real layers with C = {c}: the same receptive field for 28% fewer weights (5x5) or "
               "45% fewer (7x7), and extra non-linearities in between. (The tutorial's notes read \"small "
               "windows (33) beat large windows (33)\": the multiplication signs got lost; the large windows "
               "are the 5x5 and 7x7 kernels that stacked 3x3s replace.)")

    st.subheader("A 1x1 convolution changes the channel count")
    a, b, _ = st.columns([1, 1, 2])
    c_in = a.number_input("C in", 1, 2048, 256, key="arch_idea_cin")
    c_out = b.number_input("C out", 1, 2048, 64, key="arch_idea_cout")
    o = _one_by_one(int(c_in), int(c_out), 28)
    st.markdown(f"`{tuple(o.in_shape)}` → **1x1 conv** → `{tuple(o.out_shape)}`: {o.c_in}x{o.c_out} weights + "
                f"{o.c_out} biases = **{o.params:,} parameters**, {_fmt(o.flops)}FLOPs on a 28x28 map. Spatial "
                "size is untouched; each output pixel mixes the C_in values at the same position. GoogLeNet "
                "and ResNet-50 put one before every expensive 3x3/5x5 conv to cut its input channels.")

    st.subheader("An Inception block: parallel branches, concatenated (GoogLeNet)")
    inc = _inception(28)
    st.dataframe(pd.DataFrame([{"branch": n, "what it does": what, "output": " x ".join(map(str, shp[1:])),
                                "parameters": p} for n, what, shp, p in inc.branches]
                              + [{"branch": "concat", "what it does": "stack the four outputs along channels",
                                  "output": " x ".join(map(str, inc.out_shape[1:])), "parameters": inc.params}]),
                 hide_index=True, key="arch_idea_inception",
                 column_config={"parameters": st.column_config.NumberColumn(format="localized")})
    st.caption(f"torchvision's GoogLeNet block 3a on a {' x '.join(map(str, inc.in_shape[1:]))} input: four "
               "branches see the same input with different kernel sizes, keep the spatial size, and their "
               f"channels add up: 64 + 128 + 32 + 32 = {inc.out_shape[1]}. Checked: concatenating the branches "
               "equals the block's output.")

    st.subheader("A residual block: x, F(x) and F(x) + x (ResNet)")
    im = current_image()
    seed = st.columns([1, 3])[0].number_input("Seed for the block's random weights", 0, 9999, 0, key="arch_idea_seed")
    small = im.copy()
    small.thumbnail((128, 128))
    res_params, pics = _residual(image_digest(small), int(seed), small)
    cols = st.columns(4)
    shown = [("x: the block's input", pics.x),
             (f"F(x): the change (grey = 0, full scale ±{pics.fx_limit:.2f})", pics.fx),
             ("F(x) + x", pics.sum),
             ("relu(F(x) + x): the block's output", pics.out)]
    for col, (title, pic) in zip(cols, shown):
        col.image(**picture(display.upscale_nearest(pic, 200), width="stretch"), caption=title)
    st.caption(f"The tutorial's ResBlk (3 -> 3 channels, so the shortcut is x itself; {res_params} parameters, "
               f"seed {seed}) on {current_label()} ({small.width}x{small.height}), shown as RGB pictures. "
               f"The branch F(x) = BN(conv(ReLU(BN(conv(x))))) is small next to x (mean |F(x)| = "
               f"{pics.fx_mean_abs:.3f} vs mean |x| = {pics.x_mean_abs:.3f}), so F(x) + x is the image, slightly "
               f"changed; the ReLU then zeroes the {pics.negative:.1%} of values below 0. The block only has to "
               "learn the change; x passes through the shortcut untouched, which is why very deep ResNets "
               "still train.")

# ---- design your own -------------------------------------------------------------------------
with tab_design:
    from ui import design_editor

    design_editor.render()
