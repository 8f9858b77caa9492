"""Upsample and pooling: every interpolation mode, a transposed conv, and four kinds of pooling."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui.image_state import current_image, current_label
from ui.layout import page_header, user_error

page_header(
    "Upsample and pooling",
    "Networks change resolution all the time: **upsampling** (interpolation or a transposed "
    "convolution) makes feature maps bigger, **pooling** makes them smaller by summarising each "
    "window. Zoom into a few pixels to see nearest-neighbour copy pixels, bilinear blend them, and "
    "max pooling keep one winner per window.",
)

import torch  # noqa: E402  (after the header has painted)

from cnnviz.images import display  # noqa: E402
from ui.pictures import picture  # noqa: E402
from ui.tensors import input_tensor  # noqa: E402
from cnnviz.ops import OpError, pool, resample, previews  # noqa: E402


@st.cache_resource(show_spinner=False, max_entries=3)  # outputs can be ~200 MB each: keep few
def _upsample(digest: str, mode: str, scale: float | None, size: tuple | None, align: bool, _x: torch.Tensor):
    res = resample.upsample(_x, mode, scale=scale, size=size, align_corners=align)
    return res, previews.to_image(res.output, previews.display_scale([tuple(res.output.shape[1:])], 720, 540))


@st.cache_resource(show_spinner=False, max_entries=2)
def _transposed(digest: str, factor: int, _x: torch.Tensor):
    res = resample.transposed_upsample(_x, factor)
    if res.output[0].numel() > resample.MAX_OUTPUT_PIXELS:
        raise OpError("the transposed conv output would be too big to show; pick a smaller factor")
    ref, _ = _upsample(digest, "bilinear", float(factor), None, False, _x)  # shared with the main view
    return res, resample.compare(res.output, ref.output)


@st.cache_resource(show_spinner=False, max_entries=6)
def _pool(digest: str, kind: str, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool,
          norm: float, out_hw: tuple, include_pad: bool, _x: torch.Tensor):
    res = pool.pool(_x, kind, kernel=kernel, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode,
                    norm_type=norm, output_hw=out_hw, count_include_pad=include_pad)
    scale = previews.display_scale([tuple(_x.shape[1:])], 480, 400)
    counts = pool.winner_counts(res.indices, tuple(_x.shape[1:])) if res.indices is not None else None
    return res, scale, previews.to_image(_x, scale), previews.to_image(res.output, scale), counts


@st.cache_resource(show_spinner=False, max_entries=4)
def _round_trip(key: tuple, mode: str, _x: torch.Tensor, _res):
    rt = pool.round_trip(_x, _res, mode)
    return rt, previews.to_image(rt.reconstruction, previews.display_scale([tuple(_x.shape[1:])], 480, 400))


def _shape(t: tuple) -> str:
    return "(" + ",".join(str(v) for v in t) + ")"


im = current_image()
label = current_label()
x, digest = input_tensor(im)
C, H, W = x.shape

# =========================================== upsample ========================================
def _upsample_tab() -> None:
    a, b, c = st.columns([1.2, 1.2, 1.0], gap="large")
    mode = a.selectbox("Interpolation mode", resample.MODES, index=resample.MODES.index("bilinear"), key="up_mode",
                       help="nearest copies the closest pixel; nearest-exact fixes nearest's half-pixel offset; "
                            "bilinear/bicubic blend 2×2 / 4×4 neighbours; area averages (meant for shrinking).")
    how = a.radio("Output size by", ["Scale factor", "Target size"], horizontal=True, key="up_how")
    if how == "Scale factor":
        factor = b.select_slider("Scale factor", [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0], value=2.0,
                                 key="up_scale")
        size = None
    else:
        th = b.number_input("Target height", 1, 8192, min(2 * H, 8192), key="up_th")
        tw = b.number_input("Target width", 1, 8192, min(2 * W, 8192), key="up_tw")
        factor, size = None, (int(th), int(tw))
    ac_ok = resample.uses_align_corners(mode)
    align = c.checkbox("align_corners", value=False, key="up_align", disabled=not ac_ok,
                       help="Only bilinear and bicubic take it. True pins the corner pixels' centres of input "
                            "and output together; False (default) treats pixels as areas.")
    if not ac_ok:
        c.caption(f"`align_corners` does not apply to {mode!r} (PyTorch only accepts it for the linear and "
                  "cubic modes).")
    try:
        up, up_img = _upsample(digest, mode, factor, size, align, x)
    except OpError as exc:
        user_error(str(exc))
        return
    Ho, Wo = up.out_shape[2:]
    st.markdown(f"**Shapes:** `{_shape(up.in_shape)} → {_shape(up.out_shape)}` &nbsp; · &nbsp; `{up.call}`")

    st.subheader("Zoomed crop: replication vs blending", divider="gray")
    z1, z2, z3 = st.columns(3)
    cy = z1.slider("Crop centre, down (%)", 0, 100, 35, key="up_cy") / 100
    cx = z2.slider("Crop centre, across (%)", 0, 100, 37, key="up_cx") / 100
    csize = z3.slider("Crop size (input px)", 3, 32, 8, key="up_csize")
    crop = previews.crop_around((H, W), cy, cx, csize)
    cell = previews.cell_for((crop.h, crop.w), 240)
    in_zoom = previews.grid_image(previews.crop_tensor(x, crop), cell)
    compare = "bilinear" if mode == "nearest" else "nearest"
    try:
        other, _ = _upsample(digest, compare, factor, size, False, x)
    except OpError:
        other = None
    g = st.columns(4)
    g[0].image(**picture(in_zoom), caption=f"Input crop: rows {crop.top}..{crop.top + crop.h - 1}, columns "
               f"{crop.left}..{crop.left + crop.w - 1} of the {H}×{W} input ({cell} px per pixel).")
    for col, res_ in ((g[1], up), (g[2], other)):
        if res_ is None:
            continue
        zoom, n_px, ocell = previews.zoom_same_area(res_.output, (H, W), crop, cell)
        tag = res_.mode + (" (align_corners=True)" if res_.align_corners else "")
        col.image(**picture(zoom), caption=f"{tag}: the same area of the {Ho}×{Wo} output ({n_px[0]}×{n_px[1]} px), "
                  f"at the same physical size ({ocell:g} px per output pixel)"
                  + (" — for comparison." if res_ is other else "."))
    # transposed conv for comparison
    t_factor = factor if factor is not None and float(factor).is_integer() and factor >= 1 else None
    tr = None
    if t_factor is None:
        g[3].info("The transposed convolution upsamples by a whole factor: pick a scale factor of 1, 2, 3, 4, 6 "
                  "or 8 to compare it.", icon=":material/info:")
    else:
        try:
            tr, (t_mse, t_max) = _transposed(digest, int(t_factor), x)
        except OpError as exc:
            g[3].warning(str(exc))
        else:
            zoom, n_px, ocell = previews.zoom_same_area(tr.output, (H, W), crop, cell)
            g[3].image(**picture(zoom), caption=f"Transposed conv ×{tr.factor} with fixed bilinear weights: the same area of "
                       f"its {tr.out_shape[2]}×{tr.out_shape[3]} output.")
    st.caption("Nearest copies each input pixel into a block of identical output pixels; bilinear and bicubic "
               "blend neighbours into smooth ramps (bicubic can overshoot, clamped to [0, 1] here); area "
               "averages, so when enlarging it behaves like nearest.")

    st.subheader("Whole output", divider="gray")
    o1, o2 = st.columns([2, 1])
    o1.image(**picture(up_img), caption=f"{mode} output, {Ho}×{Wo} px"
             + (f", shown at {up_img.width / Wo:.0%} (downsampled for display)" if up_img.width < Wo else "")
             + f". Input was {H}×{W}: {label}.")
    if tr is not None:
        o2.markdown(f"**Transposed convolution, ×{tr.factor}**  \n`{tr.layer}`")
        o2.dataframe(pd.DataFrame(previews.table(tr.kernel, 4)), key="up_tkernel")
        o2.caption(
            f"Weights: the {tr.kernel.shape[0]}×{tr.kernel.shape[0]} bilinear kernel (outer product of a tent "
            f"1 − |i − centre|/{tr.factor}), the same for every channel, no bias. Shapes "
            f"{_shape(tr.in_shape)} → {_shape(tr.out_shape)}. Against F.interpolate bilinear: MSE {t_mse:.2e}, "
            f"max |diff| {t_max:.3f}. Inside they agree; at the border the transposed conv sees zeros beyond "
            "the edge, so the first rows/columns come out darker. A learned transposed conv starts from weights "
            "like these and is then trained.")

# =========================================== pooling =========================================
def _pool_tab() -> None:
    a, b, c = st.columns([1.1, 1.3, 1.1], gap="large")
    kind = a.selectbox("Pooling", pool.KINDS, key="pool_kind",
                       help="max keeps the largest value of each window, avg the mean, LP the p-norm "
                            "(p=1: sum, p→∞: max); adaptive picks windows to hit an output size.")
    adaptive = kind.startswith("adaptive")
    if adaptive:
        oh = b.number_input("Output height", 1, max(1, H), min(8, H), key="pool_oh")
        ow = b.number_input("Output width", 1, max(1, W), min(8, W), key="pool_ow")
        kernel, stride, padding, dilation, ceil_mode, norm = 1, 1, 0, 1, False, 2.0
    else:
        oh, ow = 1, 1
        kernel = b.slider("Kernel size", 1, 8, 2, key="pool_kernel")
        stride = b.slider("Stride", 1, 8, 2, key="pool_stride")
        padding = b.slider("Padding", 0, 4, 0, key="pool_padding", help="At most half the kernel size (PyTorch's rule).")
        dilation = c.slider("Dilation (max only)", 1, 4, 1, key="pool_dilation", disabled=kind != "max")
        ceil_mode = c.checkbox("ceil_mode", value=False, key="pool_ceil",
                               help="Round the output size up: a last, partial window is kept.")
        norm = c.number_input("LP norm p", 0.5, 16.0, 2.0, 0.5, key="pool_norm", disabled=kind != "lp")
    include_pad = c.checkbox("count_include_pad (avg)", value=True, key="pool_incpad", disabled=kind != "avg")
    try:
        pr, pscale, pin_img, pout_img, all_counts = _pool(digest, kind, kernel, stride, padding,
                                              dilation if kind == "max" else 1, ceil_mode, float(norm),
                                              (int(oh), int(ow)), include_pad, x)
    except OpError as exc:
        user_error(str(exc))
        return
    Po, Qo = pr.out_shape[2:]
    st.markdown(f"**Shapes:** `{_shape(pr.in_shape)} → {_shape(pr.out_shape)}` &nbsp; · &nbsp; `{pr.call}`")
    if not adaptive:
        st.caption(f"H_out = {'ceil' if ceil_mode else 'floor'}(({H} + 2·{padding} − {dilation}·({kernel}−1) − 1)/"
                   f"{stride}) + 1 = {Po}; W_out likewise = {Qo}.")
    p1, p2 = st.columns(2)
    note = f" Shown at {pscale:.0%} (downsampled for display)." if pscale < 1 else ""
    p1.image(**picture(pin_img), caption=f"Input {H}×{W}: {label}.{note}")
    p2.image(**picture(pout_img), caption=f"{kind} pooled, {Po}×{Qo}, at the same scale as the input.{note}")

    if pr.indices is not None:
        st.subheader("Which pixel won each window", divider="gray")
        w1, w2, w3, w4 = st.columns(4)
        wch = w1.selectbox("Channel", [0, 1, 2], format_func=lambda i: "RGB"[i], key="pool_wch")
        wy = w2.slider("Crop centre, down (%)", 0, 100, 45, key="pool_cy") / 100
        wx = w3.slider("Crop centre, across (%)", 0, 100, 50, key="pool_cx") / 100
        wsize = w4.slider("Crop size (input px)", 4, 32, 12, key="pool_csize")
        wcrop = previews.crop_around((H, W), wy, wx, wsize)
        counts = all_counts[wch]
        sub = previews.crop_tensor(counts, wcrop)
        pts = [(int(r), int(q)) for r, q in (sub > 0).nonzero().tolist()]
        sizes = [int(sub[r, q]) for r, q in pts]
        wcell = previews.cell_for((wcrop.h, wcrop.w), 360)
        chan = previews.crop_tensor(x[wch:wch + 1], wcrop)
        zoom = display.draw_dots(previews.grid_image(chan, wcell), pts, wcell, sizes)
        boxes = []
        if not adaptive and stride >= (kernel - 1) * dilation + 1:
            for oy in range(Po):
                for ox in range(Qo):
                    t0, l0 = oy * stride - padding, ox * stride - padding
                    span = (kernel - 1) * dilation
                    if t0 + span >= wcrop.top and t0 < wcrop.top + wcrop.h and l0 + span >= wcrop.left \
                            and l0 < wcrop.left + wcrop.w:
                        boxes.append((t0 - wcrop.top, l0 - wcrop.left, t0 + span - wcrop.top, l0 + span - wcrop.left))
            zoom = display.draw_boxes(zoom, boxes, scale=wcell, colour=(255, 200, 0), width=2)
        v1, v2 = st.columns([1, 1])
        v1.image(**picture(zoom), caption=(
            f"Channel {'RGB'[wch]}, input rows {wcrop.top}..{wcrop.top + wcrop.h - 1}, columns "
            f"{wcrop.left}..{wcrop.left + wcrop.w - 1}: red dots are the pixels return_indices points to "
            f"({len(pts)} winners here; a bigger dot won several overlapping windows)"
            + (", yellow boxes the pooling windows." if boxes else
               ". Windows overlap (stride < window span), so they aren't outlined.")))
        if not adaptive:
            oc = previews.windows_in_crop((Po, Qo), wcrop, stride, padding)
            v2.image(**picture(previews.grid_image(previews.crop_tensor(pr.output[wch:wch + 1], oc), wcell * stride),
                               width=min(360, oc.w * wcell * stride)),
                     caption=f"The pooled output for the windows starting in this crop (rows {oc.top}..{oc.top + oc.h - 1}, "
                             f"columns {oc.left}..{oc.left + oc.w - 1}): each cell is its window's winning value, drawn "
                             f"{stride}× bigger so it lines up with the input.")
        v2.markdown(
            "Max pooling passes on only the largest value of each window. `return_indices=True` also returns "
            "*where* it was (a flat index into H·W per channel), which `MaxUnpool2d` uses to put values back "
            "and which routes the gradient in backprop: only the winners get one.")
        v2.metric("Windows won, whole image", f"{int((counts > 0).sum()):,} pixels",
                  help="Number of distinct input pixels that won at least one window in this channel.")
        v2.caption(f"Out of {H * W:,} input pixels, {int((counts > 0).sum()):,} won at least one of the "
                   f"{Po * Qo:,} windows ({100 * float((counts > 0).float().mean()):.1f}%).")

    st.subheader("Round trip: pool, then upsample back", divider="gray")
    modes = list(pool.ROUND_TRIP_MODES) if pr.indices is not None and kind == "max" else \
        [m for m in pool.ROUND_TRIP_MODES if m != "max unpool"]
    rmode = st.radio("Upsample with", modes, horizontal=True, key="pool_rt_mode")
    try:
        rt, rt_img = _round_trip((digest, pr.call), rmode, x, pr)
    except OpError as exc:
        user_error(str(exc))
        return
    q1, q2 = st.columns([1, 1])
    q1.image(**picture(rt_img), caption=f"{kind} pool to {Po}×{Qo}, then {rmode} back to {H}×{W}.{note}")
    q2.metric("MSE", f"{rt.mse:.5f}")
    q2.metric("PSNR", "∞ dB" if rt.psnr == float("inf") else f"{rt.psnr:.2f} dB")
    q2.caption("Reconstruction error against the input, values in [0, 1]: MSE = mean((x − x̂)²), "
               "PSNR = 10·log10(1 / MSE). Higher PSNR is closer; each ×2 pooling throws away 3 of every 4 "
               "values, and no upsampling can bring back the lost detail."
               + (" Max unpool puts each maximum back where it came from and zeros elsewhere." if rmode ==
                  "max unpool" else ""))


tab_up, tab_pool = st.tabs(["Upsample", "Pooling"])
with tab_up:
    _upsample_tab()
with tab_pool:
    _pool_tab()
