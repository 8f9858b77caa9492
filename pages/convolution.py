"""Convolution and weight sharing: one kernel on your image, the numbers behind every pixel."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui.image_state import current_image, current_label
from ui.layout import page_header, user_error
from ui.pictures import picture

page_header(
    "Convolution and weight sharing",
    "A convolution slides one small grid of weights (the **kernel**) over the image and, at every "
    "position, multiplies the pixels under it by the weights and adds them up. Pick a preset or type "
    "your own weights, change stride, padding and dilation, and see the output size, the parameter "
    "count, and the exact sum behind any output pixel.",
)

import torch  # noqa: E402  (after the header has painted)

from cnnviz.images import display  # noqa: E402
from ui.tensors import input_tensor  # noqa: E402
from cnnviz.ops import OpError, conv, kernels, previews  # noqa: E402


@st.cache_resource(show_spinner=False, max_entries=6)
def _convolve(digest: str, kernel: tuple, stride: int, padding: int, mode: str, dilation: int, bias: float,
              gray: bool, _x: torch.Tensor):
    res = conv.convolve(_x, torch.tensor(kernel, dtype=torch.float32), stride=stride, padding=padding,
                        padding_mode=mode, dilation=dilation, bias=bias, grayscale=gray)
    out = res.output
    scale = previews.display_scale([tuple(res.input.shape[1:]), tuple(out.shape[1:])])
    mean_map = out.mean(0)
    return {
        "res": res,
        "scale": scale,
        "in_img": previews.to_image(res.input, scale),
        "out_img": previews.to_image(out, scale),
        "signed": previews.to_signed(mean_map, scale),
        "min": float(out.min()), "max": float(out.max()),
        "neg": previews.percent(out < 0), "over": previews.percent(out > 1),
        "abs_max": float(mean_map.abs().max()),
    }


im = current_image()
label = current_label()
x, digest = input_tensor(im)
H, W = x.shape[1:]

# ---- controls ------------------------------------------------------------------------------
c1, c2, c3 = st.columns([1.1, 1.2, 1.0], gap="large")
with c1:
    st.subheader("Kernel", divider="gray")
    preset = st.selectbox("Preset", kernels.PRESETS, index=kernels.PRESETS.index("sobel x"), key="conv_preset",
                          help="Choosing a preset (or a size) refills the grid below; then edit any cell.")
    k = st.select_slider("Kernel size k", options=list(range(kernels.MIN_SIZE, kernels.MAX_SIZE + 1)), value=3,
                         key="conv_k", help="Odd and even sizes both work; an even kernel's centre is (k//2, k//2).")
    st.caption(f"**{preset}**: {kernels.describe(preset)}")
with c2:
    st.subheader("Layer", divider="gray")
    a, b = st.columns(2)
    stride = a.slider("Stride s", 1, 8, 1, key="conv_stride")
    dilation = b.slider("Dilation d", 1, 6, 1, key="conv_dilation",
                        help="Gaps between kernel taps: the kernel covers d·(k−1)+1 pixels.")
    padding = a.slider("Padding p", 0, 10, 1, key="conv_padding")
    pad_mode = b.selectbox("Padding mode", conv.PADDING_MODES, key="conv_pad_mode",
                           help="What the kernel sees beyond the border: 0, a mirror, the edge pixel, or "
                                "the opposite side (wrap-around).")
with c3:
    st.subheader("Channels", divider="gray")
    apply = st.radio("Apply to", ["Each RGB channel (depthwise)", "Grayscale"], key="conv_apply",
                     help="Depthwise: the same kernel runs on R, G and B separately (groups=3).")
    bias = st.number_input("Bias", -2.0, 2.0, 0.0, 0.05, key="conv_bias", format="%.2f",
                           help="Added to every output value.")
gray = apply == "Grayscale"

base = kernels.make(preset, k)
editor_key = f"conv_grid_{preset}_{k}"
grid = st.data_editor(
    pd.DataFrame(base.numpy().round(4), columns=[str(j) for j in range(k)]),
    key=editor_key, hide_index=False, width=min(90 + 80 * k, 700),
    column_config={str(j): st.column_config.NumberColumn(str(j), format="%.4g", step=0.01) for j in range(k)},
)
try:
    kernel_vals = tuple(tuple(float(v) for v in row) for row in grid.fillna(0.0).to_numpy().tolist())
except (TypeError, ValueError):
    user_error("Every kernel cell must be a number; showing the preset instead.")
    kernel_vals = tuple(tuple(float(v) for v in row) for row in base.tolist())
edited = kernel_vals != tuple(tuple(float(v) for v in row) for row in base.numpy().round(4).tolist())
ksum = sum(map(sum, kernel_vals))
st.caption(f"The {k}×{k} kernel{' (edited)' if edited else ''}: weights sum to **{ksum:.4g}** "
           f"({'keeps' if abs(ksum - 1) < 1e-6 else 'scales'} the average brightness"
           f"{'; flat areas go to 0' if abs(ksum) < 1e-6 else ''}). Row = kernel row, column = kernel column; "
           "PyTorch (like every CNN library) does not flip the kernel: this is cross-correlation.")

# ---- run -----------------------------------------------------------------------------------
try:
    with st.spinner("Convolving…"):
        out = _convolve(digest, kernel_vals, stride, padding, pad_mode, dilation, float(bias), gray, x)
except OpError as exc:
    user_error(str(exc))
    st.stop()
res = out["res"]
Ho, Wo = res.output.shape[1:]
C = res.input.shape[0]
scale = out["scale"]
scale_note = (f"shown at {scale:.0%} (downsampled for display; the conv ran at full size)" if scale < 1
              else f"each pixel drawn {scale:g}×{scale:g}" if scale > 1 else "shown 1:1")

st.subheader("Input and output at the same scale", divider="gray")
i1, i2, i3 = st.columns(3)
i1.image(**picture(out["in_img"]), caption=f"Input: {label}, {'grayscale' if gray else 'RGB'}, tensor {res.in_shape}; {scale_note}.")
i2.image(**picture(out["out_img"]), caption=(
    f"Output, tensor {res.out_shape}: values from {out['min']:.3f} to {out['max']:.3f}, shown clamped to [0, 1] "
    f"({out['neg']:.1f}% below 0 shown black, {out['over']:.1f}% above 1 shown white)."))
i3.image(**picture(out["signed"]), caption=(
    f"Signed view of the output{' (mean of the 3 channels)' if C == 3 else ''}: blue < 0 < red, white = 0, "
    f"colour limit ±{out['abs_max']:.3f}. Negative values are where the kernel found the opposite pattern."))

st.subheader("Output size", divider="gray")
st.latex(r"H_{out} = \left\lfloor \frac{H + 2p - d\,(k-1) - 1}{s} \right\rfloor + 1")
st.markdown(f"`{conv.formula_text(H, k, stride, padding, dilation, 'H')}`  \n"
            f"`{conv.formula_text(W, k, stride, padding, dilation, 'W')}`")
st.caption(f"The kernel spans d·(k−1)+1 = {dilation * (k - 1) + 1} px; PyTorch's output is {Ho}×{Wo}, "
           "the same as the formula.")

st.subheader("Weight sharing", divider="gray")
pc = conv.param_count(k, C, C, (H, W), (Ho, Wo), groups=C, bias=True)
full = conv.param_count(k, C, C, (H, W), (Ho, Wo), groups=1, bias=True)
m1, m2, m3 = st.columns(3)
m1.metric("Parameters of this conv layer", f"{pc.conv_total:,}")
m2.metric("Dense layer, same input → same output", previews.human(pc.dense_total))
m3.metric("Dense needs this many times more", f"{previews.human(pc.ratio)}×")
st.caption(
    f"Conv: k·k·(C_in/groups)·C_out + bias = {pc.conv_formula} = {pc.conv_total:,}"
    + (f" (depthwise, groups={C}; a full {C}→{C} conv would need {full.conv_formula} = {full.conv_total:,})"
       if C > 1 else "")
    + f". Dense: (C_in·H·W)·(C_out·H_out·W_out) + bias = {pc.dense_formula} = {pc.dense_total:,}. "
    "The conv reuses the same few weights at every position; a dense layer needs one weight per input-output pair."
)

st.subheader("Receptive field: where one output pixel comes from", divider="gray")
r1, r2, r3 = st.columns(3)
oy = r1.number_input("Output row", 0, Ho - 1, Ho // 2, key="conv_rf_row")
ox = r2.number_input("Output column", 0, Wo - 1, Wo // 2, key="conv_rf_col")
ch_names = ["R", "G", "B"] if C == 3 else ["gray"]
ch = r3.selectbox("Channel", list(range(C)), format_func=lambda i: ch_names[i], key="conv_rf_ch")
try:
    rf = conv.receptive_field(res, int(oy), int(ox), int(ch))
except OpError as exc:
    user_error(str(exc))
    st.stop()
crop, top, left = conv.padded_crop(res, rf, margin=2)
cell = previews.cell_for(tuple(crop.shape[1:]))
zoom = previews.grid_image(crop, cell)
zoom = display.draw_boxes(zoom, [(rf.rows[0] - top, rf.cols[0] - left, rf.rows[-1] - top, rf.cols[-1] - left)],
                          scale=cell, width=3)
if dilation > 1:
    pts = [(r - top, c - left) for r in rf.rows for c in rf.cols]
    zoom = display.draw_dots(zoom, pts, cell)
whole = display.draw_boxes(out["in_img"], [rf.box], scale=scale, width=max(2, round(scale)))
ring = max(0.0, 8 / scale - (rf.rows[-1] - rf.rows[0]) / 2)  # a yellow ring so a tiny window stays findable
if ring > 1:
    t_, l_, b_, r_ = rf.box
    whole = display.draw_boxes(whole, [(t_ - ring, l_ - ring, b_ + ring, r_ + ring)], scale=scale,
                               colour=(255, 210, 0), width=2)
z1, z2 = st.columns([1, 1])
z1.image(**picture(whole), caption=f"Input with the {rf.rows[-1] - rf.rows[0] + 1}×{rf.cols[-1] - rf.cols[0] + 1} px "
         f"window (red{', ringed in yellow' if ring > 1 else ''}) that output pixel ({oy}, {ox}) reads: rows {rf.rows[0]}..{rf.rows[-1]}, "
         f"columns {rf.cols[0]}..{rf.cols[-1]}.")
z2.image(**picture(zoom), caption=(
    f"Zoomed ({cell} px per input pixel): the window with 2 px around it"
    + (f"; dots mark the {k * k} pixels the dilated kernel actually reads" if dilation > 1 else "")
    + (f". Part of it lies in the {pad_mode} padding outside the image." if rf.touches_padding else ".")))
cols_lbl = [str(c) for c in rf.cols]
t1, t2, t3 = st.columns(3)
t1.markdown(f"**Input values** (channel {ch_names[rf.channel]})")
t1.dataframe(pd.DataFrame(previews.table(rf.patch), index=rf.rows, columns=cols_lbl), key="conv_rf_patch")
t2.markdown("**× kernel**")
t2.dataframe(pd.DataFrame(previews.table(rf.kernel), columns=[str(j) for j in range(k)]), key="conv_rf_kernel")
t3.markdown("**= products**")
t3.dataframe(pd.DataFrame(previews.table(rf.products, 4), index=rf.rows, columns=cols_lbl), key="conv_rf_products")
match = abs(rf.total - rf.output) < 1e-4 * max(1.0, abs(rf.output))
st.success(
    f"Sum of the {k * k} products = {rf.total - rf.bias:.5f}; + bias {rf.bias:g} = **{rf.total:.5f}**. "
    f"PyTorch's output at ({oy}, {ox}) is **{rf.output:.5f}**"
    + (" — the same." if match else " — they differ (float rounding)."),
    icon=":material/calculate:",
)
st.caption("Row and column labels are input pixel coordinates; negative or ≥ the image size means padding.")
