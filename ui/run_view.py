"""How one run looks on the Train page: its status icon, its progress line and its three charts
(no widgets: pure drawing from a `RunSnapshot`)."""

from __future__ import annotations

import datetime as _dt

import streamlit as st

from cnnviz import plots
from cnnviz.runs import RunSnapshot, Status, queue

STATUS_ICON = {"starting": ":material/hourglass_top:", "running": ":blue[:material/directions_run:]",
               "finished": ":green[:material/check_circle:]", "stopped": ":orange[:material/stop_circle:]",
               "pruned": ":orange[:material/content_cut:]", "diverged": ":red[:material/warning:]",
               "error": ":red[:material/error:]", "interrupted": ":orange[:material/pause_circle:]",
               "queued": ":material/schedule:"}


def fmt_s(s: float | None) -> str:
    if s is None:
        return "…"
    s = int(round(s))
    return str(_dt.timedelta(seconds=s)) if s >= 60 else f"{s} s"


def progress_text(snap: RunSnapshot) -> str:
    total = int(snap.config.get("epochs", 1))
    if snap.status == Status.QUEUED:
        if queue.paused():
            return f"Waiting in the queue, position {snap.queue_position or '?'}: a teacher paused the queue."
        return (f"Waiting in the queue, position {snap.queue_position or '?'}: it starts when a slot is free "
                f"({queue.max_runs()} run(s) at a time here, taking turns between people).")
    if snap.status.training:
        if not snap.last_step:
            return "Loading data and building the model…"
        return (f"{100 * snap.progress:.0f}% · epoch {snap.last_step.get('epoch', '?')}/{total} · step "
                f"{snap.last_step.get('step')} · ETA {fmt_s(snap.eta_s)}")
    return f"{100 * snap.progress:.0f}% · {snap.status} after {snap.epochs_done} of {total} epochs"


def draw_charts(snap: RunSnapshot) -> None:
    """Loss per step, accuracy per epoch, lr and throughput (plotly)."""
    steps, epochs = snap.steps or [], snap.epochs or []
    if not steps and not epochs:
        return
    rid, step, ep = snap.run_id, snap.last_step, snap.last_epoch
    shown = f"{snap.steps_logged} steps logged" + (f", {len(steps):,} points drawn" if len(steps) < snap.steps_logged
                                                   else "")
    c1, c2, c3 = st.columns(3)
    for col, fig, name, cap in (
        (c1, plots.loss_figure(steps), "loss",
         f"Cross-entropy per logged step (faint) and its exponential moving average (solid); {shown} "
         "(a long run keeps each stretch's lowest and highest loss)" + (f", last {step['loss']:.4f}." if step else ".")),
        (c2, plots.accuracy_figure(epochs), "acc",
         "Share of images classified correctly after each epoch, on the training batches (train) and the "
         "test split (test)" + (f"; epoch {ep['epoch']}: train {100 * ep['train_acc']:.1f}%, "
                                f"test {100 * ep['test_acc']:.1f}%." if ep else "; none finished yet.")),
        (c3, plots.lr_figure(steps), "lr",
         f"Learning rate the {snap.config.get('schedule')} schedule set at each step, and images per second "
         "(right axis, smoothed)" + (f"; now {step.get('lr', 0):.2e}." if step else ".")),
    ):
        fig.update_layout(uirevision=rid, height=300)
        col.plotly_chart(fig, width="stretch", key=f"train_{name}_{rid}")
        col.caption(cap)
