"""Runs: compare training runs, then look inside one: confusion matrix, mistakes, maps across epochs."""

from __future__ import annotations

import math
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitAPIException

from cnnviz import plots
from cnnviz.augment import hazard_line, label_hazards
from cnnviz.train import bundle, evaluate, runs, scrub, sweeps
from cnnviz.inspect import features
from cnnviz.models.checkpoints import CheckpointError
from cnnviz.images.display import tensor_to_pil, upscale_nearest
from ui.bundle import bundle_download
from ui.image_state import current_image, current_label, image_digest
from ui.layout import page_header, user_error

TILE = 96           # px of one example image
MAX_CELL_SHOWN = 24
MISTAKES_SHOWN = 12

page_header(
    "Runs",
    "Every training run saved under the runs folder. **Compare** overlays their curves and lists their "
    "settings and final scores. **Inspect** one run: where its mistakes are (a confusion matrix you can "
    "click), which classes it finds hard, the test images it got wrong most confidently, and how one "
    "layer's feature maps for the sidebar image changed from epoch to epoch.",
)

all_runs = runs.list_runs()
if not all_runs:
    st.info("No runs yet. Train one on the **Train** page; it appears here as soon as it starts.",
            icon=":material/info:")
    try:
        st.page_link("pages/training.py", label="Go to Train", icon=":material/model_training:")
    except StreamlitAPIException:  # the page run on its own, outside the app's navigation
        pass
    st.stop()
by_id = {r.run_id: r for r in all_runs}


def _label(r: runs.RunInfo) -> str:
    acc = r.epochs[-1].get("test_acc") if r.epochs else None
    acc_s = f", test {100 * acc:.1f}%" if acc is not None else ""
    return f"{r.run_id} · {r.status}{acc_s}"


# ---------------------------------------------------------------- compare
st.subheader("Compare runs")
default = [r.run_id for r in all_runs if r.epochs][:3]
st.session_state.setdefault("runs_compare", default)
st.session_state["runs_compare"] = [rid for rid in st.session_state["runs_compare"] if rid in by_id]
chosen = st.multiselect("Runs to compare", list(by_id), key="runs_compare", format_func=lambda rid: _label(by_id[rid]),
                        help="Newest first. Curves of the chosen runs are overlaid below.")
if chosen:
    sel = [by_id[rid] for rid in chosen]
    c1, c2, _ = st.columns([1, 1, 2])
    metric = c1.selectbox("Epoch metric", list(plots.METRIC_LABELS), key="runs_metric",
                          format_func=lambda m: plots.METRIC_LABELS[m])
    smooth = c2.slider("Loss smoothing (EMA)", 0.0, 0.99, 0.9, 0.01, key="runs_smooth",
                       help="0 shows the raw loss of every logged step.")
    g1, g2 = st.columns(2)
    fig = plots.compare_figure({r.run_id: r.epochs for r in sel}, metric)
    g1.plotly_chart(fig, width="stretch", key="runs_cmp_metric")
    g1.caption(f"{plots.METRIC_LABELS[metric]} after each epoch, one line per run "
               f"({sum(len(r.epochs) for r in sel)} epoch points in all).")
    g2.plotly_chart(plots.compare_loss_figure({r.run_id: r.steps for r in sel}, smooth), width="stretch",
                    key="runs_cmp_loss")
    g2.caption(f"Training loss per step, smoothed with an exponential moving average ({smooth:g}); "
               f"{sum(len(r.steps) for r in sel):,} logged steps in all.")
    rows = []
    for r in sel:
        c, last = r.config, (r.epochs[-1] if r.epochs else {})
        rows.append({
            "run": r.run_id, "status": r.status, "model": c.get("model"), "dataset": c.get("dataset"),
            "augment": str(c.get("augment", ""))[:30], "optimizer": c.get("optimizer"), "lr": c.get("lr"),
            "schedule": c.get("schedule"), "batch": c.get("batch_size"),
            "epochs": f"{r.finished_epochs}/{c.get('epochs', '?')}",
            "train loss": None if last.get("train_loss") is None else round(last["train_loss"], 4),
            "train acc %": None if last.get("train_acc") is None else round(100 * last["train_acc"], 2),
            "test acc %": None if last.get("test_acc") is None else round(100 * last["test_acc"], 2),
            "images/s": None if last.get("images_per_s") is None else round(last["images_per_s"]),
            "time (s)": None if last.get("elapsed_s") is None else round(last["elapsed_s"], 1),
            "device": r.start.get("device", ""),
        })
    st.dataframe(rows, hide_index=True, key="runs_table", width="stretch")
    st.caption("Settings and the scores after the last finished epoch of each run (accuracies in %, "
               "time = training seconds since the data was loaded).")
    for r in sel:
        found = label_hazards(str(r.config.get("augment", "none")), r.config.get("dataset"), r.start.get("classes"))
        if found:
            last = r.epochs[-1].get("test_acc") if r.epochs else None
            score = f" (test {100 * last:.1f}%)" if last is not None else ""
            st.warning(f"**{r.run_id}**{score} trained on {r.config.get('dataset')} with augmentation that can "
                       f"change a digit's label: {'; '.join(map(str, found))}. A 6 upside down is a 9: the network "
                       "is taught that some sixes are nines. Inspect it below: its confusion matrix shows which "
                       "digits it mixes up.",
                       icon=":material/swap_horiz:")
else:
    st.info("Choose one or more runs to compare.", icon=":material/info:")


# ---------------------------------------------------------------- sweeps
sweep_list = sweeps.sweep_ids()
if sweep_list:
    st.divider()
    st.subheader("Compare a sweep")
    sid = st.selectbox("Sweep", sweep_list, key="runs_sweep",
                       help="Runs queued together from a grid of settings (Train page 'Sweep', or "
                            "`python -m cnnviz sweep`).")
    srows = sweeps.table(sid)
    params = [k for k in (srows[0] if srows else {}) if k not in sweeps.TABLE_SCORES]
    finished = [r for r in srows if r["test_acc"] is not None]
    if len(finished) >= 2:
        st.plotly_chart(plots.sweep_figure(srows, params), width="stretch", key="runs_sweep_parcoords")
        best = finished[0]
        st.caption(f"One line per run with a finished epoch ({len(finished)} of {len(srows)}), an axis per swept "
                   f"setting ({', '.join(params)}) and the final test accuracy; colour = that accuracy. Best: "
                   f"`{best['run_id']}` at {100 * best['test_acc']:.2f}% "
                   f"({', '.join(f'{k}={best[k]}' for k in params)}).")
    else:
        st.info(f"{len(finished)} of {len(srows)} runs of this sweep have a finished epoch; the chart appears "
                "with two.", icon=":material/hourglass_top:")
    table = [{"best": "★" if r["best"] else "", **{k: r[k] for k in params}, "status": r["status"],
              "epochs": r["epochs_done"],
              "test acc %": None if r["test_acc"] is None else round(100 * r["test_acc"], 2),
              "test loss": None if r["test_loss"] is None else round(r["test_loss"], 4),
              "train loss": None if r["train_loss"] is None else round(r["train_loss"], 4),
              "images/s": None if r["images_per_s"] is None else round(r["images_per_s"]),
              "run": r["run_id"]} for r in srows]
    st.dataframe(table, hide_index=True, key="runs_sweep_table", width="stretch")
    st.caption("Each run's swept settings and its scores after its last finished epoch, best first (★); "
               "click a column header to sort.")


# ---------------------------------------------------------------- one run
st.divider()
st.subheader("Inspect one run")
with_ckpt = [r.run_id for r in all_runs if r.last_checkpoint is not None or r.checkpoints]
if not with_ckpt:
    st.info("No run has a checkpoint yet (one is written at the end of each epoch).", icon=":material/info:")
    st.stop()
if st.session_state.get("runs_one") not in with_ckpt:
    st.session_state["runs_one"] = with_ckpt[0]
rid = st.selectbox("Run", with_ckpt, key="runs_one", format_func=lambda r: _label(by_id[r]))
run = by_id[rid]
ckpt = run.last_checkpoint or run.checkpoints[max(run.checkpoints)]

c1, c2, c3 = st.columns([2, 1, 1.3])
c1.caption(f"Weights: `{ckpt}` · saved epochs: {', '.join(map(str, run.checkpoints)) or 'none'} · "
           f"model {run.config.get('model')} on {run.config.get('dataset')}. The bundle is these weights as ONNX "
           "with a predict.py that runs without PyTorch.")
with c3:
    bundle_download("runs", f"{rid}|{ckpt}|{Path(ckpt).stat().st_mtime_ns}", f"{rid}-bundle",
                    lambda: bundle.source_from_run(run.path))
if c2.button("Open in Feature maps", key="runs_open_fm", icon=":material/layers:",
             help="Use these weights on the Feature maps page."):
    st.session_state["feature_maps_checkpoint"] = str(ckpt)
    try:
        st.switch_page("pages/feature_maps.py")
    except StreamlitAPIException:  # page not registered (a page run on its own)
        st.success("The Feature maps page will use these weights: open it from the menu.")


@st.cache_data(show_spinner=False, max_entries=8)
def _evaluation(run_path: str, ckpt_path: str, mtime: float) -> evaluate.Evaluation:
    """Evaluate the run's latest weights on its test images (keyed by checkpoint path + mtime)."""
    return evaluate.evaluate_run(runs.load_run(Path(run_path)))


@st.cache_resource(show_spinner=False, max_entries=4)
def _test_images(spec: str):
    from cnnviz import data

    return data.load_dataset(spec, "test").images


def _thumb(images, index: int):
    return upscale_nearest(tensor_to_pil(images[index].float() / 255.0), TILE)


def _gallery(items: list[evaluate.Mistake], images, classes: list[str], cols: int = 8, key: str = "") -> None:
    for start in range(0, len(items), cols):
        row = st.columns(cols)
        for col, m in zip(row, items[start:start + cols]):
            col.image(_thumb(images, m.index), width=TILE,
                      caption=f"#{m.index}: {classes[m.true]} → {classes[m.pred]} ({100 * m.confidence:.0f}%)")


tab_eval, tab_scrub = st.tabs(["Mistakes", "Feature maps across epochs"])
with tab_eval:
    try:
        with st.spinner(f"Evaluating {rid} on its test images…"):
            ev = _evaluation(str(run.path), str(ckpt), Path(ckpt).stat().st_mtime)
            images = _test_images(ev.dataset)
    except (ValueError, CheckpointError, FileNotFoundError, OSError) as exc:
        user_error(f"Can't evaluate this run: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        ev = None
    if ev is not None:
        classes = ev.classes
        k = len(classes)
        cm = evaluate.confusion_matrix(ev.labels, ev.preds, k)
        acc = evaluate.per_class_accuracy(cm)
        st.markdown(f"**{100 * ev.accuracy:.2f}%** of {len(ev.labels):,} test images right "
                    f"({int(cm.trace()):,} correct, {int(cm.sum() - cm.trace()):,} wrong).")
        hazard = hazard_line(str(run.config.get("augment", "none")), run.config.get("dataset"), classes)
        if hazard:
            pairs = evaluate.top_confusions(cm, 3)
            st.warning(f"Trained with `{str(run.config.get('augment'))[:40]}`. {hazard} Its most frequent "
                       "confusions: " + "; ".join(f"{classes[t]} read as {classes[p]} ({n}×)" for t, p, n in pairs)
                       + " (the images of the first are shown below the matrix).", icon=":material/swap_horiz:")
            if pairs and st.session_state.get("runs_cell_run") != rid:  # open on its worst confusion, once
                st.session_state["runs_cell_run"] = rid
                st.session_state["runs_true"], st.session_state["runs_pred"] = pairs[0][0], pairs[0][1]
        st.session_state.setdefault("runs_true", 0)
        st.session_state.setdefault("runs_pred", min(1, k - 1))
        for key in ("runs_true", "runs_pred"):
            if st.session_state[key] >= k:
                st.session_state[key] = 0

        def _on_cell() -> None:
            """A click on the confusion matrix picks that (true, predicted) cell."""
            state = st.session_state.get("runs_cm")
            pts = (state or {}).get("selection", {}).get("points", []) if state else []
            for p in pts:
                cd = p.get("customdata")
                if cd is not None and len(cd) == 2:
                    st.session_state["runs_true"], st.session_state["runs_pred"] = int(cd[0]), int(cd[1])
                    return
                if p.get("x") in classes and p.get("y") in classes:
                    st.session_state["runs_true"] = classes.index(p["y"])
                    st.session_state["runs_pred"] = classes.index(p["x"])
                    return

        g1, g2 = st.columns([3, 2])
        with g1:
            norm = st.toggle("Show % of each true class", key="runs_cm_norm")
            t_sel, p_sel = st.session_state["runs_true"], st.session_state["runs_pred"]
            fig = plots.confusion_figure(cm, classes, normalize=norm, highlight=(t_sel, p_sel))
            st.plotly_chart(fig, width="stretch", key="runs_cm", on_select=_on_cell, selection_mode="points",
                            config={"displayModeBar": False})
            worst = evaluate.top_confusions(cm, 3)
            st.caption("Rows: the true class; columns: what the model said. The diagonal holds the right "
                       "answers. Click a cell (or pick it below) to see those images. Most frequent confusions: "
                       + ("; ".join(f"{classes[t]} → {classes[p]} ({n})" for t, p, n in worst) or "none") + ".")
        with g2:
            st.plotly_chart(plots.per_class_figure(acc, classes), width="stretch", key="runs_per_class")
            finite = [(a, c) for a, c in zip(acc, classes) if not math.isnan(a)]
            if finite:
                lo, hi = min(finite), max(finite)
                st.caption(f"Share of each class's test images classified correctly (recall). Hardest: "
                           f"{lo[1]} {100 * lo[0]:.1f}%; easiest: {hi[1]} {100 * hi[0]:.1f}%.")

        st.markdown("##### Images in one cell")
        s1, s2, _ = st.columns([1, 1, 2])
        t = s1.selectbox("True class", range(k), key="runs_true", format_func=lambda i: classes[i])
        p = s2.selectbox("Predicted class", range(k), key="runs_pred", format_func=lambda i: classes[i])
        cell = evaluate.cell_examples(ev, t, p, MAX_CELL_SHOWN)
        n_cell = int(cm[t, p])
        if not cell:
            st.info(f"No test image of class {classes[t]} was predicted as {classes[p]}.", icon=":material/info:")
        else:
            _gallery(cell, images, classes)
            st.caption(f"{'Correct: ' if t == p else ''}{min(n_cell, MAX_CELL_SHOWN)} of {n_cell} test images of "
                       f"class **{classes[t]}** predicted as **{classes[p]}**, most confident first "
                       "(#dataset index: true → predicted (confidence)).")

        st.markdown("##### Most confident mistakes")
        worst = evaluate.confident_mistakes(ev, MISTAKES_SHOWN)
        if worst:
            _gallery(worst, images, classes)
            st.caption(f"The {len(worst)} wrong answers the model was surest of (softmax probability of its "
                       "prediction): often mislabelled, ambiguous, or a real blind spot.")
        else:
            st.success("No mistakes on these test images.")

with tab_scrub:
    epochs = sorted(run.checkpoints)
    if not epochs:
        st.info("This run saved no per-epoch checkpoints yet.", icon=":material/info:")
    else:
        @st.cache_data(show_spinner=False, max_entries=16)
        def _layers(run_path: str, mtime: float) -> dict[str, str]:
            return {li.name: f"{li.name} · {li.type} {'x'.join(map(str, li.shape[1:]))}"
                    for li in scrub.scrub_layers(runs.load_run(Path(run_path)))}

        try:
            layers = _layers(str(run.path), Path(ckpt).stat().st_mtime)
        except (ValueError, CheckpointError, OSError) as exc:
            user_error(f"Can't read this run's model: {exc}")
            layers = {}
        if layers:
            if st.session_state.get("runs_layer") not in layers:
                st.session_state["runs_layer"] = next(iter(layers))
            c1, c2, c3 = st.columns([2, 3, 1])
            layer = c1.selectbox("Layer", list(layers), key="runs_layer", format_func=layers.get)
            if c1.button("Open this layer in the Microscope", key="runs_open_microscope", icon=":material/biotech:"):
                from ui.weights import RUN, open_in_microscope

                open_in_microscope("Runs", str(run.config.get("model")), RUN, run_id=rid,
                                   epoch=st.session_state.get("runs_epoch"), layer=layer, channel=0)
            if st.session_state.get("runs_epoch") not in epochs:
                st.session_state["runs_epoch"] = epochs[-1]
            if len(epochs) > 1:
                epoch = c2.select_slider("Epoch", epochs, key="runs_epoch",
                                         help="Saved epochs of this run (a capped number is kept).")
            else:
                epoch = epochs[0]
                c2.caption(f"Only epoch {epoch} was saved.")
            n_show = c3.number_input("Channels", 1, 64, 16, key="runs_channels")
            image = current_image()

            @st.cache_data(show_spinner=False, max_entries=64)
            def _maps(run_path: str, epoch: int, layer: str, mtime: float, _image, image_key: str):
                return scrub.maps_at(runs.load_run(Path(run_path)), epoch, layer, _image)

            image_key = image_digest(image)
            try:
                with st.spinner(f"Feature maps at epoch {epoch}…"):
                    em = _maps(str(run.path), int(epoch), layer, run.checkpoints[epoch].stat().st_mtime,
                               image, image_key)
                    em_last = _maps(str(run.path), epochs[-1], layer,
                                    run.checkpoints[epochs[-1]].stat().st_mtime, image, image_key)
            except (ValueError, CheckpointError, OSError) as exc:
                user_error(f"Can't compute the maps: {exc}")
                em = None
            if em is not None:
                # the same channels at every epoch: the strongest ones of the final weights
                chans = features.channel_order(em_last.maps, "mean", int(n_show))
                g = features.channel_grid(em.maps, chans, shared=False, tile=72)
                i1, i2 = st.columns([1, 5])
                i1.image(image, width="stretch", caption=f"Input: {current_label()}")
                top = ", ".join(f"{name} {100 * p:.0f}%" for _, name, p in em.top)
                i1.caption(f"Prediction at epoch {epoch}: {top}"
                           + (" (the image made MNIST-style, as on the Feature maps page)." if em.digit else "."))
                i2.image(g.image, width="stretch")
                i2.caption(f"{layer} at epoch {epoch}: {len(chans)} of {em.maps.shape[0]} channels, "
                           f"{em.maps.shape[1]}x{em.maps.shape[2]} each (viridis, each tile scaled to its own "
                           f"range, {g.vmin:.2f}..{g.vmax:.2f} overall). Channels are the {len(chans)} most active "
                           f"at the last saved epoch ({epochs[-1]}), shown in the same order at every epoch.")
