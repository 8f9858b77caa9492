"""The Architectures page's Design mode: a layer table you edit, checked shape by shape as you type.

Only widgets and drawing live here; parsing, the shape check, the fixes, building, code and files
are `cnnviz.models.design`. State: `des_layers` (a list of {"id", "layer"} with every argument
filled), widget keys `des_w_<id>_<arg>` (reset whenever a whole design is loaded, so widgets pick
up the new values).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cnnviz.models import design as D
from cnnviz.train.config import TrainConfig
from ui.layout import one_line, user_error

K_LAYERS, K_NEXT, K_MSG = "des_layers", "des_next", "des_msg"
K_NAME, K_C, K_SIZE, K_CLASSES = "des_name", "des_in_c", "des_in_size", "des_classes"
K_KEEP = "des_keep"  # the four values above, kept apart: Streamlit drops widget state on other pages
TRAIN_BATCH = TrainConfig().batch_size  # the Train page's default, for the activation-memory figure
LABELS = {"out_channels": "out channels", "kernel_size": "kernel", "out_features": "out features",
          "in_features": "in (0 = auto)", "in_channels": "in channels (0 = auto)",
          "num_features": "num features (0 = auto)", "negative_slope": "negative slope", "output_size": "output size",
          "ceil_mode": "ceil mode", "count_include_pad": "count include pad"}
ICON = {"ok": "✔", "bad": "✖", "skip": "·"}


def _fmt(n: float) -> str:
    for unit, k in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= k:
            return f"{n / k:.2f} {unit}"
    return f"{n:.0f}"


def _fmt_bytes(n: int) -> str:
    for unit, k in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{n} B"


# ---- state ----------------------------------------------------------------------------------------
def _set_design(design: D.Design) -> None:
    """Replace the editor's design (from a callback: before any widget of this run exists)."""
    ss = st.session_state
    for k in [k for k in ss if isinstance(k, str) and k.startswith("des_w_")]:
        del ss[k]
    ss.setdefault(K_NEXT, 0)
    ss[K_LAYERS] = []
    for layer in design.layers:
        ss[K_LAYERS].append({"id": ss[K_NEXT], "layer": dict(layer)})
        ss[K_NEXT] += 1
    ss[K_NAME], ss[K_C], ss[K_SIZE] = design.name, design.input[0], design.input[1]
    ss[K_KEEP] = {**ss.get(K_KEEP, {}), K_NAME: design.name, K_C: design.input[0], K_SIZE: design.input[1]}


def _sources() -> dict[str, str]:
    """'Start from' choices: label -> how to get it."""
    out = {f"preset: {n}": f"preset:{n}" for n in D.PRESETS}
    out.update({f"registry: {n}": f"registry:{n}" for n in _plain()})
    out.update({f"saved: {n[len(D.PREFIX):].split('/')[-1]}": f"saved:{n}" for n in D.design_names(_folder())})
    return out


@st.cache_resource(show_spinner=False)
def _plain() -> list[str]:
    return list(D.plain_stack_models())


def _load_source() -> None:
    ss = st.session_state
    kind, _, what = _sources().get(ss.get("des_source", ""), "preset:lenet5").partition(":")
    try:
        design = (D.preset(what) if kind == "preset" else D.plain_stack_models()[what] if kind == "registry"
                  else D.load_file(what))
    except (ValueError, OSError, KeyError) as exc:
        ss[K_MSG] = ("error", f"Couldn't load {what}: {exc}")
        return
    _set_design(design)
    ss[K_MSG] = ("ok", f"Loaded {what}: {len(design.layers)} layers.")


def _apply(design: D.Design, what: str) -> None:
    _set_design(design)
    st.session_state[K_MSG] = ("ok", what)


def _add() -> None:
    ss = st.session_state
    ss[K_LAYERS].append({"id": ss[K_NEXT], "layer": D.new_layer(ss["des_add_type"])})
    ss[K_NEXT] += 1


def _move(i: int, d: int) -> None:
    layers = st.session_state[K_LAYERS]
    if 0 <= i + d < len(layers):
        layers[i], layers[i + d] = layers[i + d], layers[i]


def _remove(i: int) -> None:
    del st.session_state[K_LAYERS][i]


def _import(text: str, source: str) -> None:
    try:
        design = D.parse(text)
    except ValueError as exc:
        st.session_state[K_MSG] = ("error", f"Couldn't import {source}: {exc}")
        return
    _apply(design, f"Imported {len(design.layers)} layers from {source}.")


def _import_text() -> None:
    _import(st.session_state.get("des_import_text", ""), "the text box")


def _import_file() -> None:
    f = st.session_state.get("des_import_file")
    if f is not None:
        _import(f.getvalue(), f.name)


def _folder():
    """Where this user's designs go: the designs folder, or with sign-in a folder of the user's own."""
    from ui.auth import designs_folder

    return designs_folder()


def _model_name(path) -> str:
    """The model name of a saved design file ('design:NAME.json', or 'design:<user id>/NAME.json')."""
    try:
        return D.PREFIX + path.resolve().relative_to(D.designs_root().resolve()).as_posix()
    except ValueError:
        return D.PREFIX + path.name


def _save(design: D.Design, classes: int) -> None:
    try:
        existed = (_folder() / D.file_name(design.name)).is_file()
        path = D.save(design, classes, folder=_folder())
    except (ValueError, OSError) as exc:
        st.session_state[K_MSG] = ("error", one_line(exc))
        return
    replaced = " (replacing the old one)" if existed else ""
    st.session_state[K_MSG] = ("ok", f"Saved {path.name} in {_folder()}{replaced}: pick "
                                     f"**{_model_name(path)}** on the Train and Feature maps pages.")


# ---- widgets --------------------------------------------------------------------------------------
def _widget(uid: int, a: D.Arg, value, inline: bool = False):
    """Draw one argument's widget; returns its value in JSON form. `inline` (in the row): no help icon,
    so the label fits (the help is the layer name's tooltip and the 'more' list)."""
    key = f"des_w_{uid}_{a.name}"
    label = LABELS.get(a.name, a.name.replace("_", " "))
    help_ = None if inline else a.help
    if a.kind == "width":
        if key not in st.session_state:
            st.session_state[key] = "" if value is None else str(value)
        text = st.text_input(label, key=key, help=help_).strip()
        return int(text) if text.lstrip("-").isdigit() else text
    if key not in st.session_state:
        st.session_state[key] = 0 if value is None else value
    if a.kind == "bool":
        return st.checkbox(label, key=key, help=help_)
    if a.kind == "choice":
        return st.selectbox(label, list(a.choices), key=key, help=help_)
    if a.kind == "float":
        eps = a.name == "eps"
        return float(st.number_input(label, float(a.lo), float(a.hi), key=key, help=help_,
                                     step=1e-5 if eps else 0.01, format="%.0e" if eps else "%.2f"))
    if a.kind in ("pin", "optint"):  # 0 = null: inferred / PyTorch's default
        if help_:
            help_ += " 0 = kernel_size." if a.kind == "optint" else " 0 = auto."
        v = int(st.number_input(label, 0, int(a.hi), step=1, key=key, help=help_))
        return v or None
    return int(st.number_input(label, int(a.lo), int(a.hi), step=1, key=key, help=help_))


def _row(i: int, item: dict, n: int):
    """One layer's row; returns (its JSON dict, the slot for its result, the slot for its problem)."""
    layer = item["layer"]
    t = D.LAYERS[layer["type"]]
    uid = item["id"]
    raw = {"type": layer["type"]}
    with st.container(border=True, key=f"des_row_{uid}"):
        c0, c1, c2, u, d, x = st.columns([1.25, 5.0, 2.6, 0.33, 0.33, 0.33], vertical_alignment="bottom")
        tips = "  \n".join([t.help] + [f"**{a.name}**: {a.help}" for a in t.args if a.main])
        c0.markdown(f"**{i + 1}. {t.cls}**", help=tips)
        main = [a for a in t.args if a.main]
        more = [a for a in t.args if not a.main]
        if main or more:
            cols = c1.columns(5, vertical_alignment="bottom")
            for col, a in zip(cols, main):
                with col:
                    raw[a.name] = _widget(uid, a, layer[a.name], inline=True)
            if more:
                with cols[min(len(main), 4)].popover("more", help=", ".join(a.name for a in more)):
                    for a in more:
                        raw[a.name] = _widget(uid, a, layer[a.name])
        else:
            c1.caption("no arguments")
        result = c2.empty()
        u.button("", icon=":material/arrow_upward:", key=f"des_up_{uid}", on_click=_move, args=(i, -1),
                 disabled=i == 0, help="Move up", type="tertiary")
        d.button("", icon=":material/arrow_downward:", key=f"des_down_{uid}", on_click=_move, args=(i, 1),
                 disabled=i == n - 1, help="Move down", type="tertiary")
        x.button("", icon=":material/close:", key=f"des_rm_{uid}", on_click=_remove, args=(i,),
                 help="Remove this layer", type="tertiary")
        problem = st.container()
    item["layer"] = {**layer, **{k: v for k, v in raw.items() if not isinstance(v, str) or k == "type"
                                 or v == D.CLASSES}}
    return raw, result, problem


def _fix_buttons(problem: D.Problem, where: str) -> None:
    if not problem.fixes:
        return
    cols = st.columns(len(problem.fixes) + 1)
    for j, (col, fix) in enumerate(zip(cols, problem.fixes)):
        col.button(fix.label, key=f"des_fix_{where}_{j}", icon=":material/build:", on_click=_apply,
                   args=(fix.design, f"Applied: {fix.label}."), type="primary" if j == 0 else "secondary")


@st.cache_data(show_spinner=False, max_entries=16)
def _forward_check(text: str, classes: int, channels: int):
    """The existing summary on a shape-only (meta device) build of the design: the real forward pass."""
    import torch

    from cnnviz.inspect.summary import summarize

    design = D.parse(text)
    with torch.device("meta"):
        model = D.from_design(design, classes, channels)
    return summarize(model, (channels, design.input[1], design.input[2]), device="meta")


# ---- the mode ---------------------------------------------------------------------------------------
def render() -> None:
    ss = st.session_state
    if K_LAYERS not in ss:
        _set_design(D.preset("lenet5"))
    keep = ss.setdefault(K_KEEP, {})
    keep.setdefault(K_CLASSES, 10)
    for k, v in keep.items():  # back from another page: the widgets start where they were
        if k not in ss:
            ss[k] = v

    st.markdown("Build a network layer by layer. Every change is checked at once: each layer's output shape, "
                "parameters and FLOPs, and the first layer that can't take what arrives, with the numbers and a "
                "one-click fix where one is obvious. Save it and it is a model on the **Train** and **Feature "
                "maps** pages, and `--model design:NAME.json` on the command line.")
    sources = _sources()
    a, b, c = st.columns([2.2, 0.8, 4], vertical_alignment="bottom")
    a.selectbox("Start from", list(sources), key="des_source",
                help="A preset, a registry model that is a plain stack of layers, or a design you saved.")
    b.button("Load", key="des_load", on_click=_load_source, icon=":material/download:", width="stretch")
    kind, _, what = sources.get(ss.get("des_source"), "preset:lenet5").partition(":")
    c.caption(D.PRESET_HELP.get(what, "") if kind == "preset" else
              f"{what}, read layer by layer from the registry's model (built on the meta device, no weights)."
              if kind == "registry" else f"Your design saved as {what[len(D.PREFIX):]}.")
    msg = ss.get(K_MSG)
    if msg:
        (user_error if msg[0] == "error" else lambda m: st.success(m, icon=":material/check:"))(msg[1])
        ss[K_MSG] = None

    n1, n2, n3, n4 = st.columns([2, 1, 1, 1])
    n1.text_input("Name", key=K_NAME, max_chars=64,
                  help="Letters, digits, spaces, _ . + - ; the file name comes from it.")
    n2.number_input("Input channels", 1, D.MAX_INPUT_CHANNELS, key=K_C, help="3 for colour, 1 for MNIST.")
    n3.number_input("Input size (px)", 1, D.MAX_INPUT_SIZE, key=K_SIZE, help="Height = width.")
    n4.number_input("Classes", 1, 1000, key=K_CLASSES, help='What "classes" stands for (the dataset fills it in '
                                                              "when you train).")
    classes = int(ss[K_CLASSES])
    ss[K_KEEP] = {k: ss[k] for k in (K_NAME, K_C, K_SIZE, K_CLASSES)}

    items = ss[K_LAYERS]
    if not items:
        st.info("No layers yet: add one below, or load a preset.", icon=":material/info:")
    drawn = [_row(i, item, len(items)) for i, item in enumerate(items)]

    a, b, c = st.columns([2.2, 0.8, 4], vertical_alignment="bottom")
    a.selectbox("Add a layer", list(D.LAYERS), key="des_add_type",
                format_func=lambda n: f"{D.LAYERS[n].cls}" + (" (the tutorial's residual block)" if n == "resblock"
                                                               else ""),
                help="Appended at the end; move it with the arrows.")
    b.button("Add", key="des_add", on_click=_add, icon=":material/add:", width="stretch")
    c.caption(D.LAYERS[ss["des_add_type"]].help)

    spec = {"name": ss[K_NAME] or "design", "input": [int(ss[K_C]), int(ss[K_SIZE]), int(ss[K_SIZE])],
            "layers": [raw for raw, _, _ in drawn]}
    try:
        analysis = D.check(spec, classes)
    except ValueError as exc:
        user_error(str(exc))
        return
    design = analysis.design

    # ---- the marks in the rows
    for row in analysis.rows:
        _, result, slot = drawn[row.index]
        if row.problem is None:
            flops = f"{_fmt(row.flops)}FLOPs" if row.flops >= 1000 else f"{row.flops} FLOPs"
            result.markdown(f"→ **{row.shape_text}**  \n{row.params:,} params · {flops}")
        else:
            result.markdown(f":red[**{ICON['bad']} can't take {' x '.join(map(str, row.in_shape))}**]")
            with slot:
                user_error(row.problem)
                _fix_buttons(analysis.problem, "row")
    for _, result, _ in drawn[len(analysis.rows):]:
        result.caption("not checked: an earlier layer fails")
    if analysis.problem is not None and analysis.problem.index is not None and \
            analysis.rows[-1].problem is None:  # a design-level problem pinned to the last layer
        with drawn[analysis.problem.index][2]:
            user_error(analysis.problem.message)
            _fix_buttons(analysis.problem, "row")
    elif analysis.problem is not None and analysis.problem.index is None:
        user_error(analysis.problem.message)
        _fix_buttons(analysis.problem, "end")

    # ---- totals and the table
    st.subheader("Shapes, parameters and FLOPs", divider="gray")
    good = sum(r.problem is None for r in analysis.rows)  # layers that passed, counted in the totals
    upto = "" if analysis.ok or good == len(design.layers) else f" (layers 1-{good})" if good else " (none yet)"
    mem, batch = analysis.activations, TRAIN_BATCH  # from the checked shapes: nothing is built
    at_batch = D.activation_memory(analysis, batch)
    m1, m2, m3, ma, m4, m5 = st.columns(6)
    m1.metric(f"Parameters{upto}", f"{analysis.total_params:,}")
    m2.metric(f"FLOPs{upto}", _fmt(analysis.total_flops), help="per image; 1 multiply-add = 2 FLOPs")
    m3.metric(f"MACs{upto}", _fmt(analysis.total_flops // 2))
    ma.metric(f"Activations per image{upto}", _fmt_bytes(mem.total),
              help=f"float32 outputs of the layers for one image (the largest: {_fmt_bytes(mem.largest)}); a "
                   f"training step keeps about this times the batch size for the backward pass (batch {batch}: "
                   f"{_fmt_bytes(at_batch.total)}).")
    m4.metric("Output", " x ".join(map(str, analysis.output_shape)) if analysis.ok else "-",
              help=None if analysis.ok else "The design does not build yet.")
    bad = analysis.problem
    m5.metric("Check", f"{ICON['ok']} builds" if bad is None else
              f"{ICON['bad']} layer {bad.index + 1}" if bad.index is not None else f"{ICON['bad']} the output",
              help=f"{len(design.layers)} layers; the first problem is marked above." if bad else
              f"{len(design.layers)} layers, every shape fits.")
    table = []
    for i, layer in enumerate(design.layers):
        row = analysis.rows[i] if i < len(analysis.rows) else None
        status = ("not checked" if row is None else f"{ICON['bad']} {row.problem}" if row.problem
                  else f"{ICON['ok']} ok")
        table.append({"#": i + 1, "layer": row.name if row else "", "type": D.LAYERS[layer["type"]].cls,
                      "input": " x ".join(map(str, row.in_shape)) if row else "",
                      "output": row.shape_text if row else "", "parameters": row.params if row else None,
                      "FLOPs": row.flops if row else None,
                      "activation (bytes)": row.out_bytes if row and row.out_shape else None, "status": status})
    if table:
        st.dataframe(pd.DataFrame(table), hide_index=True, key="des_table", width="stretch",
                     height=min(460, 35 * (len(table) + 1) + 3),
                     column_config={"parameters": st.column_config.NumberColumn(format="localized"),
                                    "FLOPs": st.column_config.NumberColumn(format="localized"),
                                    "activation (bytes)": st.column_config.NumberColumn(
                                        format="localized", help="float32 bytes of the layer's output, one image")})
    first_bad = analysis.problem
    st.caption(f"Worked out layer by layer with PyTorch's own size formulas for a {classes}-class model and a "
               f"{' x '.join(map(str, analysis.input_shape))} input: {analysis.total_params:,} parameters and "
               f"{analysis.total_flops:,} FLOPs (1 multiply-add = 2 FLOPs) over the {len(analysis.rows)} layers "
               f"checked, whose outputs take {mem.total:,} bytes per image in float32 (the largest "
               f"{mem.largest:,}; {_fmt_bytes(at_batch.total)} at batch {batch})"
               + (f"; the first problem: {first_bad.message}" if first_bad else
                  f", output {' x '.join(map(str, analysis.output_shape))}") + ".")
    if analysis.ok:
        summ = _forward_check(design.to_json(None), classes, analysis.in_channels)
        same = (summ.total_params, summ.total_flops, summ.output_shape[1:]) == \
            (analysis.total_params, analysis.total_flops, analysis.output_shape)
        (st.caption if same else user_error)(
            f"Checked by a real forward pass (`summarize` on the meta device, no weights): output "
            f"{' x '.join(map(str, summ.output_shape[1:]))}, {summ.total_params:,} parameters, "
            f"{summ.total_flops:,} FLOPs: {'the same as the table' if same else 'NOT the same as the table (a bug)'}.")
        with st.expander("Every leaf module, as the Layer-by-layer tab lists it"):
            df = pd.DataFrame(summ.records())[["name", "type", "output_shape", "params", "flops"]]
            st.dataframe(df, hide_index=True, key="des_leaves", width="stretch")
            st.caption(f"{len(df)} leaf modules of the built model (a ResBlk shows its convs, BatchNorms and "
                       f"shortcut), {summ.total_params:,} parameters in all.")

    # ---- save, export, import
    st.subheader("Save, export, import", divider="gray")
    t_save, t_json, t_code, t_import = st.tabs(["Save", "JSON", "PyTorch code", "Import JSON"])
    with t_save:
        target = _folder() / D.file_name(design.name)
        st.button(f"Save as {target.name}", key="des_save", on_click=_save, args=(design, classes),
                  icon=":material/save:", type="primary", disabled=not analysis.ok,
                  help=None if analysis.ok else "Fix the problem above first.")
        st.caption(f"Saved under `{_folder()}` (set `CNNVIZ_DESIGNS` to move it). A saved design is the model "
                   f"`{_model_name(target)}` on the Train and Feature maps pages and on the command line "
                   f"(`python -m cnnviz train --model {_model_name(target)}`); its checkpoints record the design "
                   f"(hash {design.hash}), so they load only into this design.")
        saved = D.design_names(_folder())
        st.caption(f"Saved designs: {', '.join(s[len(D.PREFIX):] for s in saved)}." if saved
                   else "No saved designs yet.")
    with t_json:
        text = design.to_json()
        st.code(text, language="json")
        st.download_button("Download JSON", text, file_name=D.file_name(design.name), mime="application/json",
                           key="des_dl_json", icon=":material/download:")
        st.caption("Keys are PyTorch's own argument names; arguments left at their default are not written, "
                   'in_channels / in_features are inferred unless given, and "classes" is filled from the dataset.')
    with t_code:
        if analysis.ok:
            code = D.to_code(design, classes, analysis.in_channels)
            st.code(code, language="python")
            st.download_button("Download .py", code, file_name=D.file_name(design.name)[:-5] + ".py",
                               mime="text/x-python", key="des_dl_code", icon=":material/download:")
            st.caption(f"Plain PyTorch: `{D.class_name(design)}(num_classes={classes})` builds the same layers, with "
                       "the same names and shapes, as cnnviz does, so their state dicts are interchangeable.")
        else:
            st.info("Fix the problem above to see the code.", icon=":material/info:")
    with t_import:
        st.text_area("Design JSON", key="des_import_text", height=140,
                     placeholder='{"name": "tiny", "input": [3, 32, 32], "layers": [{"type": "conv2d", '
                                 '"out_channels": 8, "kernel_size": 3}]}')
        st.button("Import from text", key="des_import_btn", on_click=_import_text, icon=":material/upload:")
        st.file_uploader("…or a .json file", type=["json"], key="des_import_file", on_change=_import_file)
        st.caption(f"Checked against the layer table (types, keys, ranges, at most {D.MAX_LAYERS} layers, "
                   f"{D.MAX_PARAMS:,} parameters, {D.MAX_FLOPS / 1e9:.0f} GFLOPs per image); never run as code.")
