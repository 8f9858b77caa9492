"""Which server process serves this session, when the app runs under `python -m cnnviz serve`.

The launcher gives each worker CNNVIZ_WORKER=wI; the first run of every session in that worker
logs one line to the worker's log (stderr), so an operator (and tests/browser/test_serving.py)
can tell which process holds which session. HAProxy's cookie CNNVIZ_SERVER and response header
X-Served-By name the same worker from the browser's side. Under a plain `streamlit run app.py`
nothing is logged.
"""

from __future__ import annotations

import os
import sys

import streamlit as st

KEY_NOTED = "cnnviz_worker_noted"


def worker_name() -> str | None:
    """This process's worker name (w1, w2, ...) under the launcher, else None."""
    return os.environ.get("CNNVIZ_WORKER") or None


def note_session() -> None:
    """Log 'cnnviz worker wI (pid N): new session ID' once per session (under the launcher only)."""
    name = worker_name()
    if name is None or st.session_state.get(KEY_NOTED) == name:
        return
    st.session_state[KEY_NOTED] = name
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    session = ctx.session_id if ctx is not None else "unknown"
    print(f"cnnviz worker {name} (pid {os.getpid()}): new session {session}", file=sys.stderr, flush=True)
