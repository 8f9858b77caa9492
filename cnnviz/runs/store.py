"""Reading runs: `RunSnapshot` (what the pages, the CLI and `runs --json` show of a run), listing from
each run's small summary.json, and the detailed view from a cached incremental reader.

    list_runs()                 # newest first; one summary.json (+ liveness) per run: cost does not grow with steps
    snapshot(run_dir)           # curves too (a bounded step series, all epochs), read incrementally
    read_run(run_dir, all_steps=True)   # a fresh full read (TensorBoard export wants every step)

A run written before summary.json existed is read once in full and, when it has ended, gets its
summary written then.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .layout import (CONFIG_FILE, LAST_WEIGHTS, METRICS_FILE, OWNER_FILE, SUMMARY_FILE, checkpoints, is_run_dir, log_tail,
                     read_config, read_json, root_of, run_dirs, sweep_of, write_json)
from .liveness import read_launcher
from .reader import MetricsReader
from .status import decide
from .status_type import Status

SUMMARY_VERSION = 1
CACHED_READERS = 32


@dataclass
class RunSnapshot:
    """One run as the app shows it. `epochs`/`steps` are None in a listing (summary only)."""

    run_id: str
    run_dir: Path
    status: Status
    config: dict
    created: float = 0.0
    epochs_done: int = 0
    last_epoch: dict = field(default_factory=dict)
    best: dict = field(default_factory=dict)          # {"epoch", "test_acc"} of the best test accuracy
    sweep: dict = field(default_factory=dict)         # {"sweep_id", "params"} or {}
    owner: str | None = None
    reason: str = ""                                  # why it is interrupted / failed to launch
    final: dict = field(default_factory=dict)         # the done/error line's data
    start: dict = field(default_factory=dict)         # the latest start line's data (device, classes, ...)
    steps_logged: int = 0
    last_step: dict = field(default_factory=dict)
    progress: float = 0.0
    eta_s: float | None = None
    memory: str = ""
    queue_position: int | None = None
    epochs: list[dict] | None = None
    steps: list[dict] | None = None

    @property
    def alive(self) -> bool:
        return self.status.live

    @property
    def device(self) -> str:
        return str(self.start.get("device") or "")

    @property
    def error(self) -> str | None:
        if self.status == Status.ERROR and self.reason and not self.final:
            return self.reason
        return self.final.get("message") if self.status in (Status.ERROR, Status.DIVERGED) else None

    @property
    def advice(self) -> str | None:
        return self.final.get("advice") if self.status in (Status.ERROR, Status.DIVERGED) else None

    @property
    def test_acc(self) -> float | None:
        return self.last_epoch.get("test_acc")

    @property
    def checkpoints(self) -> dict[int, Path]:
        return checkpoints(self.run_dir)

    @property
    def last_checkpoint(self) -> Path | None:
        p = self.run_dir / LAST_WEIGHTS
        return p if p.is_file() else None

    def log_tail(self) -> str:
        """The last lines of its log (a Ray job's log from the cluster until it is copied to log.txt)."""
        if self.status not in (Status.INTERRUPTED, Status.ERROR):
            return ""
        rec = read_launcher(self.run_dir)
        if rec and rec.get("executor") == "ray" and rec.get("job_id") and not rec.get("log_copied"):
            try:
                from .executor import executor_of

                return executor_of(rec).log_tail(self.run_dir, rec) or log_tail(self.run_dir)
            except (OSError, ValueError):
                pass
        return log_tail(self.run_dir)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (`runs --json`): paths as strings, the status as its name, no curves."""
        d = {k: v for k, v in asdict(self).items() if k not in ("epochs", "steps")}
        d.update(run_dir=str(self.run_dir), status=str(self.status), epochs=self.config.get("epochs"),
                 test_acc=self.test_acc, sweep_id=self.sweep.get("sweep_id"), reason=self.reason or None)
        return d


# ---------------------------------------------------------------- summaries

def summary_of(reader: MetricsReader, run_dir: Path) -> dict:
    """The summary.json content for a run whose metrics `reader` has read."""
    best = max((e for e in reader.epochs if isinstance(e.get("test_acc"), (int, float))),
               key=lambda e: e["test_acc"], default=None)
    start = {k: reader.start[k] for k in ("device", "device_type", "params", "n_train", "n_test", "world_size")
             if k in reader.start}
    final = reader.final
    return {"version": SUMMARY_VERSION, "created": reader.created, "state": _state(final),
            "final": {k: v for k, v in (final or {}).items() if k != "traceback"},
            "epochs_done": reader.epochs_done, "last_epoch": reader.epochs[-1] if reader.epochs else {},
            "best": {"epoch": best["epoch"], "test_acc": best["test_acc"]} if best else {},
            "steps_logged": reader.steps.count, "last_step": reader.steps.last, "start": start,
            "progress": reader.progress(), "memory": reader.memory}


def _state(final: dict | None) -> str:
    if final is None:
        return "open"
    return "error" if final.get("kind") == "error" else str(final.get("status", "finished"))


def write_summary(run_dir: Path, summary: dict) -> None:
    write_json(Path(run_dir) / SUMMARY_FILE, summary, indent=None)


def _owner(run_dir: Path) -> str | None:
    d = read_json(Path(run_dir) / OWNER_FILE)
    return str(d.get("owner")) if isinstance(d, dict) and d.get("owner") else None


def _from_summary(run_dir: Path, s: dict) -> RunSnapshot:
    final = s.get("final") or None
    if final is not None and s.get("state") == "open":
        final = None
    if final is not None:
        final = {"kind": "error" if s.get("state") == "error" else "done", **final}
    any_lines = bool(s.get("created") or s.get("steps_logged") or s.get("epochs_done"))
    status, reason = decide(run_dir, final, any_lines)
    return _from_summary_parts(run_dir, s, status, reason)


def _mtime(run_dir: Path) -> float:
    for p in (run_dir / CONFIG_FILE, run_dir):
        try:
            return p.stat().st_mtime
        except OSError:
            continue
    return 0.0


# ---------------------------------------------------------------- detailed reads

_READERS: "OrderedDict[str, MetricsReader]" = OrderedDict()
_READERS_LOCK = threading.Lock()


def _reader(run_dir: Path) -> MetricsReader:
    """This process's incremental reader of a run (a bounded LRU shared by the server's sessions)."""
    key = str(Path(run_dir).resolve())
    with _READERS_LOCK:
        r = _READERS.get(key)
        if r is None:
            r = _READERS[key] = MetricsReader(Path(run_dir) / METRICS_FILE)
        _READERS.move_to_end(key)
        while len(_READERS) > CACHED_READERS:
            _READERS.popitem(last=False)
    return r


def _snapshot_from(reader: MetricsReader, run_dir: Path) -> RunSnapshot:
    status, reason = decide(run_dir, reader.final, reader.any)
    s = summary_of(reader, run_dir)
    snap = _from_summary_parts(run_dir, s, status, reason)
    snap.epochs = list(reader.epochs)
    snap.steps = reader.steps.points()
    snap.eta_s = reader.eta_s() if status == Status.RUNNING else None
    return snap


def _from_summary_parts(run_dir: Path, s: dict, status: Status, reason: str) -> RunSnapshot:
    return RunSnapshot(
        run_id=run_dir.name, run_dir=run_dir, status=status, config=read_config(run_dir),
        created=float(s.get("created") or _mtime(run_dir)), epochs_done=int(s.get("epochs_done") or 0),
        last_epoch=dict(s.get("last_epoch") or {}), best=dict(s.get("best") or {}), sweep=sweep_of(run_dir),
        owner=_owner(run_dir), reason=reason, final=dict(s.get("final") or {}), start=dict(s.get("start") or {}),
        steps_logged=int(s.get("steps_logged") or 0),
        last_step=dict(s.get("last_step") or {}),
        progress=1.0 if status == Status.FINISHED else float(s.get("progress") or 0.0),
        memory=str(s.get("memory") or "") if status == Status.RUNNING else "")


def snapshot(run_dir: Path) -> RunSnapshot:
    """The run with its curves (all epochs, at most MAX_POINTS steps), reading only what was appended
    since this process last looked. FileNotFoundError when `run_dir` is not a run."""
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise FileNotFoundError(f"No run directory at {run_dir}.")
    r = _reader(run_dir)
    with r.lock:
        r.read()
        snap = _snapshot_from(r, run_dir)
    _with_queue_position(snap)
    return snap


def read_run(run_dir: Path, all_steps: bool = False) -> RunSnapshot:
    """A fresh full read of a run (every step with `all_steps`). FileNotFoundError when it is not a run."""
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise FileNotFoundError(f"No run directory at {run_dir}.")
    r = MetricsReader(run_dir / METRICS_FILE, max_points=None if all_steps else 2000)
    r.read()
    return _snapshot_from(r, run_dir)


def summary(run_dir: Path) -> RunSnapshot:
    """The run from its summary.json (no curves). A run without one (written before summaries, or by a
    process that has not reached its first line) is read in full once; an ended one gets its summary."""
    run_dir = Path(run_dir)
    s = read_json(run_dir / SUMMARY_FILE)
    if isinstance(s, dict) and s.get("version") == SUMMARY_VERSION:
        return _from_summary(run_dir, s)
    r = MetricsReader(run_dir / METRICS_FILE)
    r.read()
    snap = _snapshot_from(r, run_dir)
    if r.final is not None:  # ended: what it holds will not change
        try:
            write_summary(run_dir, summary_of(r, run_dir))
        except OSError:
            pass
    snap.epochs = snap.steps = None
    return snap


def _with_queue_position(snap: RunSnapshot) -> None:
    if snap.status == Status.QUEUED:
        from .queue import position

        snap.queue_position = position(snap.run_dir)


def list_runs(root: Path | None = None) -> list[RunSnapshot]:
    """Every run under `root` (default: the runs root) from its summary, newest first."""
    out = []
    for d in run_dirs(root_of(root)):
        try:
            out.append(summary(d))
        except OSError:
            continue
    queued = [s for s in out if s.status == Status.QUEUED]
    if queued:
        from .queue import positions

        pos = positions(root)
        for s in queued:
            s.queue_position = pos.get(s.run_id)
    return sorted(out, key=lambda r: (r.created, r.run_id), reverse=True)
