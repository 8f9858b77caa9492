"""Every run in its own process, through a persistent FIFO queue under the runs root.

    run_dir = submit(config)          # queued (a file in <runs>/.queue/), started at once if a slot is free
    dispatch()                        # start queued runs while fewer than max_runs() are training
    position(run_dir), cancel(run_dir), entries()

A run is `python -m cnnviz train --config <run>/config.json --run-dir <run>` (argv list, no shell),
in a session of its own (it outlives the server that started it), stdout/stderr in `log.txt`;
`launcher.json` records its pid and start time. Dispatch holds an exclusive file lock
(<runs>/.queue/lock), so two servers, or a server and a CLI, never start one queued run twice.
A run process dispatches the next queued run as it exits, so the queue moves on with no browser
open; a server dispatches on its polls too (after a run that was killed and could not).

`CNNVIZ_MAX_RUNS` caps the runs training at once (default: one per CUDA GPU, and 1 on a
machine without, where runs compete for the same cores); runs started outside the queue (a CLI in
a terminal) count too.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import runs
from .config import TrainConfig

QUEUE_DIR = ".queue"
LOCK_FILE = "lock"
SWEEP_FILE = "sweep.json"  # in a run directory: {"sweep_id": ..., "params": {...}}
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds the cnnviz package


@dataclass(frozen=True)
class Entry:
    """One queued run: its queue file, run directory, and how to start it."""

    path: Path
    run_dir: Path
    resume: bool
    nproc: int | None
    queued_at: float


def max_runs() -> int:
    """Runs allowed to train at once: $CNNVIZ_MAX_RUNS, else one per CUDA GPU (1 without)."""
    raw = os.environ.get("CNNVIZ_MAX_RUNS", "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            raise ValueError(f"CNNVIZ_MAX_RUNS must be a whole number, not {raw!r}.") from None
        if n < 1:
            raise ValueError(f"CNNVIZ_MAX_RUNS must be at least 1, not {n}.")
        return n
    try:
        import torch

        return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1
    except Exception:  # noqa: BLE001 - no usable torch.cuda: one at a time
        return 1


def _qdir(root: Path | None) -> Path:
    return (Path(root) if root is not None else runs.runs_root()) / QUEUE_DIR


@contextlib.contextmanager
def _locked(root: Path | None):
    """An exclusive lock on the queue of `root` (blocking; released when the block ends or the process dies)."""
    import fcntl

    q = _qdir(root)
    q.mkdir(parents=True, exist_ok=True)
    with open(q / LOCK_FILE, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def entries(root: Path | None = None) -> list[Entry]:
    """The queued runs of `root`, oldest first (a garbled queue file is skipped)."""
    q = _qdir(root)
    if not q.is_dir():
        return []
    out = []
    for p in sorted(q.glob("*.json")):
        try:
            d = json.loads(p.read_text())
            nproc = d.get("nproc")
            out.append(Entry(p, Path(d["run_dir"]), bool(d.get("resume")), int(nproc) if nproc else None,
                             float(d.get("queued_at", 0.0))))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def entry_for(run_dir: Path) -> Entry | None:
    """The queue entry of `run_dir` (in its parent's queue), or None."""
    run_dir = Path(run_dir)
    q = run_dir.parent / QUEUE_DIR
    if not q.is_dir():
        return None
    for p in q.glob(f"*-{run_dir.name}.json"):
        return next((e for e in entries(run_dir.parent) if e.path == p), None)
    return None


def position(run_dir: Path) -> int | None:
    """1-based place of `run_dir` in its queue, or None when it is not queued."""
    run_dir = Path(run_dir)
    for i, e in enumerate(entries(run_dir.parent), 1):
        if e.run_dir.name == run_dir.name:
            return i
    return None


def submit(config: TrainConfig, root: Path | None = None, *, resume_run_dir: Path | None = None,
           nproc: int | None = None, sweep: dict | None = None, dispatch_now: bool = True) -> Path:
    """Queue a run of `config` (ValueError if it is invalid) and dispatch; returns its run directory.

    `resume_run_dir` queues a resume of that run (with `config`, e.g. more epochs) instead of a new
    run. `sweep` ({"sweep_id", "params"}) is written beside the config."""
    from ..models.checkpoints import atomic_write_bytes

    config.validate()
    root = Path(root) if root is not None else runs.runs_root()
    root.mkdir(parents=True, exist_ok=True)
    if resume_run_dir is not None:
        run_dir = Path(resume_run_dir)
        if not (run_dir / runs.CONFIG_FILE).is_file():
            raise ValueError(f"No run to resume at {run_dir}.")
        if run_dir.resolve().parent != root.resolve():
            raise ValueError(f"{run_dir} is not a run under the runs folder {root}.")
        if runs.load_run(run_dir).status in ("running", "starting", "queued"):
            raise ValueError(f"Run {run_dir.name} is already training or queued.")
    else:
        run_dir = root / runs.new_run_id(config.model, config.dataset)
        run_dir.mkdir(parents=False, exist_ok=False)
    atomic_write_bytes(run_dir / runs.CONFIG_FILE, json.dumps(config.to_dict(), indent=2).encode())
    if sweep is not None:
        atomic_write_bytes(run_dir / SWEEP_FILE, json.dumps(sweep, indent=2).encode())
    entry = {"run_dir": str(run_dir.resolve()), "resume": resume_run_dir is not None, "nproc": nproc,
             "queued_at": time.time()}
    atomic_write_bytes(_qdir(root) / f"{time.time_ns():020d}-{run_dir.name}.json", json.dumps(entry).encode())
    if dispatch_now:
        dispatch(root)
    return run_dir


def cancel(run_dir: Path) -> bool:
    """Take `run_dir` out of the queue; a new run that never started is deleted. False if it was not queued."""
    import shutil

    run_dir = Path(run_dir)
    with _locked(run_dir.parent):
        e = entry_for(run_dir)
        if e is None:
            return False
        e.path.unlink(missing_ok=True)
        if not e.resume and not (run_dir / runs.METRICS_FILE).exists():
            shutil.rmtree(run_dir, ignore_errors=True)
    return True


def run_dirs(root: Path | None = None) -> list[Path]:
    """The run directories under `root` (default runs_root()), in no particular order."""
    root = Path(root) if root is not None else runs.runs_root()
    if not root.is_dir():
        return []
    return [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
            and ((d / runs.CONFIG_FILE).is_file() or (d / runs.METRICS_FILE).is_file())]


def active(root: Path | None = None) -> list[Path]:
    """Run directories of `root` training now (any process: queued ones started, CLIs, the app)."""
    root = Path(root) if root is not None else runs.runs_root()
    if not root.is_dir():
        return []
    out = []
    for d in root.iterdir():
        if d.name.startswith(".") or not d.is_dir():
            continue
        if not any((d / n).is_file() for n in (runs.PID_FILE, runs.LAUNCHER_FILE)):
            continue  # never started (or ended: the pid file is removed at the end)
        if runs.status_of(d)[0] in ("running", "starting"):
            out.append(d)
    return out


def dispatch(root: Path | None = None) -> list[Path]:
    """Start queued runs, oldest first, while fewer than max_runs() train; returns those started."""
    root = Path(root) if root is not None else runs.runs_root()
    if not _qdir(root).is_dir():
        return []
    started = []
    with _locked(root):
        queue = entries(root)
        if not queue:
            return []
        free = max_runs() - len(active(root))
        for e in queue[:max(0, free)]:
            e.path.unlink(missing_ok=True)
            if not e.run_dir.is_dir():
                continue  # deleted while it waited
            launch(e.run_dir, resume=e.resume, nproc=e.nproc, root=root)
            started.append(e.run_dir)
    return started


def launch(run_dir: Path, *, resume: bool = False, nproc: int | None = None,
           root: Path | None = None) -> subprocess.Popen:
    """Start the CLI on `run_dir` in a new session (outlives this process); log in log.txt."""
    from ..models.checkpoints import atomic_write_bytes

    run_dir = Path(run_dir).resolve()
    root = Path(root).resolve() if root is not None else run_dir.parent
    argv = [sys.executable, "-m", "cnnviz", "train", "--no-progress"]
    argv += ["--resume", str(run_dir)] if resume else ["--config", str(run_dir / runs.CONFIG_FILE),
                                                       "--run-dir", str(run_dir)]
    if nproc:
        argv += ["--nproc", str(nproc)]
    env = {**os.environ, "CNNVIZ_RUNS": str(root),
           "PYTHONPATH": os.pathsep.join([str(_PACKAGE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    (run_dir / runs.PID_FILE).unlink(missing_ok=True)  # an earlier attempt's
    with open(run_dir / runs.LOG_FILE, "ab") as log:
        log.write(f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')} started: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, close_fds=True)
    atomic_write_bytes(run_dir / runs.LAUNCHER_FILE, json.dumps(
        {"pid": proc.pid, "start": runs.process_start_time(proc.pid), "argv": argv, "t": time.time()}).encode())
    threading.Thread(target=proc.wait, name=f"cnnviz-reap-{proc.pid}", daemon=True).start()  # no zombies
    return proc


def sweep_of(run_dir: Path) -> dict:
    """The run's sweep record ({"sweep_id", "params"}), or {}."""
    try:
        d = json.loads((Path(run_dir) / SWEEP_FILE).read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}
