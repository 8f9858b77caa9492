"""Augmentation studio: build a torchvision v2 pipeline step by step, preview it, export code and JSON."""

from __future__ import annotations

import streamlit as st

from ui.image_state import current_image, current_label, image_digest
from ui.layout import page_header, user_error
from ui.pictures import picture

page_header(
    "Augmentation studio",
    "Augmentation shows the network a slightly different version of every training image each time: "
    "flipped, moved, rotated, recoloured, partly erased. Build a **torchvision v2** pipeline from the "
    "steps below (or start from a preset), see a grid of random results and, step by step, what each "
    "random draw was. The same pipeline is what the **Train** page uses, and you can export it as "
    "Python code or JSON.",
)

from cnnviz import augment as A  # noqa: E402  (after the header has painted)
from cnnviz.images import display  # noqa: E402
from cnnviz.augment.specs import SPECS, Param  # noqa: E402

K_STEPS, K_NEXT, K_JSON = "aug_steps", "aug_next_id", "augment_pipeline_json"
K_IMPORT_MSG = "aug_import_msg"
SIZES = {"32 px (like CIFAR)": 32, "64 px": 64, "128 px": 128, "224 px": 224, "as in the sidebar": None}
GROUPS = ["Geometry", "Colour", "Erase & normalise", "Policies", "Batch"]


# ---- cached previews: a rerun whose pipeline, input and seed did not change computes nothing ------
@st.cache_data(show_spinner=False, max_entries=16)
def _grid(pipeline_json: str, inputs_key: tuple, seed: int, num_classes: int | None, _pipeline, _inputs, _labels):
    """The augmented grid as display pictures, keyed by the pipeline's JSON, what the inputs are and
    the seed (same seed, same grid); the unhashed `_` arguments are what those keys describe."""
    outs, soft = A.apply_many(_pipeline, _inputs, seed, labels=_labels, num_classes=num_classes)
    grid = [display.upscale_nearest(A.to_display(_pipeline, o), 96) for o in outs]
    return grid, soft, tuple(outs[0].shape[-2:])


@st.cache_data(show_spinner=False, max_entries=16)
def _trace(pipeline_json: str, input_key: tuple, seed: int, _pipeline, _x):
    """The step-by-step strip of the first input: (picture, label, (h, w), what was drawn) per step."""
    return [(display.upscale_nearest(A.to_display(_pipeline, s.image, normalized=s.normalized), 96), s.label,
             tuple(s.image.shape[-2:]), s.drawn) for s in A.trace(_pipeline, _x, seed)]


# ---- state helpers ---------------------------------------------------------------------------
def _new_steps(pipeline: A.Pipeline) -> list[dict]:
    out = []
    for s in pipeline.steps:
        out.append({"id": st.session_state[K_NEXT], "name": s.name, "params": dict(s.params)})
        st.session_state[K_NEXT] += 1
    return out


def _set_pipeline(pipeline: A.Pipeline) -> None:
    for k in [k for k in st.session_state if isinstance(k, str) and k.startswith("aug_w_")]:
        del st.session_state[k]
    st.session_state[K_STEPS] = _new_steps(pipeline)


if K_STEPS not in st.session_state:
    st.session_state[K_NEXT] = 0
    st.session_state[K_STEPS] = _new_steps(A.preset("tutorial-mnist"))
    st.session_state.setdefault("aug_preset", "tutorial-mnist")


def _load_preset() -> None:
    _set_pipeline(A.preset(st.session_state["aug_preset"]))
    st.session_state[K_IMPORT_MSG] = None


def _add_step() -> None:
    name = st.session_state["aug_add_name"]
    spec = SPECS[name]
    st.session_state[K_STEPS].append({"id": st.session_state[K_NEXT], "name": name,
                                      "params": {p.name: p.default for p in spec.params}})
    st.session_state[K_NEXT] += 1


def _move(i: int, d: int) -> None:
    steps = st.session_state[K_STEPS]
    j = i + d
    if 0 <= j < len(steps):
        steps[i], steps[j] = steps[j], steps[i]


def _remove(i: int) -> None:
    del st.session_state[K_STEPS][i]


def _import(text: str, source: str) -> None:
    try:
        pipe = A.Pipeline.from_json(text)
    except ValueError as exc:
        st.session_state[K_IMPORT_MSG] = ("error", f"Couldn't import {source}: {exc}")
        return
    _set_pipeline(pipe)
    st.session_state[K_IMPORT_MSG] = ("ok", f"Imported {len(pipe.steps)} step(s) from {source}.")


def _import_text() -> None:
    _import(st.session_state.get("aug_import_text", ""), "the text box")


def _import_file() -> None:
    f = st.session_state.get("aug_import_file")
    if f is None:
        return
    raw = f.getvalue()
    if len(raw) > A.MAX_JSON_CHARS * 4:
        st.session_state[K_IMPORT_MSG] = ("error", f"Couldn't import {f.name}: the file is too large.")
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        st.session_state[K_IMPORT_MSG] = ("error", f"Couldn't import {f.name}: it is not UTF-8 text.")
        return
    _import(text, f.name)


# ---- generic widgets from the spec -----------------------------------------------------------------
def _fmt(v) -> str:
    return ", ".join(f"{x:g}" for x in v) if isinstance(v, list) else str(v)


def _widget_value(p: Param, v):
    """Parameter value -> initial widget value."""
    if p.kind == "range":
        v = p.default if v is None else v
        v = 0.0 if v is None else v
        return (-float(v), float(v)) if not isinstance(v, list) else (float(v[0]), float(v[1]))
    if p.kind == "pair":
        v = p.default if v is None else v
        return (float(v[0]), float(v[1])) if v is not None else (float(p.lo), float(p.hi))
    if p.kind in ("floats", "ints") or (p.kind == "size" and isinstance(v, list)):
        return _fmt(v)
    return v


def _param_widget(step_id: int, step_name: str, p: Param, value):
    """Draw one parameter's widget; returns the parameter value (JSON form) or raises ValueError."""
    key = f"aug_w_{step_id}_{p.name}"
    label = p.name.replace("_", " ")
    enabled = True
    if p.optional:
        on_key = key + "_on"
        if on_key not in st.session_state:
            st.session_state[on_key] = value is not None
        enabled = st.checkbox(f"use {label}", key=on_key, help=p.help)
    if key not in st.session_state:
        st.session_state[key] = _widget_value(p, value)
    k = p.kind
    if k == "float":
        w = st.slider(label, float(p.lo), float(p.hi), step=p.step or 0.01, key=key, help=p.help)
    elif k == "int":
        w = st.slider(label, int(p.lo), int(p.hi), step=int(p.step or 1), key=key, help=p.help)
    elif k == "bool":
        w = st.checkbox(label, key=key, help=p.help)
    elif k == "choice":
        w = st.selectbox(label, list(p.choices), key=key, help=p.help)
    elif k in ("range", "pair"):
        w = st.slider(label, float(p.lo), float(p.hi), step=p.step or 0.01, key=key, help=p.help,
                      disabled=not enabled)
    elif k == "size" and not isinstance(st.session_state[key], str):
        w = st.number_input(label, int(p.lo), int(p.hi), step=1, key=key, help=p.help)
    else:  # lists and [h, w] sizes: comma-separated text
        w = st.text_input(label, key=key, help=p.help)
    if not enabled:
        return None
    if k == "range":
        lo, hi = float(w[0]), float(w[1])
        return hi if lo == -hi else [lo, hi]
    if k == "pair":
        return [float(w[0]), float(w[1])]
    if k in ("floats", "ints"):
        return A.parse_numbers(w, integers=(k == "ints"), max_items=4 if k == "floats" else 16)
    if k == "size" and isinstance(w, str):
        v = A.parse_numbers(w, integers=True, max_items=2)
        return v[0] if len(v) == 1 else v
    return w


def _draw_desc(d: dict) -> str:
    if not d:
        return ""
    parts = []
    for k, v in d.items():
        if isinstance(v, bool):
            v = "yes" if v else "no"
        elif isinstance(v, float):
            v = f"{v:.3g}"
        elif isinstance(v, list):
            v = ", ".join(f"{x:.3g}" if isinstance(x, float) else str(x) for x in v)
        parts.append(f"{k.replace('_factor', '')}: {v}")
    return " · ".join(parts)


# ---- layout: pipeline editor (left) and preview (right) ----------------------------------------------
left, right = st.columns([1.0, 1.55], gap="large")

with left:
    st.subheader("Pipeline", divider="gray")
    a, b = st.columns([3, 1], vertical_alignment="bottom")
    a.selectbox("Preset", A.preset_names(), key="aug_preset",
                format_func=lambda n: {"tutorial-mnist": "tutorial MNIST pipeline",
                                       "cifar-standard": "CIFAR standard"}.get(n, n),
                help="Loading a preset replaces the steps below.")
    b.button("Load", key="aug_load_preset", on_click=_load_preset, width="stretch")
    st.caption(A.PRESET_HELP[st.session_state["aug_preset"]])

    steps = st.session_state[K_STEPS]
    errors: list[str] = []
    if not steps:
        st.info("No steps: images are only converted to float tensors. Add a step below.", icon=":material/info:")
    for i, step in enumerate(steps):
        spec = SPECS[step["name"]]
        with st.container(border=True):
            t, u, d, x = st.columns([6, 1, 1, 1], vertical_alignment="center")
            tag = " · batch" if spec.batch_level else ""
            t.markdown(f"**{i + 1}. {step['name']}**{tag}")
            u.button("", icon=":material/arrow_upward:", key=f"aug_up_{step['id']}", on_click=_move, args=(i, -1),
                     disabled=i == 0, help="Move up", type="tertiary")
            d.button("", icon=":material/arrow_downward:", key=f"aug_down_{step['id']}", on_click=_move,
                     args=(i, 1), disabled=i == len(steps) - 1, help="Move down", type="tertiary")
            x.button("", icon=":material/close:", key=f"aug_rm_{step['id']}", on_click=_remove, args=(i,),
                     help="Remove this step", type="tertiary")
            with st.expander("Parameters", expanded=False):
                st.caption(spec.help)
                new = {}
                for p in spec.params:
                    try:
                        new[p.name] = _param_widget(step["id"], step["name"], p, step["params"].get(p.name))
                    except ValueError as exc:
                        errors.append(f"Step {i + 1} ({step['name']}) {p.name}: {exc}")
                        new[p.name] = step["params"].get(p.name)
                step["params"] = new

    a, b = st.columns([3, 1], vertical_alignment="bottom")
    a.selectbox("Add a step", [n for g in GROUPS for n, s in SPECS.items() if s.group == g], key="aug_add_name",
                format_func=lambda n: f"{SPECS[n].group}: {n}", help="Appended at the end; reorder with the arrows.")
    b.button("Add", key="aug_add", on_click=_add_step, icon=":material/add:", width="stretch")
    st.caption(SPECS[st.session_state["aug_add_name"]].help)

pipeline: A.Pipeline | None = None
if not errors:
    try:
        pipeline = A.Pipeline.from_dict({"steps": [{"name": s["name"], "params": s["params"]} for s in steps]})
    except ValueError as exc:
        errors.append(str(exc))
if pipeline is not None:
    st.session_state[K_JSON] = pipeline.to_json()

with right:
    st.subheader("Preview", divider="gray")
    for e in errors:
        user_error(e)
    c1, c2, c3, c4 = st.columns([1.4, 1.1, 1, 1])
    source = c1.radio("Apply to", ["Sidebar image", "Dataset samples"], key="aug_source", horizontal=True,
                      help="Dataset samples are drawn from a built-in dataset (shapes, digits) or another one "
                           "you have on disk; MixUp/CutMix need them, since they mix different images.")
    size_label = c2.selectbox("Input size", list(SIZES), key="aug_size",
                              help="The sidebar image is centre-cropped and resized to this size first, so "
                                   "pipelines written for 32x32 data (crop 32, pad 4) behave as on CIFAR.",
                              disabled=source != "Sidebar image")
    n = c3.select_slider("Samples", [4, 8, 12, 16, 24, 32], value=12, key="aug_n")
    seed = c4.number_input("Seed", 0, 2**31 - 1, 0, step=1, key="aug_seed",
                           help="Same seed, same grid. Change it to draw new random parameters.")

    inputs: list = []
    labels: list[int] | None = None
    classes: list[str] = []
    what = ""
    if source == "Sidebar image":
        base = A.preview_input(current_image(), SIZES[size_label])
        inputs = [base] * n
        inputs_key = ("image", image_digest(base), n)
        what = f"**{current_label()}** ({base.width}x{base.height})"
    else:
        ds_name = st.selectbox("Dataset", ["shapes", "digits", "cifar10", "mnist", "fashion-mnist"], key="aug_dataset",
                               help="shapes and digits are built in; the others must have been downloaded on the "
                                    "Datasets page.")
        try:
            from cnnviz import data as _data  # built by the data module; absent in stripped installs
        except ImportError:
            _data = None
            user_error("Dataset samples need cnnviz.data, which is not available here.")
        if _data is not None:
            @st.cache_resource(show_spinner=False, max_entries=2)
            def _samples(name: str):
                ds = _data.load_dataset(name, "test")
                return ds.images[:256].clone(), ds.labels[:256].clone(), list(ds.classes)
            try:
                with st.spinner(f"Loading {ds_name} (the first time builds the dataset; a few seconds)…"):
                    imgs, labs, classes = _samples(ds_name)
                inputs = [imgs[i] for i in range(n)]
                labels = [int(v) for v in labs[:n]]
                inputs_key = ("dataset", ds_name, n)
                what = f"the first {n} **{ds_name}** test images"
            except (ValueError, OSError) as exc:
                user_error(f"Couldn't load {ds_name}: {exc}")
            hazard = A.hazard_line(pipeline, ds_name, classes) if pipeline is not None else None
            if hazard:
                st.warning(hazard, icon=":material/swap_horiz:")

    if pipeline is not None and inputs:
        try:
            with st.spinner("Augmenting…"):
                grid, soft, (h, w) = _grid(pipeline.to_json(), inputs_key, int(seed), len(classes) or None,
                                           pipeline, inputs, labels)
        except Exception as exc:  # noqa: BLE001  (a transform refusing this input: say so, keep going)
            user_error(f"The pipeline failed on this input: {type(exc).__name__}: {str(exc)[:200]}")
            grid, soft = [], None
        if grid:
            caps = []
            for i in range(len(grid)):
                if soft is not None:
                    top = soft[i].topk(2)
                    caps.append(" + ".join(f"{classes[int(j)]} {float(w):.2f}" for w, j in zip(*top) if w > 0.005))
                elif labels is not None:
                    caps.append(classes[labels[i]])
                else:
                    caps.append(f"#{i + 1}")
            per_row = 8 if n >= 16 else 6
            for r in range(0, len(grid), per_row):
                cols = st.columns(per_row)
                for c, im, cap in zip(cols, grid[r:r + per_row], caps[r:r + per_row]):
                    c.image(**picture(im, width="stretch"), caption=cap)
            mix = ("; captions give the mixed soft labels (class weights)" if soft is not None else
                   "; MixUp/CutMix are not shown on a single repeated image: pick dataset samples"
                   if pipeline.batch_steps else "")
            st.caption(f"{len(grid)} augmented versions of {what}, seed {seed}; output {w}x{h} px, "
                       f"shown enlarged with nearest neighbour{mix}."
                       + (" Normalize is undone for display." if pipeline.normalizes else ""))

        st.markdown("##### Step by step")
        try:
            steps_run = _trace(pipeline.to_json(), inputs_key[:2], int(seed), pipeline, inputs[0])
        except Exception as exc:  # noqa: BLE001
            steps_run = []
            user_error(f"The step-by-step run failed: {type(exc).__name__}: {str(exc)[:200]}")
        per_row = 6
        for r in range(0, len(steps_run), per_row):
            cols = st.columns(per_row)
            for c, (im, label, (h, w), drawn) in zip(cols, steps_run[r:r + per_row]):
                c.image(**picture(im, width="stretch"))
                c.caption(f"**{label}** ({w}x{h})" + (f"  \n{_draw_desc(drawn)}" if drawn else ""))
        if steps_run:
            st.caption("The first image of the grid, after each step, under the same seed (its last picture is "
                       "the grid's first). Under each random step: the values it drew, recorded from the real "
                       "torchvision transform (its make_params call, or the operations a policy picked), not "
                       "re-computed. 'to float' is the ToDtype conversion the pipeline adds.")

# ---- export / import ----------------------------------------------------------------------------------
st.subheader("Export and import", divider="gray")
tab_code, tab_json, tab_import = st.tabs(["Python code", "JSON", "Import JSON"])
with tab_code:
    if pipeline is not None:
        code = pipeline.to_code()
        st.code(code, language="python")
        st.download_button("Download augmentation.py", code, file_name="augmentation.py", mime="text/x-python",
                           key="aug_dl_code", icon=":material/download:")
        st.caption("Runnable as is: with the same torch.manual_seed it gives exactly the pictures shown here. "
                   "A ToImage goes first and one ToDtype(float32) goes before the first step that needs floats "
                   "(RandomErasing, Normalize) or at the end, so PIL images and uint8 tensors both work.")
    else:
        st.info("Fix the errors above to see the code.", icon=":material/info:")
with tab_json:
    if pipeline is not None:
        st.code(st.session_state[K_JSON], language="json")
        st.download_button("Download augmentation.json", st.session_state[K_JSON], file_name="augmentation.json",
                           mime="application/json", key="aug_dl_json", icon=":material/download:")
        st.caption("The Train page can use this pipeline as 'studio pipeline'; `python -m cnnviz train "
                   "--augment augmentation.json` reads the file.")
with tab_import:
    st.text_area("Pipeline JSON", key="aug_import_text", height=140,
                 placeholder='{"steps": [{"name": "RandomRotation", "params": {"degrees": 15}}]}')
    st.button("Import from text", key="aug_import_btn", on_click=_import_text, icon=":material/upload:")
    st.file_uploader("…or a .json file", type=["json"], key="aug_import_file", on_change=_import_file)
    msg = st.session_state.get(K_IMPORT_MSG)
    if msg:
        if msg[0] == "error":
            user_error(msg[1])
        else:
            st.success(msg[1], icon=":material/check:")
    st.caption("Imported JSON is checked against the transform table (names, types, ranges) and never run "
               "as code.")
