"""The queue: runs wait as files under <runs>/.queue/ and are started through the executor.

    run_dir = submit(config)          # queued, started at once if a slot is free
    dirs = submit_many(configs)       # all or nothing (a sweep)
    dispatch()                        # start queued runs while fewer than max_runs() train
    position(run_dir), cancel(run_dir), entries()

A run is `python -m cnnviz train --config <run>/config.json --run-dir <run>` (an argv list), started
by the executor (`cnnviz.runs.executor`). Dispatch holds an exclusive file lock (<runs>/.queue/lock),
so two servers, or a server and a CLI, never start one queued run twice. A run process dispatches the
next queued run as it exits, so the queue moves on with no browser open.

Nothing in the queue can wedge it: a queue file that is not a valid entry, or whose run directory
is not directly under the runs root, is set aside in .queue/rejected/ with the reason beside it; a
launch that fails ends that run as "error" with the executor's reason, and the next one starts.
`CNNVIZ_MAX_RUNS` caps the runs training at once (default one per CUDA GPU, 1 without).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_write_bytes
from .executor import executor
from .layout import (CONFIG_FILE, LAUNCHER_FILE, METRICS_FILE, OWNER_FILE, PID_FILE, QUEUE_DIR, SWEEP_FILE,
                     inside_root, new_run_dir, root_of, run_dirs, write_json)
from .quotas import Limits

LOCK_FILE = "lock"
REJECTED_DIR = "rejected"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One queued run: its queue file, run directory, and how to start it."""

    path: Path
    run_dir: Path
    resume: bool
    nproc: int | None
    queued_at: float
    owner: str | None = None


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
    return root_of(root) / QUEUE_DIR


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


def _set_aside(p: Path, why: str) -> None:
    """Move a bad queue file to .queue/rejected/ with a .why beside it, and log it."""
    dest = p.parent / REJECTED_DIR
    try:
        dest.mkdir(exist_ok=True)
        os.replace(p, dest / p.name)
        (dest / (p.name + ".why")).write_text(why + "\n")
    except OSError:
        p.unlink(missing_ok=True)
    log.warning("queue file %s set aside: %s", p.name, why)


def _parse(p: Path, root: Path) -> Entry:
    d = json.loads(p.read_text())
    if not isinstance(d, dict) or not isinstance(d.get("run_dir"), str):
        raise ValueError("not a queue entry (a JSON object with run_dir)")
    run_dir = Path(d["run_dir"])
    if not inside_root(run_dir, root):
        raise ValueError(f"its run directory {run_dir} is not directly under the runs folder")
    nproc = d.get("nproc")
    if nproc is not None and (not isinstance(nproc, int) or isinstance(nproc, bool) or not 1 <= nproc <= 64):
        raise ValueError(f"nproc {nproc!r} is not a number of processes")
    return Entry(p, run_dir, bool(d.get("resume")), nproc, float(d.get("queued_at") or 0.0),
                 str(d["owner"]) if d.get("owner") else None)


def entries(root: Path | None = None) -> list[Entry]:
    """The queued runs of `root`, oldest first; a malformed queue file is set aside, never raised."""
    root = root_of(root)
    q = _qdir(root)
    if not q.is_dir():
        return []
    out = []
    for p in sorted(q.glob("*.json")):
        try:
            out.append(_parse(p, root))
        except FileNotFoundError:
            continue  # taken by a dispatcher meanwhile
        except (OSError, ValueError, TypeError) as exc:
            _set_aside(p, str(exc) if not isinstance(exc, json.JSONDecodeError) else f"not JSON: {exc}")
    return out


def positions(root: Path | None = None) -> dict[str, int]:
    """run id -> 1-based place in the queue of `root`."""
    return {e.run_dir.name: i for i, e in enumerate(entries(root), 1)}


def position(run_dir: Path) -> int | None:
    """1-based place of `run_dir` in its queue, or None when it is not queued."""
    return positions(Path(run_dir).parent).get(Path(run_dir).name)


def _write_entry(run_dir: Path, root: Path, resume: bool, nproc: int | None, owner: str | None,
                 visitor: str | None) -> Path:
    entry = {"run_dir": str(run_dir.resolve()), "run_id": run_dir.name, "resume": resume, "nproc": nproc,
             "owner": owner, "visitor": visitor, "queued_at": time.time()}
    path = _qdir(root) / f"{time.time_ns():020d}-{run_dir.name}.json"
    atomic_write_bytes(path, json.dumps(entry).encode())
    return path


def _prepare(config, root: Path, sweep: dict | None, owner: str | None, visitor: str | None) -> Path:
    """A new run directory with its sweep/owner records but no config yet: it is not a run (nothing lists
    it) until `_finish_prepare` writes the config, after its queue entry exists, so no reader ever sees a
    run that is neither queued nor started."""
    run_dir = new_run_dir(config.model, config.dataset, root)
    try:
        if sweep is not None:
            write_json(run_dir / SWEEP_FILE, sweep)
        if owner is not None or visitor is not None:
            write_json(run_dir / OWNER_FILE, {"owner": owner, "visitor": visitor})
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return run_dir


def submit(config, root: Path | None = None, *, resume_run_dir: Path | None = None, nproc: int | None = None,
           sweep: dict | None = None, owner: str | None = None, visitor: str | None = None,
           limits: Limits | None = None, dispatch_now: bool = True) -> Path:
    """Queue a run of `config` (ValueError if it is invalid) and dispatch; returns its run directory.

    `resume_run_dir` queues a resume of that run (with `config`, e.g. more epochs) instead of a new
    run. `sweep` ({"sweep_id", "params"}) is written beside the config. `limits` (what a browser
    sends) are checked for `visitor` first: LimitError, nothing queued."""
    from .store import summary

    config.validate()
    root = root_of(root)
    if limits is not None:
        limits.check([config], visitor, root, resume=resume_run_dir is not None)
    root.mkdir(parents=True, exist_ok=True)
    if resume_run_dir is not None:
        run_dir = Path(resume_run_dir)
        if not (run_dir / CONFIG_FILE).is_file():
            raise ValueError(f"No run to resume at {run_dir}.")
        if not inside_root(run_dir, root):
            raise ValueError(f"{run_dir} is not a run under the runs folder {root}.")
        if summary(run_dir).status.live:
            raise ValueError(f"Run {run_dir.name} is already training or queued.")
        write_json(run_dir / CONFIG_FILE, config.to_dict())
        _write_entry(run_dir, root, True, nproc, owner, visitor)
        (run_dir / LAUNCHER_FILE).unlink(missing_ok=True)  # a failed launch's record: this is a new attempt
    else:
        run_dir = _prepare(config, root, sweep, owner, visitor)
        entry = _write_entry(run_dir, root, False, nproc, owner, visitor)
        try:
            write_json(run_dir / CONFIG_FILE, config.to_dict())
        except BaseException:
            entry.unlink(missing_ok=True)
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
    if dispatch_now:
        dispatch(root)
    return run_dir


def submit_many(configs: list, root: Path | None = None, *, nproc: int | None = None,
                sweeps: list[dict | None] | None = None, owner: str | None = None, visitor: str | None = None,
                limits: Limits | None = None) -> list[Path]:
    """Queue several new runs, all or nothing: every config is validated (and `limits` checked) and
    every run directory made before the first is queued; a failure removes what was made and queues
    none. Then dispatch."""
    root = root_of(root)
    for cfg in configs:
        cfg.validate()
    if limits is not None:
        limits.check(configs, visitor, root, sweep=True)
    sweeps = sweeps or [None] * len(configs)
    made: list[Path] = []
    try:
        for cfg, sw in zip(configs, sweeps):
            made.append(_prepare(cfg, root, sw, owner, visitor))
    except BaseException:
        for d in made:
            shutil.rmtree(d, ignore_errors=True)
        raise
    entries_made = [_write_entry(d, root, False, nproc, owner, visitor) for d in made]
    try:
        for d, cfg in zip(made, configs):
            write_json(d / CONFIG_FILE, cfg.to_dict())
    except BaseException:
        for p in entries_made:
            p.unlink(missing_ok=True)
        for d in made:
            shutil.rmtree(d, ignore_errors=True)
        raise
    dispatch(root)
    return made


def cancel(run_dir: Path) -> bool:
    """Take `run_dir` out of the queue; a new run that never started is deleted. False if it was not queued."""
    run_dir = Path(run_dir)
    with _locked(run_dir.parent):
        e = next((e for e in entries(run_dir.parent) if e.run_dir.name == run_dir.name), None)
        if e is None:
            return False
        e.path.unlink(missing_ok=True)
        if not e.resume and not (run_dir / METRICS_FILE).exists():
            shutil.rmtree(run_dir, ignore_errors=True)
    return True


def active(root: Path | None = None) -> list[Path]:
    """Run directories of `root` training now (any process: queued ones started, CLIs, the app)."""
    from .store import summary

    out = []
    for d in run_dirs(root):
        if not any((d / n).is_file() for n in (PID_FILE, LAUNCHER_FILE)):
            continue  # never started (or ended: the pid file is removed at the end)
        if summary(d).status.training:
            out.append(d)
    return out


def dispatch(root: Path | None = None) -> list[Path]:
    """Start queued runs, oldest first, while fewer than max_runs() train; returns those started."""
    root = root_of(root)
    if not _qdir(root).is_dir():
        return []
    started = []
    with _locked(root):
        queue = [e for e in entries(root) if (e.run_dir / CONFIG_FILE).is_file() or not e.run_dir.is_dir()]
        if not queue:
            return []
        free = max_runs() - len(active(root))
        for e in queue:
            if free <= 0:
                break
            if not e.run_dir.is_dir():
                e.path.unlink(missing_ok=True)
                continue  # deleted while it waited
            ok = launch(e.run_dir, resume=e.resume, nproc=e.nproc)
            e.path.unlink(missing_ok=True)  # only now: a reader never sees it neither queued nor launched
            if ok:
                started.append(e.run_dir)
                free -= 1
    return started


def launch(run_dir: Path, *, resume: bool = False, nproc: int | None = None) -> bool:
    """Start the CLI on `run_dir` through the executor and record how (launcher.json). A launch that
    fails (the executor's error, a fork error, a full disk) is recorded as the run's error; False."""
    run_dir = Path(run_dir).resolve()
    argv = ["-m", "cnnviz", "train", "--no-progress"]
    argv += ["--resume", str(run_dir)] if resume else ["--config", str(run_dir / CONFIG_FILE),
                                                       "--run-dir", str(run_dir)]
    if nproc:
        argv += ["--nproc", str(nproc)]
    (run_dir / PID_FILE).unlink(missing_ok=True)  # an earlier attempt's
    try:
        ex = executor()
        record = ex.start(run_dir, argv)
    except (OSError, ValueError, RuntimeError) as exc:
        reason = f"the run could not be started: {getattr(exc, 'strerror', None) or exc}"
        with contextlib.suppress(OSError):
            write_json(run_dir / LAUNCHER_FILE, {"executor": os.environ.get("CNNVIZ_EXECUTOR") or "local",
                                                 "error": reason, "t": time.time()})
        log.warning("%s: %s", run_dir.name, reason)
        return False
    try:
        write_json(run_dir / LAUNCHER_FILE, record)
    except OSError:
        ex.stop(run_dir, record)  # unrecorded, it could not be watched: end it
        return False
    return True

