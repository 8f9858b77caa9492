"""A run's status from what it wrote and what is alive: one rule, used by the reader and the lister."""

from __future__ import annotations

from pathlib import Path

from .executor import executor_of
from .layout import queue_file_for
from .liveness import process_alive, read_launcher, read_pid
from .status_type import Status

NEVER_STARTED = "it was never started: it is not in the queue and no process was started for it"


def decide(run_dir: Path, final: dict | None, any_lines: bool) -> tuple[Status, str]:
    """(status, why) of the run in `run_dir`.

    `final` is the run's last control line when that is a "done" or "error" line (None while a start
    or resume is the latest); `any_lines` says whether metrics.jsonl holds anything. A final line
    decides; otherwise a live training process (pid file) or a live process the executor started
    (launcher.json) means running/starting; otherwise a queue entry means queued; otherwise the run
    ended without a final line, and the executor says why (interrupted, or error: out of memory)."""
    run_dir = Path(run_dir)
    if final is not None:
        if final.get("kind") == "error":
            return Status.ERROR, ""
        return Status.of(final.get("status"), Status.FINISHED), ""
    live = Status.RUNNING if any_lines else Status.STARTING
    pid = read_pid(run_dir)
    if pid is not None and process_alive(*pid):
        return live, ""
    rec = read_launcher(run_dir)
    ex = None
    if rec is not None:
        if rec.get("error"):  # the executor could not start it
            return (Status.QUEUED, "") if queue_file_for(run_dir) else (Status.ERROR, str(rec["error"]))
        try:
            ex = executor_of(rec)
        except ValueError as exc:
            return Status.ERROR, str(exc)
        if ex.alive(run_dir, rec):
            return live, ""
    if queue_file_for(run_dir) is not None:
        return Status.QUEUED, ""
    if ex is not None:
        return ex.why_ended(run_dir, rec)
    if pid is not None:
        return Status.INTERRUPTED, (f"its training process (pid {pid[0]}) is gone without writing a final line: "
                                    "killed (out of memory, kill -9), crashed, or the machine restarted")
    return Status.INTERRUPTED, NEVER_STARTED
