"""Train: a form that queues runs (each its own process) or a sweep of them, and live views of every
run under the runs folder, read from the run directories (they outlive this server).

The form is built from `TrainConfig.settings()` (each field's type, help, choices and bounds), so a
new training setting appears here, in the CLI and in sweeps at once.

With sign-in each user sees and manages their own runs (admins: all), and every action passes the
acting user to the backend, which refuses a run that is not theirs; the queue is shown anonymised
("3 runs ahead of yours, from 2 people")."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from cnnviz import augment, data, models
from cnnviz.device import available_devices
from cnnviz.models.design import design_names
from cnnviz.runs import LAST_WEIGHTS, NotAllowed, RunSnapshot, Status, delete_run, list_runs, queue, request_stop, runs_root
from cnnviz.runs import snapshot as run_snapshot
from cnnviz.runs import access, manage, search, sweeps
from cnnviz.runs.quotas import Limits
from cnnviz.train import PRESETS, TrainConfig
from cnnviz.uploads import list_uploads, uploads_dir
from cnnviz.users import User, display_name, known
from ui import auth
from ui.cluster import cluster_panel, node_line
from ui.layout import error_line, page_header
from ui.run_view import STATUS_ICON, draw_charts, fmt_s, progress_text
from ui.live import (DEFAULT_REFRESH, LIVE_CSS, REFRESH_CHOICES, REFRESH_HELP, chart_seconds, describe_refresh,
                     refresh_label, refresh_seconds)

MAX_ENDED_SHOWN = 4   # most recent ended runs shown as cards below the live ones
STUDIO = "studio pipeline"
PATH_CHOICE = "folder or zip (path below)"
BATCH_SIZES = [16, 32, 64, 128, 256, 512, 1024, 2048]
LRS = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.2, 0.4, 1.0]
FIELDS = {f.name: f for f in TrainConfig.settings()}
DEFAULTS = TrainConfig()
FORM_ONLY = {"train_path": "", "train_nproc": 1}


def me() -> User:
    """The acting user (LOCAL without sign-in); a page that is signed out stops before this is called."""
    return auth.current_user() or auth.require_user()


def visitor() -> str:
    """Whose limits a request counts against: the signed-in user (two tabs of one user share them);
    without sign-in this browser session."""
    return auth.visitor(me())


def limits() -> Limits:
    """The limits of the acting user: the environment's and the teacher's quota; without sign-in no
    running-at-once or storage limit (one user, nothing to share)."""
    if not auth.sign_in_configured():
        return Limits.from_env().local()
    return Limits.for_user(me().id)


def key(name: str) -> str:
    """The session-state key of a TrainConfig field's widget."""
    return f"train_{name}"


def sweep_key(name: str) -> str:
    return f"train_sweep_{name}"


# ---------------------------------------------------------------- choices
def model_choices() -> list[str]:
    """Registered models made for small (<= 64 px) inputs, then the designs saved on the Architectures page
    (the shared designs folder, and the user's own with sign-in)."""
    mine = design_names(auth.designs_folder(me())) if auth.sign_in_configured() else []
    names = list(dict.fromkeys(models.names() + models.design_names() + mine))
    return [n for n in names if models.info(n).input_size <= 64]


def upload_choices() -> list[str]:
    """The user's kept uploads (Datasets page) as zip: datasets, with sign-in."""
    user = me()
    if not auth.sign_in_configured() or user.id == "local":
        return []
    return [f"zip:{(uploads_dir(user.id) / name).resolve()}" for name, _ in list_uploads(user.id)]


def augment_choices() -> list[str]:
    names = list(augment.preset_names())
    if st.session_state.get("augment_pipeline_json"):
        names.append(STUDIO)
    return names


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def options() -> dict[str, list]:
    """Fields offered as a list of values (the form's selects and the sweep's multiselects)."""
    paths = [PATH_CHOICE] if me().is_admin else []  # paths on the server: admins (and the local user) only
    opts = {"model": model_choices(), "dataset": data.dataset_choices() + upload_choices() + paths,
            "augment": augment_choices(), "lr": LRS, "batch_size": BATCH_SIZES,
            "device": ["auto"] + available_devices()}
    for name, f in FIELDS.items():
        if f.metadata.get("choices") and name not in opts:
            opts[name] = list(f.metadata["choices"])
    return opts


def init_state(opts: dict[str, list]) -> None:
    """Defaults for every widget, and values no longer offered put back to the first choice."""
    ss = st.session_state
    for name in FIELDS:
        default = getattr(DEFAULTS, name)
        ss.setdefault(key(name), 0 if default is None else default)
        if name in opts and opts[name]:
            ss.setdefault(sweep_key(name), [])
            if ss[key(name)] not in opts[name]:
                ss[key(name)] = default if default in opts[name] else opts[name][0]
    for k, v in FORM_ONLY.items():
        ss.setdefault(k, v)


def apply_preset() -> None:
    """on_change of the 'Start from' box: copy every field the preset sets into the form."""
    name = st.session_state.get("train_preset", "custom")
    opts = options()
    for field, val in PRESETS.get(name, {}).items():
        if field in opts and val not in opts[field]:
            continue
        st.session_state[key(field)] = val


# ---------------------------------------------------------------- the form
def config_from_form() -> TrainConfig:
    """The form's values as a TrainConfig (not yet validated)."""
    ss = st.session_state
    values = {name: ss[key(name)] for name in FIELDS}
    if values["dataset"] == PATH_CHOICE:
        path = (ss.get("train_path") or "").strip()
        if not path:
            raise ValueError("Type the path of an image folder (class sub-folders) or a .zip file.")
        values["dataset"] = data.visitor_spec(("zip:" if path.lower().endswith(".zip") else "folder:") + path)
    if values["augment"] == STUDIO:
        values["augment"] = ss.get("augment_pipeline_json") or "none"
    for name in ("limit_train", "limit_test"):
        values[name] = int(values[name]) or None
    return TrainConfig.from_dict(values)


def field_widget(col, name: str, opts: dict[str, list]) -> None:
    """One TrainConfig field's widget, chosen from its type and metadata."""
    f = FIELDS[name]
    label, help_ = f.metadata.get("label") or name.replace("_", " ").capitalize(), f.metadata.get("help")
    if name in ("lr", "batch_size"):
        col.select_slider(label, opts[name], key=key(name), help=help_, format_func=lambda v: f"{v:g}")
    elif name in opts:
        fmt = (lambda n: f"{n} ({models.info(n).family or 'CNN'})") if name == "model" else str
        col.selectbox(label, opts[name], key=key(name), help=help_, format_func=fmt)
    elif str(f.type) == "bool":
        col.checkbox(label, key=key(name), help=help_)
    else:
        low, high = f.metadata.get("low"), f.metadata.get("high")
        if name.startswith("limit_"):
            low = 0  # 0 = all (None)
        is_int = str(f.type).startswith("int")
        col.number_input(label, min_value=int(low) if is_int else float(low), max_value=int(high) if is_int
                         else float(high), step=1 if is_int else None, key=key(name), help=help_,
                         format=None if is_int else "%g")


def draw_form(opts: dict[str, list], n_gpus: int) -> bool:
    """The new-run form; True when Start was pressed."""
    presets_here = ["custom"] + [p for p in PRESETS if PRESETS[p].get("model", "lenet5") in opts["model"]]
    st.selectbox("Start from", presets_here, key="train_preset", on_change=apply_preset,
                 help="Fill the form from a named configuration: 'tutorial' is the notes' LeNet5 set-up, "
                      "'speedrun' an airbench-style CIFAR-10 recipe for a CUDA GPU.")
    with st.form("train_form", border=True):
        names = list(FIELDS)
        for row in range(0, len(names), 4):
            cols = st.columns(4)
            for col, name in zip(cols, names[row:row + 4]):
                field_widget(col, name, opts)
        c1, c2, _, _ = st.columns(4)
        if PATH_CHOICE in opts["dataset"]:
            c1.text_input("Folder or .zip path", key="train_path", placeholder="/path/to/images (class sub-folders)",
                          help="Used when the dataset is 'folder or zip': an ImageFolder layout, or a zip of one.")
        if n_gpus > 1:
            c2.number_input("Processes", 1, n_gpus, step=1, key="train_nproc",
                            help=f"DistributedDataParallel over this many of the {n_gpus} GPUs (torchrun); "
                                 "the batch size is the global batch, split evenly.")
        st.markdown("**Sweep** (optional): several values make a grid of runs, one per combination, queued "
                    "together; empty boxes keep the single value above.")
        swept = [n for n in opts if FIELDS[n].metadata.get("sweep", True)]
        for row in range(0, len(swept), 4):
            cols = st.columns(4)
            for col, name in zip(cols, swept[row:row + 4]):
                col.multiselect(name.replace("_", " ").capitalize() + " (sweep)",
                                [v for v in opts[name] if v not in (STUDIO, PATH_CHOICE)], key=sweep_key(name),
                                format_func=(lambda v: f"{v:g}") if name in ("lr",) else str)
        search_controls()
        return st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:",
                                     key="train_start")


def sweep_grid() -> dict[str, list]:
    """The sweep boxes that hold values: field -> values."""
    return {name: list(st.session_state[sweep_key(name)]) for name in FIELDS
            if st.session_state.get(sweep_key(name))}


def start(n_gpus: int) -> None:
    """Check the form and the dataset (cheaply: existence and format), then queue a run or a sweep."""
    try:
        cfg = config_from_form()
        cfg.validate()
        data.check_dataset(cfg.dataset)
    except (ValueError, TypeError, OSError) as exc:
        error_line("Not started", exc)
        return
    n = int(st.session_state.get("train_nproc") or 1) if n_gpus > 1 else 1
    nproc = n if n > 1 else None  # one process: no torchrun
    if st.session_state.get("train_search_on"):
        start_search(cfg, nproc)
        return
    try:
        grid = sweep_grid()
        if grid:
            sweep_id, dirs = sweeps.submit_grid(grid, base=cfg.to_dict(), nproc=nproc, visitor=visitor(),
                                                limits=limits(), by=me())
            st.toast(f"Sweep {sweep_id}: {len(dirs)} runs queued", icon=":material/grid_view:")
            return
        run_dir = queue.submit(cfg, nproc=nproc, visitor=visitor(), limits=limits(), by=me())
    except (ValueError, OSError) as exc:
        error_line("Not started", exc)
        return
    pos = queue.position(run_dir)
    st.toast(f"Run {run_dir.name} " + (f"queued (position {pos})" if pos else "started"), icon=":material/play_arrow:")


# ---------------------------------------------------------------- search (Optuna) instead of a grid
def range_fields() -> list[str]:
    """Number settings a search can give a range (from TrainConfig.settings(): sweepable ints and floats)."""
    return [n for n, f in FIELDS.items() if f.metadata.get("sweep", True) and not n.startswith("limit_")
            and (str(f.type) == "float" or str(f.type).startswith("int")) and f.metadata.get("low") is not None]


def search_controls() -> None:
    """Inside the form: search instead of a grid: sampler, trials, parallel, pruner and ranges."""
    st.markdown("**Search** (optional, instead of a grid): Optuna's sampler picks each next run's settings "
                "from the ranges below and the sweep boxes' values, and its pruner stops runs that are behind "
                "after an epoch.")
    c = st.columns(5)
    c[0].toggle("Search", key="train_search_on",
                help="On: Start makes a search (trials below) instead of a grid of every combination.")
    c[1].selectbox("Sampler", search.SAMPLERS, key="train_search_sampler", format_func=str.upper,
                   help="TPE models which settings did well; random samples evenly.")
    c[2].number_input("Trials", 1, search.MAX_TRIALS, 16, key="train_search_trials", help="Runs in all.")
    c[3].number_input("Parallel", 1, 64, 1, key="train_search_parallel",
                      help="Trials queued or training at once (the queue still runs as many as the device allows).")
    c[4].selectbox("Pruner", search.PRUNERS, key="train_search_pruner",
                   format_func={"median": "median", "asha": "ASHA (successive halving)", "hyperband": "Hyperband",
                                "none": "none"}.get,
                   help="median: stop a trial whose accuracy after an epoch is below the median of the finished "
                        "trials' at that epoch.")
    names = range_fields()
    for row in range(0, len(names), 4):
        cols = st.columns(4)
        for col, name in zip(cols, names[row:row + 4]):
            f = FIELDS[name]
            col.text_input(f"{name.replace('_', ' ').capitalize()} range", key=f"train_range_{name}",
                           placeholder="1e-4:1e-1:log" if name == "lr" else "low:high",
                           help=f"low:high, or low:high:log for a log scale (bounds {f.metadata['low']:g}.."
                                f"{f.metadata['high']:g}); empty: not searched.")


def search_space_from_form() -> dict:
    """The search space the form gives: ranges typed in, and the sweep boxes' values as choices."""
    space: dict = {n: st.session_state[f"train_range_{n}"].strip() for n in range_fields()
                   if (st.session_state.get(f"train_range_{n}") or "").strip()}
    for name, values in sweep_grid().items():
        if name in space:
            raise ValueError(f"{name}: give a range or values in the sweep box, not both.")
        space[name] = values
    return space


def start_search(cfg: TrainConfig, nproc: int | None) -> None:
    ss = st.session_state
    try:
        sid = search.create(search_space_from_form(), base=cfg.to_dict(), sampler=ss["train_search_sampler"],
                            trials=int(ss["train_search_trials"]), parallel=int(ss["train_search_parallel"]),
                            pruner=ss["train_search_pruner"], nproc=nproc)
    except (ValueError, OSError) as exc:
        error_line("Search not started", exc)
        return
    st.toast(f"Search {sid}: its first trials are queued", icon=":material/travel_explore:")


def advance_searches() -> None:
    """Keep the searches going (report epochs, prune, ask trials): at most every 2 s per session, skipping
    a search another process is advancing right now."""
    import time

    now = time.monotonic()
    if now - st.session_state.get("train_search_advanced", 0.0) < 2.0:
        return
    st.session_state["train_search_advanced"] = now
    try:
        search.advance_all()
    except (ValueError, OSError, RuntimeError) as exc:
        error_line("A search did not advance", exc)


# ---------------------------------------------------------------- one run's view
def export_text(run_dir: Path, user: User) -> str:
    return manage.training_script(run_dir, by=user)


def resume_box(snap: RunSnapshot, row) -> None:
    rid, done = snap.run_id, snap.epochs_done
    with row.popover("Resume", icon=":material/play_arrow:"):
        # a run's config may ask for more epochs than this server now allows (a CLI run, a lowered
        # limit): the box is clamped to the limit, and a run already at the limit is told so
        most = limits().max_epochs or int(FIELDS["epochs"].metadata["high"])
        least = max(1, done + (snap.status == Status.FINISHED))
        if least > most:
            st.caption(f"This run has {done} epochs; this server allows {most} per run, so it can't train further.")
            return
        total = st.number_input("Train until epoch", min_value=least, max_value=most,
                                value=min(most, max(int(snap.config.get("epochs", 1)), done + 1)), step=1,
                                key=f"train_resume_ep_{rid}")
        if st.button("Resume from the last checkpoint", key=f"train_resume_{rid}", type="primary"):
            try:
                queue.submit(TrainConfig.from_dict({**snap.config, "epochs": int(total)}), resume_run_dir=snap.run_dir,
                             visitor=visitor(), limits=limits(), by=me())
                st.rerun()
            except (ValueError, NotAllowed) as exc:
                error_line("Can't resume", exc)


def delete_confirm(snap: RunSnapshot) -> None:
    rid = snap.run_id
    st.warning(f"Delete run **{rid}** and all its checkpoints? This can't be undone.")
    c1, c2, _ = st.columns([1, 1, 4])
    if c1.button("Yes, delete", key=f"train_delete_yes_{rid}", type="primary"):
        try:
            delete_run(snap.run_dir, by=me())
            st.session_state.pop(f"train_confirm_delete_{rid}", None)
            st.toast(f"Deleted {rid}")
            st.rerun()
        except (ValueError, OSError) as exc:  # NotAllowed is an OSError (PermissionError)
            error_line("Not deleted", exc)
    if c2.button("Cancel", key=f"train_delete_no_{rid}"):
        st.session_state.pop(f"train_confirm_delete_{rid}", None)
        st.rerun()


def actions(snap: RunSnapshot) -> None:
    """Cancel (queued), Stop (training), or Resume / Delete / downloads (ended) for one run; none for a run
    the user may not manage (the backend would refuse it anyway)."""
    rid, run_dir = snap.run_id, snap.run_dir
    if not access.may_manage(me(), run_dir, snap.owner):
        st.caption(":material/lock: Someone else's run: only its owner and the teachers can stop, delete or "
                   "download it.")
        return
    row = st.container(horizontal=True, gap="small")
    if snap.status == Status.QUEUED:
        if row.button("Cancel", key=f"train_cancel_{rid}", icon=":material/cancel:",
                      help="Takes the run out of the queue (a new run that never started is removed)."):
            try:
                queue.cancel(run_dir, by=me())
            except NotAllowed as exc:
                error_line("Not cancelled", exc)
                return
            st.toast(f"Cancelled {rid}")
            st.rerun()
        return
    if snap.alive:
        if row.button("Stop", key=f"train_stop_{rid}", icon=":material/stop:",
                      help="Ends the run at the next step and saves a checkpoint (status 'stopped')."):
            try:
                request_stop(run_dir, by=me())
            except NotAllowed as exc:
                error_line("Not stopped", exc)
                return
            st.toast(f"Stopping {rid}…")
        return
    last = run_dir / LAST_WEIGHTS
    if last.is_file():
        resume_box(snap, row)
    confirm_key = f"train_confirm_delete_{rid}"
    if not st.session_state.get(confirm_key):
        if row.button("Delete", key=f"train_delete_{rid}", icon=":material/delete:"):
            st.session_state[confirm_key] = True
            st.rerun()
    if last.is_file():
        row.download_button("Checkpoint", data=lambda d=run_dir, u=me(): manage.checkpoint_bytes(d, by=u),
                            file_name=f"{rid}.safetensors",
                            mime="application/octet-stream", key=f"train_dl_ckpt_{rid}",
                            icon=":material/download:", on_click="ignore",
                            help="The newest weights (safetensors with the run's metadata).")
        row.download_button("Training script", data=lambda d=run_dir, u=me(): export_text(d, u),
                            file_name=f"train_{rid}.py", mime="text/x-python", key=f"train_dl_script_{rid}",
                            icon=":material/code:", on_click="ignore",
                            help="A standalone PyTorch script that reproduces this run.")
    if st.session_state.get(confirm_key):
        delete_confirm(snap)


def draw_status(snap: RunSnapshot) -> None:
    """Status line, progress bar with ETA, error and advice, and the headline metrics."""
    cfg = snap.config
    by = ""
    if auth.sign_in_configured() and me().is_admin:
        by = " · yours" if snap.owner == me().id else f" · {display_name(snap.owner, known(runs_root()))}"
    st.markdown(f"#### {STATUS_ICON.get(str(snap.status), '')} `{snap.run_id}` · {snap.status}{by}")
    st.caption(f"{cfg.get('model')} on {cfg.get('dataset')} · augment {str(cfg.get('augment'))[:40]} · "
               f"{cfg.get('optimizer')} lr {cfg.get('lr', 0):g} ({cfg.get('schedule')}) · batch "
               f"{cfg.get('batch_size')} · {cfg.get('epochs')} epochs · device {snap.device or cfg.get('device')}")
    node_line(snap)
    st.progress(0.0 if snap.status == Status.QUEUED else snap.progress, text=progress_text(snap))
    if snap.error:
        st.error(snap.error, icon=":material/error:")
        if snap.advice:
            st.info(snap.advice, icon=":material/lightbulb:")
    if snap.status == Status.PRUNED:
        st.info(f"{snap.final.get('message') or 'Pruned by the search.'} Its test accuracy was behind the "
                "search's other trials at that epoch; Resume continues it.", icon=":material/content_cut:")
    if snap.status == Status.INTERRUPTED:
        st.warning(f"Interrupted: {snap.reason or 'its process is gone without a final line'}. "
                   "Resume continues from the last checkpoint.", icon=":material/pause_circle:")
    tail = snap.log_tail()
    if tail:
        with st.expander("Last lines of the run's log.txt"):
            st.code(tail, language="text")
    m = st.container(horizontal=True)   # cheaper for the browser to redraw each second than st.columns
    step, ep = snap.last_step, snap.last_epoch
    m.metric("Loss (last step)", f"{step['loss']:.3f}" if step.get("loss") is not None else "–")
    m.metric("Test accuracy", f"{100 * ep['test_acc']:.1f}%" if ep.get("test_acc") is not None else "–",
             help="On the held-out test split, after the latest finished epoch.")
    ips = step.get("images_per_s") if snap.alive else ep.get("images_per_s")
    m.metric("Images/s", f"{ips:,.0f}" if ips else "–", help="Training throughput (last step, or last epoch).")
    elapsed = step.get("elapsed_s") or ep.get("elapsed_s")
    m.metric("Elapsed", fmt_s(elapsed) if elapsed else "–")
    m.metric("Memory", " ".join((snap.memory or "–").split()[:2]), help=snap.memory or "Shown while the run trains.")


def dispatch() -> None:
    """Start queued runs where slots are free (a killed run could not pass its slot on)."""
    try:
        queue.dispatch()
    except (ValueError, OSError) as exc:
        if not isinstance(exc, queue.ExecutorUnavailable):  # a cluster that did not answer: cluster_panel says it
            error_line("The queue is not moving", exc)


def live_status(run_dir: str) -> None:
    """Refreshed every status period: status, progress, metrics and actions. When the run ends the
    whole page reruns once (its static view, no more polling)."""
    try:
        snap = run_snapshot(Path(run_dir))
    except FileNotFoundError:
        st.warning(f"Run {Path(run_dir).name} is gone from the runs folder.")
        return
    if snap.status == Status.QUEUED:
        dispatch()
    if snap.sweep.get("search"):
        advance_searches()
    draw_status(snap)
    actions(snap)
    if not snap.alive:
        st.rerun()


def live_charts(run_dir: str) -> None:
    """Refreshed every chart period: the charts, from the same cached reader (only new bytes are read)."""
    try:
        draw_charts(run_snapshot(Path(run_dir)))
    except FileNotFoundError:
        return


def draw_runs(all_runs: list[RunSnapshot]) -> None:
    """Every run under the runs folder: live ones refreshing, the latest ended ones, then the rest."""
    st.divider()
    st.subheader("Runs")
    live = sorted((r for r in all_runs if r.alive),
                  key=lambda r: (r.status == Status.QUEUED, r.queue_position or 0, -r.created))
    ended = [r for r in all_runs if not r.alive]
    if not all_runs:
        st.info("No run yet: fill the form above and press **Start training**.", icon=":material/info:")
    head = st.container(horizontal=True, vertical_alignment="bottom")
    refresh = head.segmented_control(
        "Live refresh", REFRESH_CHOICES, default=DEFAULT_REFRESH, key="train_refresh",
        format_func=refresh_label, help=REFRESH_HELP)
    secs = refresh_seconds(refresh)
    if not secs and live:
        head.button("Refresh", key="train_refresh_now", icon=":material/refresh:",
                    help="Redraw the live runs once (the runs train on either way).")
    st.html(LIVE_CSS)
    n_queued = sum(r.status == Status.QUEUED for r in live)
    head.caption(f"{len(live) - n_queued} training now, {n_queued} queued, {len(ended)} ended (runs folder "
                 f"`{runs_root()}`). Live views: {describe_refresh(secs)}; runs go on in their own processes "
                 "when this page or the server closes.")
    for r in live:
        with st.container(border=True, key=f"train_run_{r.run_id}"):
            st.fragment(live_status, run_every=secs or None)(str(r.run_dir))
            st.fragment(live_charts, run_every=chart_seconds(secs))(str(r.run_dir))
    for r in ended[:MAX_ENDED_SHOWN]:
        with st.container(border=True, key=f"train_run_{r.run_id}"):
            snap = run_snapshot(r.run_dir)
            draw_status(snap)
            draw_charts(snap)
            actions(snap)
    earlier = ended[MAX_ENDED_SHOWN:]
    if earlier:
        with st.expander(f"Earlier runs ({len(earlier)}): resume, download or delete", expanded=False):
            pick = st.selectbox("Run", [r.run_id for r in earlier], key="train_earlier",
                                format_func=lambda rid: next(f"{r.run_id} · {r.status} · {r.epochs_done} epochs"
                                                             for r in earlier if r.run_id == rid))
            snap = run_snapshot(next(r.run_dir for r in earlier if r.run_id == pick))
            draw_status(snap)
            draw_charts(snap)
            actions(snap)
            with st.popover("Config (JSON)"):
                st.code(json.dumps(snap.config, indent=2), language="json")


def queue_panel(mine: list[RunSnapshot]) -> None:
    """With sign-in: the whole queue anonymised and where the user's runs stand; for admins the queue
    with names, and Pause / Resume."""
    if not auth.sign_in_configured():
        return
    user = me()
    waiting = queue.entries()
    people = len({e.owner for e in waiting})
    mine_ids = {r.run_id for r in mine if r.status == Status.QUEUED and r.owner == user.id}
    ahead = queue.ahead_of(mine_ids) if mine_ids else None
    text = f"**Queue:** {len(waiting)} run(s) waiting, from {people} {'person' if people == 1 else 'people'}"
    if ahead is not None and ahead[0] == 0:
        text += "; yours is next"
    elif ahead is not None:
        text += f"; {ahead[0]} run(s) ahead of yours, from {ahead[1]} {'person' if ahead[1] == 1 else 'people'}"
    text += ". Runs start in turns: whoever started a run least recently goes next."
    row = st.container(horizontal=True, vertical_alignment="center")
    paused = queue.paused()
    row.markdown(text + (f" **Paused** by {paused.get('by', 'a teacher')}." if paused else ""))
    if not user.is_admin:
        return
    if paused:
        if row.button("Resume the queue", key="train_queue_resume", icon=":material/play_arrow:"):
            queue.unpause(by=user)
            st.rerun()
    elif row.button("Pause the queue", key="train_queue_pause", icon=":material/pause:",
                    help="Runs that train go on; nothing new starts until you resume it."):
        queue.pause(by=user)
        st.rerun()
    if waiting:
        names = known(runs_root())
        pos = queue.positions()
        st.dataframe([{"place": pos.get(e.run_dir.name), "run": e.run_dir.name,
                       "owner": display_name(e.owner, names)}
                      for e in sorted(waiting, key=lambda e: pos.get(e.run_dir.name, 0))],
                     hide_index=True, key="train_queue_table")
        st.caption("The whole queue in the order runs will start (teachers only see the names).")


def main() -> None:
    page_header(
        "Train",
        "Pick a model and a dataset and press **Start**: each run trains in a process of its own on the best "
        "device here (one at a time per device; more wait in a queue), and the charts below follow it live "
        "(loss per step, accuracy per epoch, learning rate and throughput). Closing the tab, or restarting "
        "the server, does not stop a run. Give several values to **sweep** a grid of settings. Stopped or "
        "interrupted runs can be resumed; every run keeps its checkpoints for the **Runs** page.",
    )
    user = auth.require_user()
    opts = options()
    init_state(opts)
    n_gpus = gpu_count()
    cluster_panel()
    dispatch()
    advance_searches()
    any_live = any(r.alive for r in access.mine(user, list_runs()))
    with st.expander("New run", expanded=not any_live, icon=":material/add_circle:"):
        if draw_form(opts, n_gpus):
            start(n_gpus)
    mine = access.mine(user, list_runs())
    queue_panel(mine)
    draw_runs(mine)


main()
