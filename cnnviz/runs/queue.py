"""The queue: runs wait as files under <runs>/.queue/ and are started through the executor.

    run_dir = submit(config)          # queued, started at once if a slot is free
    dirs = submit_many(configs)       # all or nothing (a sweep)
    dispatch()                        # start queued runs while fewer than max_runs() train
    position(run_dir), cancel(run_dir, by=user), entries()
    pause(by=admin), unpause(by=admin), paused()

A run is `python -m cnnviz train --config <run>/config.json --run-dir <run>` (an argv list), started
by the executor (`cnnviz.runs.executor`). Dispatch holds an exclusive file lock (<runs>/.queue/lock),
so two servers, or a server and a CLI, never start one queued run twice. A run process dispatches the
next queued run as it exits, so the queue moves on with no browser open.

Nothing in the queue can wedge it: a queue file that is not a valid entry, or whose run directory
is not directly under the runs root, is set aside in .queue/rejected/ with the reason beside it; a
launch that fails ends that run as "error" with the executor's reason, and the next one starts.
`CNNVIZ_MAX_RUNS` caps the runs training at once (default one per CUDA GPU, 1 without). An executor
with a cluster (`CNNVIZ_EXECUTOR=ray`) submits instead as many as the cluster can start now (its free
CPUs/GPUs; `CNNVIZ_MAX_RUNS`, when set, still caps them), the next in fair order first: when that one
does not fit, nothing behind it jumps the line. A cluster that does not answer raises
`ExecutorUnavailable` (an OSError, one line) and every entry stays queued. For such an executor the
dispatch pass also ends, with the executor's `stop`, a run whose stop file is older than its grace
period (`stop_grace_s`) and that still trains.

The next run is picked round-robin across owners (`cnnviz.runs.fair`: the owner whose last start is
oldest goes first), skipping an owner who already trains their `max_running` runs (a per-user limit
the entry carries, or the teacher's quota). An admin can pause the queue (a `paused` file under
.queue): nothing starts until it is removed. Cancelling and resuming take the acting user (`by`) and
refuse a run that is not theirs (`cnnviz.runs.access`); `by=None` is the trusted caller (CLI, API).
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
from . import access, fair
from .executor import ExecutorUnavailable, executor, executor_of, max_runs
from .layout import (CONFIG_FILE, LAUNCHER_FILE, METRICS_FILE, OWNER_FILE, PID_FILE, QUEUE_DIR, STOP_FILE,
                     SWEEP_FILE, has_ended, inside_root, new_run_dir, read_config, read_json, root_of, run_dirs,
                     write_json)
from .liveness import read_launcher
from .quotas import Limits, quota_of

LOCK_FILE = "lock"
PAUSE_FILE = "paused"
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
    visitor: str | None = None
    max_running: int = 0


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
    cap = d.get("max_running") or 0
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
        raise ValueError(f"max_running {cap!r} is not a number of runs")
    return Entry(p, run_dir, bool(d.get("resume")), nproc, float(d.get("queued_at") or 0.0),
                 str(d["owner"]) if d.get("owner") else None, str(d["visitor"]) if d.get("visitor") else None, cap)


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
    """run id -> 1-based place in the queue of `root`, in the fair (round-robin) order dispatch follows."""
    return {e.run_dir.name: i for i, e in enumerate(fair.order(entries(root), fair.load(_qdir(root))), 1)}


def ahead_of(run_ids: set[str], root: Path | None = None) -> tuple[int, int] | None:
    """(runs ahead of the first of `run_ids` that waits, people owning them), or None if none waits:
    the anonymised view of the queue ("12 runs ahead of yours, from 7 people")."""
    return fair.ahead(entries(root), fair.load(_qdir(root)), set(run_ids))


def paused(root: Path | None = None) -> dict | None:
    """The pause record ({"by", "t"}) when an admin paused the queue of `root`, else None."""
    p = _qdir(root) / PAUSE_FILE
    if not p.exists():
        return None
    d = read_json(p)
    return d if isinstance(d, dict) else {"by": "?", "t": 0}


def pause(root: Path | None = None, *, by=None) -> None:
    """Pause the queue (admins): runs that train go on, nothing new starts until `unpause`."""
    access.require_admin(by, "pause the queue")
    q = _qdir(root)
    q.mkdir(parents=True, exist_ok=True)
    write_json(q / PAUSE_FILE, {"by": getattr(by, "display", "the command line"), "t": time.time()})


def unpause(root: Path | None = None, *, by=None) -> None:
    access.require_admin(by, "resume the queue")
    (_qdir(root) / PAUSE_FILE).unlink(missing_ok=True)
    dispatch(root)


def position(run_dir: Path) -> int | None:
    """1-based place of `run_dir` in its queue, or None when it is not queued."""
    return positions(Path(run_dir).parent).get(Path(run_dir).name)


def _write_entry(run_dir: Path, root: Path, resume: bool, nproc: int | None, owner: str | None,
                 visitor: str | None, max_running: int = 0) -> Path:
    entry = {"run_dir": str(run_dir.resolve()), "run_id": run_dir.name, "resume": resume, "nproc": nproc,
             "owner": owner, "visitor": visitor, "queued_at": time.time(), "max_running": max_running}
    path = _qdir(root) / f"{time.time_ns():020d}-{run_dir.name}.json"
    atomic_write_bytes(path, json.dumps(entry).encode())
    return path


def _prepare(config, root: Path, sweep: dict | None, owner: str | None, visitor: str | None) -> Path:
    """A new run directory with its sweep/owner records but no config yet: it is not a run (nothing lists
    it) until the config is written, after its queue entry exists, so no reader ever sees a run that is
    neither queued nor started."""
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


def _check_request(configs: list, by, owner: str | None) -> str | None:
    """The owner of a request by `by` (its user id unless given), after checking its datasets."""
    from ..uploads import dataset_allowed

    for cfg in configs:
        if not dataset_allowed(by, cfg.dataset):
            raise access.NotAllowed(f"{by.display} may not train on {cfg.dataset[:80]}: on this server a student "
                                    "trains on the named datasets and on their own uploads (Datasets page).")
    if by is not None and owner is None:
        owner = by.id
    if by is not None and not by.is_admin and owner != by.id:
        raise access.NotAllowed(f"{by.display} may not queue runs for someone else.")
    return owner


def submit(config, root: Path | None = None, *, resume_run_dir: Path | None = None, nproc: int | None = None,
           sweep: dict | None = None, owner: str | None = None, visitor: str | None = None,
           limits: Limits | None = None, dispatch_now: bool = True, by=None) -> Path:
    """Queue a run of `config` (ValueError if it is invalid) and dispatch; returns its run directory.

    `resume_run_dir` queues a resume of that run (with `config`, e.g. more epochs) instead of a new
    run; `by` (the acting user) must own it or be an admin (access.NotAllowed). `sweep`
    ({"sweep_id", "params"}) is written beside the config. `limits` (what a browser sends) are checked
    for `visitor` first: LimitError, nothing queued. `owner` defaults to `by`'s id."""
    from .store import summary

    config.validate()
    root = root_of(root)
    if resume_run_dir is not None:
        access.require(by, Path(resume_run_dir), "resume")
        owner = owner or access.owner_of(Path(resume_run_dir))
    owner = _check_request([config], by, owner)
    if limits is not None:
        limits.check([config], visitor, root, resume=resume_run_dir is not None, owner=owner)
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
        _write_entry(run_dir, root, True, nproc, owner, visitor, limits.max_running if limits is not None else 0)
        (run_dir / LAUNCHER_FILE).unlink(missing_ok=True)  # a failed launch's record: this is a new attempt
    else:
        run_dir = _prepare(config, root, sweep, owner, visitor)
        entry = _write_entry(run_dir, root, False, nproc, owner, visitor,
                             limits.max_running if limits is not None else 0)
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
                limits: Limits | None = None, by=None) -> list[Path]:
    """Queue several new runs, all or nothing: every config is validated (and `limits` checked) and
    every run directory made before the first is queued; a failure removes what was made and queues
    none. Then dispatch."""
    root = root_of(root)
    for cfg in configs:
        cfg.validate()
    owner = _check_request(configs, by, owner)
    if limits is not None:
        limits.check(configs, visitor, root, sweep=True, owner=owner)
    sweeps = sweeps or [None] * len(configs)
    made: list[Path] = []
    try:
        for cfg, sw in zip(configs, sweeps):
            made.append(_prepare(cfg, root, sw, owner, visitor))
    except BaseException:
        for d in made:
            shutil.rmtree(d, ignore_errors=True)
        raise
    entries_made = [_write_entry(d, root, False, nproc, owner, visitor, limits.max_running if limits else 0)
                    for d in made]
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


def cancel(run_dir: Path, *, by=None) -> bool:
    """Take `run_dir` out of the queue; a new run that never started is deleted. False if it was not
    queued. `by` must own the run or be an admin (access.NotAllowed)."""
    run_dir = Path(run_dir)
    access.require(by, run_dir, "cancel")
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


def _running_cap(e: Entry, root: Path, quotas: dict) -> int:
    """How many runs of `e`'s owner may train at once (0 = no cap): the teacher's quota, else the entry's."""
    if e.owner and e.owner not in quotas:
        quotas[e.owner] = quota_of(e.owner, root)
    q = quotas.get(e.owner) or {}
    return int(q["max_running"]) if "max_running" in q else e.max_running


def enforce_stops(root: Path | None = None) -> list[Path]:
    """End, through its executor's `stop`, each run whose stop file is older than the executor's grace
    period (`stop_grace_s`; local runs have none: the stop file alone stops them) and that still trains.
    Returns those stopped."""
    out = []
    for stop in root_of(root).glob(f"*/{STOP_FILE}"):
        d = stop.parent
        rec = read_launcher(d)
        if not rec or rec.get("error") or str(rec.get("executor") or "local") == "local" or has_ended(d):
            continue
        try:
            ex = executor_of(rec)
            grace = getattr(ex, "stop_grace_s", None)
            if grace is not None and time.time() - stop.stat().st_mtime >= grace() and ex.alive(d, rec):
                ex.stop(d, rec)
                out.append(d)
        except (OSError, ValueError):
            continue
    return out


def dispatch(root: Path | None = None) -> list[Path]:
    """Start queued runs while fewer than max_runs() train (with a cluster executor: while the next fits
    on the cluster), round-robin across owners (the owner whose last start is oldest first), each owner
    within their running-at-once cap; nothing while paused. Returns those started.
    ExecutorUnavailable when the executor's cluster did not answer (nothing consumed)."""
    root = root_of(root)
    q = _qdir(root)
    enforce_stops(root)
    if not q.is_dir() or (q / PAUSE_FILE).exists():
        return []
    started = []
    with _locked(root):
        if (q / PAUSE_FILE).exists():
            return []
        queue = [e for e in entries(root) if (e.run_dir / CONFIG_FILE).is_file() or not e.run_dir.is_dir()]
        if not queue:
            return []
        try:
            ex = executor()
        except ValueError:
            ex = None  # an unknown executor: each launch records that as its run's error, nothing wedges
        cluster = ex.cluster(root) if hasattr(ex, "cluster") else None
        running = active(root)
        cap = max_runs() if cluster is None or os.environ.get("CNNVIZ_MAX_RUNS", "").strip() else len(queue) + len(running)
        free = cap - len(running)
        if free <= 0:
            return []
        training: dict[str, int] = {}
        for d in running:
            o = fair.key(access.owner_of(d))
            training[o] = training.get(o, 0) + 1
        starts = fair.load(q)
        quotas: dict = {}
        while free > 0 and queue:
            eligible = [e for e in queue if not (cap := _running_cap(e, root, quotas))
                        or training.get(fair.key(e.owner), 0) < cap]
            if not eligible:
                break
            e = fair.order(eligible, starts)[0]
            if cluster is not None and e.run_dir.is_dir() and not _fits(ex, e, cluster):
                break  # the next in line waits for room; nobody behind it jumps the line
            queue.remove(e)
            if not e.run_dir.is_dir():
                e.path.unlink(missing_ok=True)
                continue  # deleted while it waited
            ok = launch(e.run_dir, resume=e.resume, nproc=e.nproc, ex=ex)  # ExecutorUnavailable: stays queued
            starts = fair.record(q, e.owner, starts)
            e.path.unlink(missing_ok=True)  # only now: a reader never sees it neither queued nor launched
            if ok:
                started.append(e.run_dir)
                training[fair.key(e.owner)] = training.get(fair.key(e.owner), 0) + 1
                free -= 1
    return started


def _fits(ex, e: Entry, cluster: dict) -> bool:
    """Whether the cluster has a node with room for `e` now (taking that room from `cluster`)."""
    from .ray_executor import fits, needs

    return fits(needs(read_config(e.run_dir), e.nproc, cluster["total"].get("GPU", 0.0)), cluster["nodes"]) is not None


def launch(run_dir: Path, *, resume: bool = False, nproc: int | None = None, ex=None) -> bool:
    """Start the CLI on `run_dir` through the executor and record how (launcher.json). A launch that
    fails (the executor's error, a fork error, a full disk) is recorded as the run's error; False."""
    run_dir = Path(run_dir).resolve()
    argv = ["-m", "cnnviz", "train", "--no-progress"]
    argv += ["--resume", str(run_dir)] if resume else ["--config", str(run_dir / CONFIG_FILE),
                                                       "--run-dir", str(run_dir)]
    if nproc:
        argv += ["--nproc", str(nproc)]
    (run_dir / PID_FILE).unlink(missing_ok=True)  # an earlier attempt's
    (run_dir / STOP_FILE).unlink(missing_ok=True)  # an earlier attempt's stop: a Stop from now on counts
    try:
        ex = ex or executor()
        record = ex.start(run_dir, argv)
    except ExecutorUnavailable:
        raise  # the cluster did not answer: the entry stays queued, nothing is recorded
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

