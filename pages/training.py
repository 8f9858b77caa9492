"""Train: a form that queues runs (each its own process) or a sweep of them, and live views of every
run under the runs folder, read from the run directories (they outlive this server)."""

from __future__ import annotations

import datetime as _dt
import json
import tempfile
from pathlib import Path

import streamlit as st

from cnnviz import models, plots
from cnnviz.device import available_devices, pick_device
from cnnviz.train import OPTIMIZERS, PRECISIONS, PRESETS, SCHEDULES, TrainConfig, runqueue, runs, sweeps
from cnnviz.train.watch import RunWatch
from ui.layout import page_header, user_error
from ui.live import CHARTS_EVERY, DEFAULT_REFRESH, REFRESH_CHOICES, ChartHold, chart_period, describe_refresh, refresh_seconds

MAX_ENDED_SHOWN = 4   # most recent ended runs shown as cards below the live ones
LIVE = ("queued", "starting", "running")
STUDIO = "studio pipeline"
PATH_CHOICE = "folder or zip (path below)"
BATCH_SIZES = [16, 32, 64, 128, 256, 512, 1024, 2048]
LRS = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.2, 0.4, 1.0]

page_header(
    "Train",
    "Pick a model and a dataset and press **Start**: each run trains in a process of its own on the best "
    "device here (one at a time per device; more wait in a queue), and the charts below follow it live "
    "(loss per step, accuracy per epoch, learning rate and throughput). Closing the tab, or restarting "
    "the server, does not stop a run. Give several values to **sweep** a grid of settings. Stopped or "
    "interrupted runs can be resumed; every run keeps its checkpoints for the **Runs** page.",
)


# ---------------------------------------------------------------- choices
def _model_choices() -> list[str]:
    """Registered models made for small (<= 64 px) inputs (LeNet5, the CIFAR ResNets, airbench), then the
    designs saved on the Architectures page ('design:NAME.json')."""
    return [n for n in models.names() + models.design_names() if models.info(n).input_size <= 64]


def _dataset_choices() -> list[str]:
    try:
        from cnnviz import data

        return list(data.dataset_choices())
    except ImportError:  # the data module is not installed in this checkout
        return ["shapes"]


def _augment_choices() -> list[str]:
    try:
        from cnnviz import augment

        names = list(augment.preset_names())
    except ImportError:
        names = ["none"]
    if st.session_state.get("augment_pipeline_json"):
        names.append(STUDIO)
    return names


DEFAULTS = {"train_model": "lenet5", "train_dataset": "shapes", "train_augment": "none",
            "train_optimizer": "adam", "train_lr": 1e-3, "train_schedule": "constant", "train_epochs": 3,
            "train_batch": 128, "train_device": "auto", "train_precision": "auto", "train_channels_last": True,
            "train_momentum": 0.9, "train_nesterov": False, "train_wd": 0.0, "train_ls": 0.0, "train_seed": 0,
            "train_limit_train": 0, "train_limit_test": 0, "train_path": "", "train_nproc": 1,
            "train_sweep_lr": [], "train_sweep_batch": [], "train_sweep_optimizer": [], "train_sweep_augment": [],
            "train_sweep_model": []}
SWEEP_KEYS = {"lr": "train_sweep_lr", "batch_size": "train_sweep_batch", "optimizer": "train_sweep_optimizer",
              "augment": "train_sweep_augment", "model": "train_sweep_model"}


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no usable CUDA
        return 0


N_GPUS = _gpu_count()


def _apply_preset() -> None:
    """on_change of the 'Start from' box: copy a named config into the form's widgets."""
    name = st.session_state.get("train_preset", "custom")
    if name not in PRESETS:
        return
    p = PRESETS[name]
    mapping = {"model": "train_model", "augment": "train_augment", "optimizer": "train_optimizer",
               "lr": "train_lr", "schedule": "train_schedule", "epochs": "train_epochs",
               "batch_size": "train_batch", "precision": "train_precision", "channels_last": "train_channels_last",
               "momentum": "train_momentum", "nesterov": "train_nesterov", "weight_decay": "train_wd",
               "label_smoothing": "train_ls"}
    for field, key in mapping.items():
        if field in p:
            val = p[field]
            if key == "train_lr" and val not in LRS:
                continue
            if key == "train_batch" and val not in BATCH_SIZES:
                continue
            st.session_state[key] = val
    if name == "speedrun":
        st.session_state["train_dataset"] = "cifar10"


for k, v in DEFAULTS.items():
    st.session_state.setdefault(k, v)


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "…"
    s = int(round(s))
    return str(_dt.timedelta(seconds=s)) if s >= 60 else f"{s} s"


def _config_from_form() -> TrainConfig:
    """The form's values as a TrainConfig (not yet validated)."""
    ss = st.session_state
    ds = ss["train_dataset"]
    if ds == PATH_CHOICE:
        path = (ss.get("train_path") or "").strip()
        if not path:
            raise ValueError("Type the path of an image folder (class sub-folders) or a .zip file.")
        from cnnviz.data import visitor_spec  # a browser's path: only under CNNVIZ_DATA_ROOTS

        ds = visitor_spec(("zip:" if path.lower().endswith(".zip") else "folder:") + path)
    aug = ss["train_augment"]
    if aug == STUDIO:
        aug = ss.get("augment_pipeline_json") or "none"
    return TrainConfig(
        model=ss["train_model"], dataset=ds, augment=aug, optimizer=ss["train_optimizer"], lr=float(ss["train_lr"]),
        momentum=float(ss["train_momentum"]), nesterov=bool(ss["train_nesterov"]), schedule=ss["train_schedule"],
        weight_decay=float(ss["train_wd"]), label_smoothing=float(ss["train_ls"]), batch_size=int(ss["train_batch"]),
        epochs=int(ss["train_epochs"]), seed=int(ss["train_seed"]), device=ss["train_device"],
        precision=ss["train_precision"], channels_last=bool(ss["train_channels_last"]),
        limit_train=int(ss["train_limit_train"]) or None, limit_test=int(ss["train_limit_test"]) or None,
    )


def _dataset_problem(spec: str) -> str | None:
    """A one-line reason the dataset can't be used now (not downloaded, bad folder), else None."""
    try:
        from cnnviz import data
    except ImportError:
        return None if spec == "shapes" else "Only the built-in 'shapes' dataset is available in this install."
    check = getattr(data, "check_dataset", None) or getattr(data, "dataset_problem", None)
    try:
        if check is not None:
            res = check(spec)
            return res if isinstance(res, str) and res else None
        with st.spinner(f"Checking dataset {spec}…"):
            data.load_dataset(spec, "test")
    except (ValueError, FileNotFoundError, OSError) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


# ---------------------------------------------------------------- the form
models_ok = _model_choices()
if st.session_state["train_model"] not in models_ok:
    st.session_state["train_model"] = models_ok[0]
ds_opts = _dataset_choices() + [PATH_CHOICE]
if st.session_state["train_dataset"] not in ds_opts:
    st.session_state["train_dataset"] = ds_opts[0]
aug_opts = _augment_choices()
if st.session_state["train_augment"] not in aug_opts:
    st.session_state["train_augment"] = "none" if "none" in aug_opts else aug_opts[0]
dev_opts = ["auto"] + available_devices()
if st.session_state["train_device"] not in dev_opts:
    st.session_state["train_device"] = "auto"

any_live = any(runs.status_of(d)[0] in LIVE for d in runqueue.run_dirs())
with st.expander("New run", expanded=not any_live, icon=":material/add_circle:"):
    presets_here = ["custom"] + [p for p in PRESETS if PRESETS[p].get("model", "lenet5") in models_ok]
    st.selectbox("Start from", presets_here, key="train_preset", on_change=_apply_preset,
                 help="Fill the form from a named configuration: 'tutorial' is the notes' LeNet5 set-up, "
                      "'speedrun' an airbench-style CIFAR-10 recipe for a CUDA GPU.")

    with st.form("train_form", border=True):
        c1, c2, c3, c4 = st.columns(4)
        c1.selectbox("Model", models_ok, key="train_model",
                     format_func=lambda n: f"{n} ({models.info(n).family or 'CNN'})",
                     help="Models made for small (32x32) images, and your saved designs (design:NAME.json, from "
                          "the Architectures page). Other sizes are resized to the model's input.")
        c2.selectbox("Dataset", ds_opts, key="train_dataset",
                     help="Built-in 'shapes' works offline; CIFAR-10/MNIST need a download on the Datasets page.")
        c3.selectbox("Augmentation", aug_opts, key="train_augment",
                     help="A preset, or the pipeline you built in the Augmentation studio ('studio pipeline').")
        c4.text_input("Folder or .zip path", key="train_path", placeholder="/path/to/images (class sub-folders)",
                      help="Used when the dataset is 'folder or zip': an ImageFolder layout, or a zip of one.")
        c1, c2, c3, c4 = st.columns(4)
        c1.selectbox("Optimizer", list(OPTIMIZERS), key="train_optimizer")
        c2.select_slider("Learning rate", LRS, key="train_lr", format_func=lambda v: f"{v:g}")
        c3.selectbox("Schedule", list(SCHEDULES), key="train_schedule",
                     help="Per step: constant, cosine decay to 0, or one-cycle (warm-up then anneal).")
        c4.number_input("Epochs", min_value=1, max_value=500, step=1, key="train_epochs")
        c1, c2, c3, c4 = st.columns(4)
        c1.select_slider("Batch size", BATCH_SIZES, key="train_batch")
        c2.selectbox("Device", dev_opts, key="train_device", help="'auto' takes CUDA, then Apple MPS, then CPU.")
        c3.selectbox("Precision", list(PRECISIONS), key="train_precision",
                     help="auto: bf16 autocast on CUDA GPUs that support it, fp32 elsewhere.")
        c4.checkbox("channels_last", key="train_channels_last",
                    help="NHWC memory layout: faster convolutions on many GPUs and on CPU.")
        c1, c2, c3, c4 = st.columns(4)
        c1.number_input("Momentum (SGD)", 0.0, 0.999, step=0.05, key="train_momentum")
        c2.number_input("Weight decay", 0.0, 1.0, step=1e-4, format="%.4f", key="train_wd")
        c3.number_input("Label smoothing", 0.0, 0.9, step=0.05, key="train_ls")
        c4.number_input("Seed", 0, 2**31 - 1, step=1, key="train_seed")
        c1, c2, c3, c4 = st.columns(4)
        c1.checkbox("Nesterov (SGD)", key="train_nesterov")
        c2.number_input("Train images (0 = all)", 0, 10_000_000, step=500, key="train_limit_train",
                        help="Train on a random subset for a quick look.")
        c3.number_input("Test images (0 = all)", 0, 10_000_000, step=500, key="train_limit_test")
        if N_GPUS > 1:
            c4.number_input("Processes", 1, N_GPUS, step=1, key="train_nproc",
                            help=f"DistributedDataParallel over this many of the {N_GPUS} GPUs (torchrun); "
                                 "the batch size is the global batch, split evenly.")
        st.markdown("**Sweep** (optional): several values make a grid of runs, one per combination, queued "
                    "together; empty boxes keep the single value above.")
        c1, c2, c3, c4, c5 = st.columns(5)
        c1.multiselect("Learning rates", LRS, key="train_sweep_lr", format_func=lambda v: f"{v:g}")
        c2.multiselect("Batch sizes", BATCH_SIZES, key="train_sweep_batch")
        c3.multiselect("Optimizers", list(OPTIMIZERS), key="train_sweep_optimizer")
        c4.multiselect("Augmentations", [a for a in aug_opts if a != STUDIO], key="train_sweep_augment")
        c5.multiselect("Models", models_ok, key="train_sweep_model")
        submitted = st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:",
                                          key="train_start")

def _sweep_grid() -> dict[str, list]:
    """The sweep boxes that hold values: field -> values."""
    return {field: list(st.session_state.get(key) or []) for field, key in SWEEP_KEYS.items()
            if st.session_state.get(key)}


def _submit(cfg: TrainConfig) -> None:
    """Queue one run, or the sweep's grid; a toast says where it stands."""
    n = int(st.session_state.get("train_nproc") or 1) if N_GPUS > 1 else 1
    nproc = n if n > 1 else None  # one process: no torchrun
    grid = _sweep_grid()
    if grid:
        sweep_id, dirs = sweeps.submit_grid(grid, base=cfg.to_dict(), nproc=nproc)
        st.session_state["train_last_started"] = dirs[0].name
        st.toast(f"Sweep {sweep_id}: {len(dirs)} runs queued", icon=":material/grid_view:")
        return
    run_dir = runqueue.submit(cfg, nproc=nproc)
    st.session_state["train_last_started"] = run_dir.name
    pos = runqueue.position(run_dir)
    st.toast(f"Run {run_dir.name} " + (f"queued (position {pos})" if pos else "started"),
             icon=":material/play_arrow:")


if submitted:
    try:
        cfg = _config_from_form()
        cfg.validate()
    except (ValueError, TypeError) as exc:
        user_error(f"Not started: {exc}")
    else:
        problem = _dataset_problem(cfg.dataset)
        if problem:
            user_error(f"Not started: dataset {cfg.dataset!r}: {problem}")
        else:
            try:
                _submit(cfg)
            except (ValueError, OSError) as exc:
                user_error(f"Not started: {exc}")


# ---------------------------------------------------------------- one run's view
def _export_text(run_dir: Path) -> str:
    from cnnviz.train.export import export_script

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "train_run.py"
        export_script(run_dir, out)
        return out.read_text()


def _actions(snap: dict, live: bool) -> None:
    """Stop / resume / delete / downloads for one run."""
    rid, run_dir = snap["run_id"], Path(snap["run_dir"])
    row = st.container(horizontal=True, gap="small")
    if snap["status"] == "queued":
        if row.button("Cancel", key=f"train_cancel_{rid}", icon=":material/cancel:",
                      help="Takes the run out of the queue (a new run that never started is removed)."):
            runqueue.cancel(run_dir)
            st.toast(f"Cancelled {rid}")
            st.rerun()
        return
    if live:
        if row.button("Stop", key=f"train_stop_{rid}", icon=":material/stop:",
                      help="Ends the run at the next step and saves a checkpoint (status 'stopped')."):
            runs.request_stop(run_dir)
            st.toast(f"Stopping {rid}…")
        return
    last = run_dir / runs.LAST_WEIGHTS
    has_ckpt = last.is_file()
    done_epochs = max([int(e.get("epoch", 0)) for e in snap.get("epochs", [])] or [0])
    cfg_epochs = int(snap.get("config", {}).get("epochs", 1))
    if snap["status"] in ("stopped", "interrupted", "finished", "error", "diverged") and has_ckpt:
        with row.popover("Resume", icon=":material/play_arrow:"):
            total = st.number_input("Train until epoch", min_value=max(1, done_epochs + (snap["status"] == "finished")),
                                    value=max(cfg_epochs, done_epochs + 1), step=1, key=f"train_resume_ep_{rid}")
            if st.button("Resume from the last checkpoint", key=f"train_resume_{rid}", type="primary"):
                try:
                    cfg = TrainConfig.from_dict({**snap["config"], "epochs": int(total)})
                    runqueue.submit(cfg, resume_run_dir=run_dir)
                    st.rerun()
                except ValueError as exc:
                    user_error(f"Can't resume: {exc}")
    confirm_key = f"train_confirm_delete_{rid}"
    if not st.session_state.get(confirm_key):
        if row.button("Delete", key=f"train_delete_{rid}", icon=":material/delete:"):
            st.session_state[confirm_key] = True
            st.rerun()
    if has_ckpt:
        row.download_button("Checkpoint", data=last.read_bytes, file_name=f"{rid}.safetensors",
                                mime="application/octet-stream", key=f"train_dl_ckpt_{rid}",
                                icon=":material/download:", on_click="ignore",
                                help="The newest weights (safetensors with the run's metadata).")
        row.download_button("Training script", data=lambda d=run_dir: _export_text(d),
                                file_name=f"train_{rid}.py", mime="text/x-python", key=f"train_dl_script_{rid}",
                                icon=":material/code:", on_click="ignore",
                                help="A standalone PyTorch script that reproduces this run.")
    if st.session_state.get(confirm_key):
        st.warning(f"Delete run **{rid}** and all its checkpoints? This can't be undone.")
        c1, c2, _ = st.columns([1, 1, 4])
        if c1.button("Yes, delete", key=f"train_delete_yes_{rid}", type="primary"):
            try:
                runs.delete_run(run_dir)
                st.session_state.pop(confirm_key, None)
                st.toast(f"Deleted {rid}")
                st.rerun()
            except (ValueError, OSError) as exc:
                user_error(f"Not deleted: {exc}")
        if c2.button("Cancel", key=f"train_delete_no_{rid}"):
            st.session_state.pop(confirm_key, None)
            st.rerun()


STATUS_ICON = {"starting": ":material/hourglass_top:", "running": ":blue[:material/directions_run:]",
               "finished": ":green[:material/check_circle:]", "stopped": ":orange[:material/stop_circle:]",
               "diverged": ":red[:material/warning:]", "error": ":red[:material/error:]",
               "interrupted": ":orange[:material/pause_circle:]"}


def _draw_run(snap: dict, live: bool) -> None:
    """Status, progress, metrics and figures of one ended run's snapshot."""
    _draw_status(snap, live)
    _draw_charts(snap)


def _draw_status(snap: dict, live: bool) -> None:
    """Status line, progress bar with ETA, error and advice, and the headline metrics."""
    rid, cfg = snap["run_id"], snap.get("config", {})
    steps, epochs = snap.get("steps", []), snap.get("epochs", [])
    status = snap["status"]
    st.markdown(f"#### {STATUS_ICON.get(status, '')} `{rid}` · {status}")
    st.caption(f"{cfg.get('model')} on {cfg.get('dataset')} · augment {str(cfg.get('augment'))[:40]} · "
               f"{cfg.get('optimizer')} lr {cfg.get('lr'):g} ({cfg.get('schedule')}) · batch {cfg.get('batch_size')} · "
               f"{cfg.get('epochs')} epochs · device {snap.get('device') or cfg.get('device')}")
    total_ep = int(cfg.get("epochs", 1))
    cur_ep = steps[-1]["epoch"] if steps else (epochs[-1]["epoch"] if epochs else 0)
    prog = float(snap.get("progress") or 0.0)
    if status == "queued":
        st.progress(0.0, text=f"Waiting in the queue, position {snap.get('queue_position') or '?'}: it starts "
                              f"when a slot is free ({runqueue.max_runs()} run(s) at a time here).")
    elif status in ("starting", "running"):
        text = (f"{100 * prog:.0f}% · epoch {cur_ep}/{total_ep} · ETA {_fmt_s(snap.get('eta_s'))}"
                if steps else "Loading data and building the model…")
        st.progress(prog, text=text)
    else:
        st.progress(prog, text=f"{100 * prog:.0f}% · {status} after {len(epochs)} of {total_ep} epochs")
    if snap.get("error"):
        st.error(snap["error"], icon=":material/error:")
        if snap.get("advice"):
            st.info(snap["advice"], icon=":material/lightbulb:")
    if status == "interrupted":
        st.warning(f"Interrupted: {snap.get('reason') or 'its process is gone without a final line'}. "
                   "Resume continues from the last checkpoint.", icon=":material/pause_circle:")
    if snap.get("log_tail"):
        with st.expander("Last lines of the run's log.txt"):
            st.code(snap["log_tail"], language="text")
    m = st.columns(5)
    last_step = steps[-1] if steps else {}
    last_ep = epochs[-1] if epochs else {}
    m[0].metric("Loss (last step)", f"{last_step['loss']:.3f}" if last_step.get("loss") is not None else "–")
    m[1].metric("Test accuracy", f"{100 * last_ep['test_acc']:.1f}%" if last_ep.get("test_acc") is not None else "–",
                help="On the held-out test split, after the latest finished epoch.")
    ips = last_step.get("images_per_s") if live else last_ep.get("images_per_s")
    m[2].metric("Images/s", f"{ips:,.0f}" if ips else "–", help="Training throughput (last step, or last epoch).")
    m[3].metric("Elapsed", _fmt_s(last_step.get("elapsed_s") or last_ep.get("elapsed_s")) if (steps or epochs) else "–")
    m[4].metric("Memory", " ".join((snap.get("memory") or "–").split()[:2]),
                help=snap.get("memory") or "Shown while the run trains.")


def _draw_charts(snap: dict) -> None:
    """Loss per step, accuracy per epoch, lr and throughput (plotly, updated in place)."""
    rid, cfg = snap["run_id"], snap.get("config", {})
    steps, epochs = snap.get("steps", []), snap.get("epochs", [])
    last_step = steps[-1] if steps else {}
    last_ep = epochs[-1] if epochs else {}
    if not steps and not epochs:
        return
    c1, c2, c3 = st.columns(3)
    for col, fig, key, cap in (
        (c1, plots.loss_figure(steps), "loss",
         f"Cross-entropy per logged step (faint) and its exponential moving average (solid); "
         f"{len(steps)} steps logged" + (f", last {last_step['loss']:.4f}." if last_step else ".")),
        (c2, plots.accuracy_figure(epochs), "acc",
         "Share of images classified correctly after each epoch, on the training batches (train) and the "
         "test split (test)" + (f"; epoch {last_ep['epoch']}: train {100 * last_ep['train_acc']:.1f}%, "
                                f"test {100 * last_ep['test_acc']:.1f}%." if last_ep else "; none finished yet.")),
        (c3, plots.lr_figure(steps), "lr",
         f"Learning rate the {cfg.get('schedule')} schedule set at each step, and images per second (right axis, smoothed)"
         + (f"; now {last_step.get('lr', 0):.2e}." if last_step else ".")),
    ):
        fig.update_layout(uirevision=rid, height=300)
        col.plotly_chart(fig, width="stretch", key=f"train_{key}_{rid}")
        col.caption(cap)


def _device_type(preference: str) -> str:
    """'cpu', 'cuda' or 'mps' for a run's device setting ('auto' resolves as the run will)."""
    try:
        return pick_device(preference).type
    except (RuntimeError, ValueError):
        return "cpu"


def _watch(run_dir: Path) -> RunWatch:
    """This session's watcher of a run directory (it reads only what the run appended since)."""
    watches = st.session_state.setdefault("train_watches", {})
    w = watches.get(run_dir.name)
    if w is None or w.run_dir != run_dir:
        w = watches[run_dir.name] = RunWatch(run_dir)
    return w


def _live_view(run_dir: str, refresh_s: int) -> None:
    """One refresh of a live run: status, progress and metrics from the run directory, and the charts
    from the data its ChartHold gives (renewed every CHARTS_EVERY refreshes; between renewals the
    charts sent are identical, so the browser does not redraw them). When the run ends, the page is
    redrawn once with the static view (no more polling)."""
    path = Path(run_dir)
    if not path.is_dir():
        st.warning(f"Run {path.name} is gone from the runs folder.")
        return
    snap = _watch(path).snapshot()
    if snap["status"] == "queued":
        _dispatch()  # a slot may have freed without a run process to pass it on (a killed run)
    _draw_status(snap, live=snap["alive"])
    _actions(snap, live=snap["alive"])
    rid = snap["run_id"]
    holds = st.session_state.setdefault("train_chart_holds", {})
    hold = holds.get(rid)
    if hold is None or hold.period != chart_period(refresh_s):
        hold = holds[rid] = ChartHold(chart_period(refresh_s))
    steps, epochs = hold.view(snap.get("steps", []), snap.get("epochs", []), ended=not snap["alive"])
    _draw_charts({**snap, "steps": steps, "epochs": epochs})
    if not snap["alive"]:
        holds.pop(rid, None)
        st.rerun()


def _dispatch() -> None:
    """Start queued runs where slots are free; a bad CNNVIZ_MAX_RUNS is said once."""
    try:
        runqueue.dispatch()
    except ValueError as exc:
        user_error(f"The queue is not moving: {exc}")
    except OSError as exc:
        user_error(f"The queue is not moving: {exc.strerror or exc}")


# ---------------------------------------------------------------- the runs (from disk)
st.divider()
st.subheader("Runs")
_dispatch()
all_runs = runs.list_runs()
live_runs = [r for r in all_runs if r.status in LIVE]
live_runs.sort(key=lambda r: (r.status == "queued", runqueue.position(r.path) or 0, -r.created))
ended = [r for r in all_runs if r.status not in LIVE]
if not all_runs:
    st.info("No run yet: fill the form above and press **Start training**.", icon=":material/info:")
head = st.container(horizontal=True, vertical_alignment="bottom")
refresh = head.segmented_control(
    "Live refresh", REFRESH_CHOICES, default=DEFAULT_REFRESH, key="train_refresh",
    format_func=lambda c: c if c == "auto" else f"{c} s",
    help="How often a live run's status redraws; its charts redraw every "
         f"{CHARTS_EVERY} refreshes. Each redraw costs the browser some CPU: on a CPU-only machine where "
         "training uses every core, a faster refresh slows training down. 'auto': "
         f"{describe_refresh('auto')}.")
n_queued = sum(r.status == "queued" for r in live_runs)
head.caption(f"{len(live_runs) - n_queued} training now, {n_queued} queued, {len(ended)} ended "
             f"(runs folder `{runs.runs_root()}`). Live views refresh {describe_refresh(refresh)} from the run "
             "directories; runs go on in their own processes when this page or the server closes.")


def _snap_of(r: runs.RunInfo) -> dict:
    """A static snapshot of an ended run (the live views use RunWatch)."""
    return {"run_id": r.run_id, "run_dir": str(r.path), "status": r.status, "config": r.config,
            "steps": r.steps, "epochs": r.epochs,
            "progress": 1.0 if r.status == "finished" else r.finished_epochs / max(1, int(r.config.get("epochs", 1))),
            "error": r.final.get("message") if r.status in ("error", "diverged") else None,
            "advice": r.final.get("advice"), "device": r.start.get("device", ""), "memory": "",
            "reason": r.reason, "log_tail": runs.log_tail(r.path) if r.status in ("interrupted", "error") else ""}


for r in live_runs:
    device_type = r.start.get("device_type") or _device_type(str(r.config.get("device", "auto")))
    refresh_s = refresh_seconds(refresh, device_type)
    with st.container(border=True, key=f"train_run_{r.run_id}"):
        st.fragment(_live_view, run_every=refresh_s)(str(r.path), refresh_s)
for r in ended[:MAX_ENDED_SHOWN]:
    with st.container(border=True, key=f"train_run_{r.run_id}"):
        snap = _snap_of(r)
        _draw_run(snap, live=False)
        _actions(snap, live=False)

# ---------------------------------------------------------------- earlier runs
earlier = ended[MAX_ENDED_SHOWN:]
if earlier:
    with st.expander(f"Earlier runs ({len(earlier)}): resume, download or delete", expanded=False):
        pick = st.selectbox("Run", [r.run_id for r in earlier], key="train_earlier",
                            format_func=lambda rid: next(f"{r.run_id} · {r.status} · {r.finished_epochs} epochs"
                                                         for r in earlier if r.run_id == rid))
        run = next(r for r in earlier if r.run_id == pick)
        snap = _snap_of(run)
        _draw_run(snap, live=False)
        _actions(snap, live=False)
        with st.popover("Config (JSON)"):
            st.code(json.dumps(run.config, indent=2), language="json")
