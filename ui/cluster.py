"""The Train page's view of a Ray cluster (`CNNVIZ_EXECUTOR=ray`): its nodes with CPUs/GPUs free and
total, and where each run runs. Nothing here with the local executor (and Ray is not imported)."""

from __future__ import annotations

import os

import streamlit as st

from cnnviz.runs import RunSnapshot, runs_root
from cnnviz.runs.executor import ExecutorUnavailable, executor, executor_of
from cnnviz.runs.liveness import read_launcher

from .layout import error_line


def on_cluster() -> bool:
    return (os.environ.get("CNNVIZ_EXECUTOR") or "").strip().lower() == "ray"


def _n(x: float) -> str:
    return f"{x:g}"


def cluster_panel() -> None:
    """One line for the cluster (address, nodes, CPUs/GPUs free of total) and a table of its nodes; or
    the one line saying it did not answer (the queue then waits: nothing queued is lost)."""
    if not on_cluster():
        return
    try:
        c = executor().cluster(runs_root())
    except (OSError, ValueError) as exc:
        error_line("Cluster", exc)
        return
    t, f = c["total"], c["free"]
    with st.expander(f"Ray cluster at {c['address']}: {len(c['nodes'])} node(s), CPUs {_n(f['CPU'])} free of "
                     f"{_n(t['CPU'])}, GPUs {_n(f['GPU'])} free of {_n(t['GPU'])}", icon=":material/hub:"):
        st.dataframe([{"node": n["name"] or n["ip"], "id": n["node_id"][:8], "head": "★" if n["head"] else "",
                       "CPUs free": max(0.0, n["free"]["CPU"]), "CPUs": n["total"]["CPU"],
                       "GPUs free": max(0.0, n["free"]["GPU"]), "GPUs": n["total"]["GPU"], "jobs": n["jobs"]}
                      for n in c["nodes"]], hide_index=True, key="train_cluster_nodes")
        st.caption("Runs are submitted as Ray jobs, as many as the cluster can start now, in turns between "
                   "people; Ray's dashboard at the same address shows their logs.")


def node_line(snap: RunSnapshot) -> None:
    """For a run on the cluster: its Ray job and the node it runs (ran) on."""
    rec = read_launcher(snap.run_dir) if on_cluster() or snap.status.training else None
    if not rec or rec.get("executor") != "ray" or not rec.get("job_id"):
        return
    try:
        node = executor_of(rec).node_of(rec, snap.run_dir)
    except (ExecutorUnavailable, ValueError):
        node = None
    st.caption(f"Ray job `{rec['job_id']}` · node {node or 'not placed yet'}")
