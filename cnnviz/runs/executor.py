"""The executor seam: how a queued run's process is started, watched and stopped.

    ex = executor()                    # from $CNNVIZ_EXECUTOR ("local", the default)
    record = ex.start(run_dir, argv)   # written to <run>/launcher.json by the queue
    ex.alive(run_dir, record)          # is it still training?
    ex.stop(run_dir, record)           # end it now (the queue writes the stop file first)
    ex.why_ended(run_dir, record)      # (status, reason) of a process gone without a final line

A run is a command (`python -m cnnviz train --config ... --run-dir ...`); an executor only decides
where that command runs. `LocalExecutor` runs it as a process of this machine, in a session of its
own (it outlives the server), with an address-space limit (`CNNVIZ_RUN_MEMORY_MB`) so that a run that
allocates too much ends as "error: out of memory" instead of taking the machine down. A cluster
backend implements the same four methods; pages and the CLI never see which. `RayExecutor`
(`CNNVIZ_EXECUTOR=ray`, cnnviz/runs/ray_executor.py) submits each run as a job of a Ray cluster; it
is imported only when chosen, so nothing imports Ray by default. An executor may also offer
`cluster(root)` (its nodes and free resources: dispatch then submits what fits, not `max_runs()`),
`needs(config, nproc)`, `stop_grace_s` (the queue calls `stop` on a run whose stop file is older) and
`log_tail(run_dir, record)`. `ExecutorUnavailable` (an OSError) says the executor's backend did not
answer: nothing queued is consumed, nothing live is marked ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Protocol

from ..limits import env_number
from .layout import LOG_FILE, tail_bytes
from .liveness import process_alive, process_start_time
from .status_type import Status

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds the cnnviz package
OOM_MARKERS = (b"MemoryError", b"can't allocate memory", b"Cannot allocate memory", b"std::bad_alloc",
               b"out of memory")


class ExecutorUnavailable(OSError):
    """The executor's backend (a cluster) did not answer: try again later; nothing was started."""


class Executor(Protocol):
    name: str

    def start(self, run_dir: Path, argv: list[str]) -> dict: ...

    def alive(self, run_dir: Path, record: dict) -> bool: ...

    def stop(self, run_dir: Path, record: dict) -> None: ...

    def why_ended(self, run_dir: Path, record: dict) -> tuple[Status, str]: ...


def run_memory_mb() -> int | None:
    """$CNNVIZ_RUN_MEMORY_MB as a whole number (0 = no limit), None when unset."""
    return env_number("CNNVIZ_RUN_MEMORY_MB", None, whole=True, what="a whole number of MB")


def run_memory_limit_bytes() -> int | None:
    """The address-space limit of a run process: $CNNVIZ_RUN_MEMORY_MB (0 = none); by default 75% of
    this machine's memory where no CUDA device is visible (CUDA reserves address space far beyond
    what it uses, so a GPU machine gets no default limit)."""
    mb = run_memory_mb()
    if mb is not None:
        return mb * 2**20 if mb > 0 else None
    if Path("/dev/nvidia0").exists() or os.environ.get("CUDA_VISIBLE_DEVICES"):
        return None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    return int(total * 0.75)


def run_environ() -> dict[str, str]:
    """This process's environment for a run, less the OpenMP wait policy the app server set for itself
    (app.py: passive threads in the server; a run keeps OpenMP's default unless the user set one)."""
    env = dict(os.environ)
    if env.pop("CNNVIZ_SERVER_OMP_PASSIVE", None):
        env.pop("OMP_WAIT_POLICY", None)
    return env


def max_runs() -> int:
    """Runs allowed to train at once: $CNNVIZ_MAX_RUNS, else one per CUDA GPU (1 without)."""
    n = env_number("CNNVIZ_MAX_RUNS", None, whole=True, at_least=1)
    if n is not None:
        return n
    try:
        import torch

        return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1
    except Exception:  # noqa: BLE001 - no usable torch.cuda: one at a time
        return 1


def run_threads(slots: int) -> int | None:
    """Threads for each run when `slots` runs may train at once on this machine: its cores shared out
    (None: one run, torch's own default). Several runs each taking every core make their OpenMP
    threads spin against each other: two LeNet5 runs on 2 cores took ~260 s each instead of ~15 s."""
    if slots <= 1:
        return None
    return max(1, (os.cpu_count() or 1) // slots)


def _limit_memory(nbytes: int | None):
    if nbytes is None:
        return None

    def apply() -> None:  # in the child, before exec
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))
    return apply


class LocalExecutor:
    """Runs on this machine: a process in its own session, output in the run's log.txt."""

    name = "local"

    def start(self, run_dir: Path, argv: list[str]) -> dict:
        limit = run_memory_limit_bytes()
        env = {**run_environ(), "CNNVIZ_RUNS": str(Path(run_dir).parent),
               "PYTHONPATH": os.pathsep.join([str(PACKAGE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        if limit is not None:
            env["CNNVIZ_RUN_MEMORY_LIMIT"] = str(limit)  # for the run's own out-of-memory message
        if "OMP_NUM_THREADS" not in env:  # a setting of the user's wins
            try:
                threads = run_threads(max_runs())
            except ValueError:  # a bad CNNVIZ_MAX_RUNS is the queue's message to give
                threads = None
            if threads is not None:
                env["OMP_NUM_THREADS"] = str(threads)
        cmd = [sys.executable, *argv]
        with open(Path(run_dir) / LOG_FILE, "ab") as log:
            log.write(f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')} started: {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env, close_fds=True,
                                    preexec_fn=_limit_memory(limit))
        threading.Thread(target=proc.wait, name=f"cnnviz-reap-{proc.pid}", daemon=True).start()  # no zombies
        return {"executor": self.name, "pid": proc.pid, "start": process_start_time(proc.pid), "argv": cmd,
                "memory_limit": limit, "t": time.time()}

    def alive(self, run_dir: Path, record: dict) -> bool:
        try:
            return process_alive(int(record["pid"]), str(record["start"]) if record.get("start") else None)
        except (KeyError, TypeError, ValueError):
            return False

    def stop(self, run_dir: Path, record: dict) -> None:
        if self.alive(run_dir, record):
            try:
                os.killpg(int(record["pid"]), signal.SIGTERM)
            except OSError:
                pass

    def why_ended(self, run_dir: Path, record: dict) -> tuple[Status, str]:
        tail, _ = tail_bytes(Path(run_dir) / LOG_FILE, 4096)
        pid = record.get("pid")
        if any(m in tail for m in OOM_MARKERS):
            limit = record.get("memory_limit")
            within = f" (its limit: {int(limit) / 2**20:,.0f} MB, CNNVIZ_RUN_MEMORY_MB)" if limit else ""
            return Status.ERROR, f"out of memory: the run's process (pid {pid}) needed more memory than it had{within}"
        return Status.INTERRUPTED, (f"its process (pid {pid}) is gone without writing a final line: killed "
                                    "(out of memory, kill -9), crashed, or the machine restarted")


def _ray(address: str | None = None):
    from .ray_executor import RayExecutor  # imports Ray only when a Ray executor is used

    return RayExecutor(address)


_EXECUTORS = {"local": lambda address=None: LocalExecutor(), "ray": _ray}


def executor(name: str | None = None, address: str | None = None) -> Executor:
    """The executor named `name`, else $CNNVIZ_EXECUTOR, else local; ValueError for an unknown name (or
    for "ray" without $RAY_ADDRESS)."""
    name = (name or os.environ.get("CNNVIZ_EXECUTOR") or "local").strip().lower()
    if name not in _EXECUTORS:
        raise ValueError(f"CNNVIZ_EXECUTOR={name!r} is not an executor here; known: {', '.join(_EXECUTORS)}.")
    return _EXECUTORS[name](address)


def executor_of(record: dict) -> Executor:
    """The executor that wrote a launcher record (records without a name are local; a Ray record keeps
    the cluster address it was submitted to)."""
    return executor(str(record.get("executor") or "local"), record.get("address"))
