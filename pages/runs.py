"""Runs: compare training runs, then look inside one: confusion matrix, mistakes, maps across epochs.

With sign-in a user sees their own runs here (admins: all); everyone's finished runs are on the Class
board page, read-only."""

from __future__ import annotations

import math
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitAPIException

from cnnviz import plots, search_plots
from cnnviz.augment import hazard_line, label_hazards
from cnnviz.runs import RunSnapshot, access, list_runs, manage, read_run, search, snapshot, sweeps
from cnnviz.train import evaluate, scrub
from cnnviz.inspect import features
from cnnviz.models.checkpoints import CheckpointError
from cnnviz.images.display import tensor_to_pil, upscale_nearest
from ui import auth
from ui.bundle import bundle_download
from ui.image_state import current_image, current_label, image_digest
from ui.layout import error_line, page_header
from ui.weights import RUN, open_in_microscope

TILE = 96           # px of one example image
MAX_CELL_SHOWN = 24
MISTAKES_SHOWN = 12

INTRO = ("Every training run saved under the runs folder. **Compare** overlays their curves and lists their "
         "settings and final scores. **Inspect** one run: where its mistakes are (a confusion matrix you can "
         "click), which classes it finds hard, the test images it got wrong most confidently, and how one "
         "layer's feature maps for the sidebar image changed from epoch to epoch.")


def label(r: RunSnapshot) -> str:
    acc_s = f", test {100 * r.test_acc:.1f}%" if r.test_acc is not None else ""
    return f"{r.run_id} · {r.status}{acc_s}"


def no_runs() -> None:
    st.info("No runs yet. Train one on the **Train** page; it appears here as soon as it starts.",
            icon=":material/info:")
    try:
        st.page_link("pages/training.py", label="Go to Train", icon=":material/model_training:")
    except StreamlitAPIException:  # the page run on its own, outside the app's navigation
        pass


# ---------------------------------------------------------------- compare
def compare_rows(sel: list[RunSnapshot]) -> list[dict]:
    rows = []
    for r in sel:
        c, last = r.config, r.last_epoch
        rows.append({
            "run": r.run_id, "status": str(r.status), "model": c.get("model"), "dataset": c.get("dataset"),
            "augment": str(c.get("augment", ""))[:30], "optimizer": c.get("optimizer"), "lr": c.get("lr"),
            "schedule": c.get("schedule"), "batch": c.get("batch_size"),
            "epochs": f"{r.epochs_done}/{c.get('epochs', '?')}",
            "train loss": None if last.get("train_loss") is None else round(last["train_loss"], 4),
            "train acc %": None if last.get("train_acc") is None else round(100 * last["train_acc"], 2),
            "test acc %": None if last.get("test_acc") is None else round(100 * last["test_acc"], 2),
            "images/s": None if last.get("images_per_s") is None else round(last["images_per_s"]),
            "time (s)": None if last.get("elapsed_s") is None else round(last["elapsed_s"], 1),
            "device": r.device,
        })
    return rows


def hazard_warnings(sel: list[RunSnapshot]) -> None:
    for r in sel:
        found = label_hazards(str(r.config.get("augment", "none")), r.config.get("dataset"), r.start.get("classes"))
        if found:
            score = f" (test {100 * r.test_acc:.1f}%)" if r.test_acc is not None else ""
            st.warning(f"**{r.run_id}**{score} trained on {r.config.get('dataset')} with augmentation that can "
                       f"change a digit's label: {'; '.join(map(str, found))}. A 6 upside down is a 9: the network "
                       "is taught that some sixes are nines. Inspect it below: its confusion matrix shows which "
                       "digits it mixes up.",
                       icon=":material/swap_horiz:")


def compare(all_runs: list[RunSnapshot], by_id: dict[str, RunSnapshot]) -> None:
    """Overlaid curves of the chosen runs (all epochs, a bounded step series each) and their table."""
    st.subheader("Compare runs")
    default = [r.run_id for r in all_runs if r.epochs_done][:3]
    st.session_state.setdefault("runs_compare", default)
    st.session_state["runs_compare"] = [rid for rid in st.session_state["runs_compare"] if rid in by_id]
    chosen = st.multiselect("Runs to compare", list(by_id), key="runs_compare",
                            format_func=lambda rid: label(by_id[rid]),
                            help="Newest first. Curves of the chosen runs are overlaid below.")
    if not chosen:
        st.info("Choose one or more runs to compare.", icon=":material/info:")
        return
    sel = [snapshot(by_id[rid].run_dir) for rid in chosen]
    c1, c2, _ = st.columns([1, 1, 2])
    metric = c1.selectbox("Epoch metric", list(plots.METRIC_LABELS), key="runs_metric",
                          format_func=lambda m: plots.METRIC_LABELS[m])
    smooth = c2.slider("Loss smoothing (EMA)", 0.0, 0.99, 0.9, 0.01, key="runs_smooth",
                       help="0 shows the raw loss of every logged step.")
    g1, g2 = st.columns(2)
    g1.plotly_chart(plots.compare_figure({r.run_id: r.epochs for r in sel}, metric), width="stretch",
                    key="runs_cmp_metric")
    g1.caption(f"{plots.METRIC_LABELS[metric]} after each epoch, one line per run "
               f"({sum(len(r.epochs) for r in sel)} epoch points in all).")
    g2.plotly_chart(plots.compare_loss_figure({r.run_id: r.steps for r in sel}, smooth), width="stretch",
                    key="runs_cmp_loss")
    g2.caption(f"Training loss per step, smoothed with an exponential moving average ({smooth:g}); "
               f"{sum(len(r.steps) for r in sel):,} points drawn for {sum(r.steps_logged for r in sel):,} logged "
               "steps (long runs keep each stretch's lowest and highest loss).")
    st.dataframe(compare_rows(sel), hide_index=True, key="runs_table", width="stretch")
    st.caption("Settings and the scores after the last finished epoch of each run (accuracies in %, "
               "time = training seconds since the data was loaded).")
    hazard_warnings(sel)


# ---------------------------------------------------------------- sweeps
def sweep_table_rows(srows: list[dict], params: list[str]) -> list[dict]:
    return [{"best": "★" if r["best"] else "", **{k: r[k] for k in params}, "status": r["status"],
             "epochs": r["epochs_done"],
             "test acc %": None if r["test_acc"] is None else round(100 * r["test_acc"], 2),
             "test loss": None if r["test_loss"] is None else round(r["test_loss"], 4),
             "train loss": None if r["train_loss"] is None else round(r["train_loss"], 4),
             "images/s": None if r["images_per_s"] is None else round(r["images_per_s"]),
             "run": r["run_id"]} for r in srows]


def compare_sweep(sweep_list: list[str], all_runs: list[RunSnapshot]) -> None:
    st.divider()
    st.subheader("Compare a sweep")
    sid = st.selectbox("Sweep", sweep_list, key="runs_sweep",
                       format_func=lambda s: f"{s} (search)" if search.is_search(s) else s,
                       help="Runs queued together from a grid of settings, or a search's trials (Train page "
                            "'Sweep', or `python -m cnnviz sweep`).")
    srows = sweeps.table(sid, runs=all_runs)
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
    st.dataframe(sweep_table_rows(srows, params), hide_index=True, key="runs_sweep_table", width="stretch")
    st.caption("Each run's swept settings and its scores after its last finished epoch, best first (★); "
               "click a column header to sort.")
    if search.is_search(sid):
        search_view(sid)


# ---------------------------------------------------------------- searches (Optuna)
def search_view(sid: str) -> None:
    """A search's study: what it is, its optimisation history, each trial's epochs and where the pruner
    stopped it, the settings' importances, and "Continue this search"."""
    try:
        search.advance(sid, wait=False)  # bring the study up to date (skipped while another process does)
        state = search.state(sid)
    except (ValueError, OSError, RuntimeError) as exc:
        error_line("Can't read this search's study", exc)
        return
    spec, trials = state.spec, state.trials
    space = ", ".join(f"{n} {search.dimensions(spec)[n].describe()}" for n in spec["space"])
    st.markdown(f"**Search** `{sid}`: {spec['sampler'].upper()} sampler (seed {spec['seed']}), pruner "
                f"{spec['pruner']}, {state.asked} of {spec['trials']} trials asked, {state.in_flight} in flight "
                f"(at most {spec['parallel']}); space: {space}.")
    ended = [t for t in trials if t.state in ("complete", "pruned", "fail")]
    if not ended:
        st.info("No trial has ended yet; the history appears as they do.", icon=":material/hourglass_top:")
    else:
        search_charts(state)
    continue_box(sid, spec)


def search_charts(state) -> None:
    trials = state.trials
    n = {s: state.count(s) for s in ("complete", "pruned", "fail")}
    best = state.best
    g1, g2 = st.columns(2)
    g1.plotly_chart(search_plots.history_figure(trials), width="stretch", key="runs_search_history")
    g1.caption(f"Each ended trial's test accuracy against its number: {n['complete']} finished (final score), "
               f"{n['pruned']} pruned (last score before the stop), {n['fail']} failed; the line is the best "
               "finished score so far" + (f", {100 * best.value:.2f}% by trial {best.number} "
                                           f"({search_plots.params_text(best.params)})." if best else "."))
    pruned = [t for t in trials if t.state == "pruned"]
    g2.plotly_chart(search_plots.curves_figure(trials), width="stretch", key="runs_search_curves")
    g2.caption("Test accuracy after each epoch, as reported to the pruner (dotted: pruned). "
               + ("Pruned: " + "; ".join(f"trial {t.number} after epoch {t.pruned_at} "
                                         f"({100 * t.scores[t.pruned_at]:.1f}%)" if t.pruned_at in t.scores
                                         else f"trial {t.number}" for t in pruned) + "."
                  if pruned else "None pruned."))
    imp, why = search_importances(state.sweep_id, n["complete"])
    if imp:
        c1, _ = st.columns(2)
        c1.plotly_chart(search_plots.importance_figure(imp), width="stretch", key="runs_search_importance")
        c1.caption("How much of the finished trials' score variance each setting explains (Optuna's fANOVA, "
                   "seed 0): " + ", ".join(f"{k} {v:.2f}" for k, v in imp.items()) + ".")
    else:
        st.caption(f"Setting importances: {why}")


@st.cache_data(show_spinner=False, max_entries=8)
def search_importances(sid: str, n_complete: int) -> tuple[dict[str, float], str]:
    """fANOVA importances (keyed by the number of completed trials: they change only as trials end)."""
    return search.importances(sid)


def continue_box(sid: str, spec: dict) -> None:
    c1, c2, _ = st.columns([1, 1, 2], vertical_alignment="bottom")
    more = c1.number_input("More trials", 1, max(1, search.MAX_TRIALS - int(spec["trials"])), 4,
                           key=f"runs_search_more_{sid}", help="Trials to add to this study.")
    if c2.button("Continue this search", key=f"runs_search_continue_{sid}", icon=":material/add:",
                 help="The same study: the sampler goes on from every trial so far."):
        try:
            total = search.extend(sid, int(more))
            st.toast(f"Search {sid}: {total} trials in all", icon=":material/add:")
        except (ValueError, OSError) as exc:
            error_line("Not continued", exc)


# ---------------------------------------------------------------- one run
@st.cache_data(show_spinner=False, max_entries=8)
def evaluation(run_path: str, ckpt_path: str, mtime: float) -> evaluate.Evaluation:
    """Evaluate the run's latest weights on its test images (keyed by checkpoint path + mtime)."""
    return evaluate.evaluate_run(read_run(Path(run_path)))


@st.cache_resource(show_spinner=False, max_entries=4)
def test_images(spec: str):
    from cnnviz import data

    return data.load_dataset(spec, "test").images


@st.cache_data(show_spinner=False, max_entries=16)
def scrub_layer_names(run_path: str, mtime: float) -> dict[str, str]:
    return {li.name: f"{li.name} · {li.type} {'x'.join(map(str, li.shape[1:]))}"
            for li in scrub.scrub_layers(read_run(Path(run_path)))}


@st.cache_data(show_spinner=False, max_entries=64)
def maps_at(run_path: str, epoch: int, layer: str, mtime: float, _image, image_key: str):
    return scrub.maps_at(read_run(Path(run_path)), epoch, layer, _image)


def thumb(images, index: int):
    return upscale_nearest(tensor_to_pil(images[index].float() / 255.0), TILE)


def gallery(items: list[evaluate.Mistake], images, classes: list[str], cols: int = 8) -> None:
    for start in range(0, len(items), cols):
        row = st.columns(cols)
        for col, m in zip(row, items[start:start + cols]):
            col.image(thumb(images, m.index), width=TILE,
                      caption=f"#{m.index}: {classes[m.true]} → {classes[m.pred]} ({100 * m.confidence:.0f}%)")


def pick_run(all_runs: list[RunSnapshot], by_id: dict[str, RunSnapshot]) -> RunSnapshot | None:
    st.divider()
    st.subheader("Inspect one run")
    with_ckpt = [r.run_id for r in all_runs if r.last_checkpoint is not None or r.checkpoints]
    if not with_ckpt:
        st.info("No run has a checkpoint yet (one is written at the end of each epoch).", icon=":material/info:")
        return None
    if st.session_state.get("runs_one") not in with_ckpt:
        st.session_state["runs_one"] = with_ckpt[0]
    rid = st.selectbox("Run", with_ckpt, key="runs_one", format_func=lambda r: label(by_id[r]))
    return by_id[rid]


def run_header(run: RunSnapshot, ckpt: Path, user) -> None:
    c1, c2, c3 = st.columns([2, 1, 1.3])
    c1.caption(f"Weights: `{ckpt}` · saved epochs: {', '.join(map(str, run.checkpoints)) or 'none'} · "
               f"model {run.config.get('model')} on {run.config.get('dataset')}. The bundle is these weights as "
               "ONNX with a predict.py that runs without PyTorch.")
    with c3:
        bundle_download("runs", f"{run.run_id}|{ckpt}|{Path(ckpt).stat().st_mtime_ns}", f"{run.run_id}-bundle",
                        lambda: manage.bundle_source(run.run_dir, by=user))
    if c2.button("Open in Feature maps", key="runs_open_fm", icon=":material/layers:",
                 help="Use these weights on the Feature maps page."):
        st.session_state["feature_maps_checkpoint"] = str(ckpt)
        try:
            st.switch_page("pages/feature_maps.py")
        except StreamlitAPIException:  # page not registered (a page run on its own)
            st.success("The Feature maps page will use these weights: open it from the menu.")


def on_cell(classes: list[str]) -> None:
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


def open_worst_confusion(run: RunSnapshot, cm, classes: list[str]) -> None:
    """For a run trained with label-changing augmentation, warn and open its worst confusion (once)."""
    hazard = hazard_line(str(run.config.get("augment", "none")), run.config.get("dataset"), classes)
    if not hazard:
        return
    pairs = evaluate.top_confusions(cm, 3)
    st.warning(f"Trained with `{str(run.config.get('augment'))[:40]}`. {hazard} Its most frequent "
               "confusions: " + "; ".join(f"{classes[t]} read as {classes[p]} ({n}×)" for t, p, n in pairs)
               + " (the images of the first are shown below the matrix).", icon=":material/swap_horiz:")
    if pairs and st.session_state.get("runs_cell_run") != run.run_id:
        st.session_state["runs_cell_run"] = run.run_id
        st.session_state["runs_true"], st.session_state["runs_pred"] = pairs[0][0], pairs[0][1]


def matrix_and_recall(cm, classes: list[str]) -> None:
    acc = evaluate.per_class_accuracy(cm)
    g1, g2 = st.columns([3, 2])
    with g1:
        norm = st.toggle("Show % of each true class", key="runs_cm_norm")
        fig = plots.confusion_figure(cm, classes, normalize=norm,
                                     highlight=(st.session_state["runs_true"], st.session_state["runs_pred"]))
        st.plotly_chart(fig, width="stretch", key="runs_cm", on_select=lambda: on_cell(classes),
                        selection_mode="points", config={"displayModeBar": False})
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


def cell_gallery(ev, cm, images, classes: list[str]) -> None:
    st.markdown("##### Images in one cell")
    k = len(classes)
    s1, s2, _ = st.columns([1, 1, 2])
    t = s1.selectbox("True class", range(k), key="runs_true", format_func=lambda i: classes[i])
    p = s2.selectbox("Predicted class", range(k), key="runs_pred", format_func=lambda i: classes[i])
    cell = evaluate.cell_examples(ev, t, p, MAX_CELL_SHOWN)
    n_cell = int(cm[t, p])
    if not cell:
        st.info(f"No test image of class {classes[t]} was predicted as {classes[p]}.", icon=":material/info:")
        return
    gallery(cell, images, classes)
    st.caption(f"{'Correct: ' if t == p else ''}{min(n_cell, MAX_CELL_SHOWN)} of {n_cell} test images of "
               f"class **{classes[t]}** predicted as **{classes[p]}**, most confident first "
               "(#dataset index: true → predicted (confidence)).")


def mistakes(run: RunSnapshot, ckpt: Path) -> None:
    """Accuracy, the clickable confusion matrix, per-class recall, one cell's images, confident mistakes."""
    try:
        with st.spinner(f"Evaluating {run.run_id} on its test images…"):
            ev = evaluation(str(run.run_dir), str(ckpt), Path(ckpt).stat().st_mtime)
            images = test_images(ev.dataset)
    except (ValueError, CheckpointError, OSError) as exc:
        error_line("Can't evaluate this run", exc)
        return
    classes = ev.classes
    k = len(classes)
    cm = evaluate.confusion_matrix(ev.labels, ev.preds, k)
    st.markdown(f"**{100 * ev.accuracy:.2f}%** of {len(ev.labels):,} test images right "
                f"({int(cm.trace()):,} correct, {int(cm.sum() - cm.trace()):,} wrong).")
    open_worst_confusion(run, cm, classes)
    st.session_state.setdefault("runs_true", 0)
    st.session_state.setdefault("runs_pred", min(1, k - 1))
    for key in ("runs_true", "runs_pred"):
        if st.session_state[key] >= k:
            st.session_state[key] = 0
    matrix_and_recall(cm, classes)
    cell_gallery(ev, cm, images, classes)
    st.markdown("##### Most confident mistakes")
    worst = evaluate.confident_mistakes(ev, MISTAKES_SHOWN)
    if worst:
        gallery(worst, images, classes)
        st.caption(f"The {len(worst)} wrong answers the model was surest of (softmax probability of its "
                   "prediction): often mislabelled, ambiguous, or a real blind spot.")
    else:
        st.success("No mistakes on these test images.")


def maps_across_epochs(run: RunSnapshot, ckpt: Path) -> None:
    """One layer's maps for the sidebar image at a saved epoch, the same channels at every epoch."""
    ckpts = run.checkpoints
    epochs = sorted(ckpts)
    if not epochs:
        st.info("This run saved no per-epoch checkpoints yet.", icon=":material/info:")
        return
    try:
        layers = scrub_layer_names(str(run.run_dir), Path(ckpt).stat().st_mtime)
    except (ValueError, CheckpointError, OSError) as exc:
        error_line("Can't read this run's model", exc)
        return
    if not layers:
        return
    if st.session_state.get("runs_layer") not in layers:
        st.session_state["runs_layer"] = next(iter(layers))
    c1, c2, c3 = st.columns([2, 3, 1])
    layer = c1.selectbox("Layer", list(layers), key="runs_layer", format_func=layers.get)
    if c1.button("Open this layer in the Microscope", key="runs_open_microscope", icon=":material/biotech:"):
        open_in_microscope("Runs", str(run.config.get("model")), RUN, run_id=run.run_id,
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
    image_key = image_digest(image)
    try:
        with st.spinner(f"Feature maps at epoch {epoch}…"):
            em = maps_at(str(run.run_dir), int(epoch), layer, ckpts[epoch].stat().st_mtime, image, image_key)
            em_last = maps_at(str(run.run_dir), epochs[-1], layer, ckpts[epochs[-1]].stat().st_mtime, image,
                              image_key)
    except (ValueError, CheckpointError, OSError) as exc:
        error_line("Can't compute the maps", exc)
        return
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


def main() -> None:
    page_header("Runs", INTRO)
    user = auth.require_user()
    all_runs = access.mine(user, list_runs())
    if not all_runs:
        no_runs()
        return
    by_id = {r.run_id: r for r in all_runs}
    compare(all_runs, by_id)
    sweep_list = sorted({r.sweep.get("sweep_id") for r in all_runs} - {None, ""},  # newest first, grid or search
                        key=lambda s: s.split("-", 1)[-1], reverse=True)
    if sweep_list:
        compare_sweep(sweep_list, all_runs)
    run = pick_run(all_runs, by_id)
    if run is None:
        return
    ckpts = run.checkpoints
    ckpt = run.last_checkpoint or ckpts[max(ckpts)]
    run_header(run, ckpt, user)
    tab_eval, tab_scrub = st.tabs(["Mistakes", "Feature maps across epochs"])
    with tab_eval:
        mistakes(run, ckpt)
    with tab_scrub:
        maps_across_epochs(run, ckpt)


main()
