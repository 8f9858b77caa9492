"""Background training jobs: `fit` in a daemon thread, held by a process-wide registry.

A Streamlit page starts a job and polls `job.snapshot()`; a browser refresh or a closed tab
does not stop it (the registry outlives sessions), and the page reattaches through
`list_jobs()` / `get_job(run_id)`. The thread never calls Streamlit.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from . import runs
from .engine import Event, TrainConfig, fit, memory_usage

MAX_STEPS_KEPT = 20_000  # beyond that the step list is thinned (every other point) for the charts
# GIL switch interval while jobs may run (Python's default is 5 ms). A training step calls torch many
# times, each releasing and retaking the GIL; whenever another thread runs Python (the page's reruns
# in the server), every retake can wait a whole interval. `bench/page_polling_server.py` (the Train
# page rerun every 5 s beside a LeNet5 CPU run, 2 cores): 0.95 of the CLI's images/s at 5 ms, 1.02 at 0.5 ms.
SWITCH_INTERVAL_S = 0.0005

_REGISTRY_LOCK = threading.Lock()
_JOBS: dict[str, "Job"] = {}


class Job:
    """One training run in a background thread; read it with `snapshot()`."""

    def __init__(self, config: TrainConfig, run_dir: Path, resume: bool = False) -> None:
        self.run_id = run_dir.name
        self.run_dir = run_dir
        self.config = config
        self.status = "starting"
        self.created = time.time()
        self._resume = resume
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._steps: list[dict] = []
        self._epochs: list[dict] = []
        self._start: dict = {}
        self._final: dict = {}
        self._progress = 0.0
        self._progress0: float | None = None
        self._t_first: float | None = None
        self._error: str | None = None
        self._advice: str | None = None
        self._device = ""
        self._torch_device = None
        self._thread = threading.Thread(target=self._run, name=f"cnnviz-train-{self.run_id}", daemon=True)

    # -- thread side -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            for ev in fit(self.config, run_dir=self.run_dir, stop_event=self._stop,
                          resume=self.run_dir if self._resume else None):
                self._handle(ev)
        except BaseException as exc:  # pragma: no cover - fit reports its own errors as events
            with self._lock:
                self.status, self._error = "error", f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                if self.status in ("starting", "running"):
                    self.status = "stopped" if self._stop.is_set() else "error"
                    self._error = self._error or "The training thread ended without a result."

    def _handle(self, ev: Event) -> None:
        with self._lock:
            d = ev.data
            if ev.kind == "start":
                self.status = "running"
                self._start = dict(d)
                self._device = d.get("device", "")
                import torch

                self._torch_device = torch.device(d.get("device_type", "cpu"))
                if d.get("resumed"):  # keep the curves of the earlier attempt(s)
                    info = runs.load_run(self.run_dir)
                    self._epochs = [e for e in info.epochs if e.get("epoch", 0) < d.get("start_epoch", 1)]
                    self._steps = list(info.steps)
                    if self._epochs:
                        self._progress = float(self._epochs[-1].get("progress", 0.0))
            elif ev.kind == "step":
                if self._t_first is None:
                    self._t_first, self._progress0 = time.time(), float(d.get("progress", 0.0))
                self._steps.append(dict(d))
                if len(self._steps) > MAX_STEPS_KEPT:
                    self._steps = self._steps[::2]
                self._progress = float(d.get("progress", self._progress))
            elif ev.kind == "epoch":
                self._epochs.append(dict(d))
                self._progress = float(d.get("progress", self._progress))
            elif ev.kind == "done":
                self._final = dict(d)
                self.status = d.get("status", "finished")
                if self.status == "finished":
                    self._progress = 1.0
                if self.status == "diverged":
                    self._error, self._advice = d.get("message"), d.get("advice")
            elif ev.kind == "error":
                self._final = dict(d)
                self.status = "error"
                self._error, self._advice = d.get("message"), d.get("advice")

    # -- caller side -------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """A thread-safe copy of everything a page draws."""
        with self._lock:
            eta = None
            if self.status == "running" and self._t_first is not None and self._progress0 is not None:
                done = self._progress - self._progress0
                if done > 0:
                    eta = (time.time() - self._t_first) * (1.0 - self._progress) / done
            memory = ""
            if self._torch_device is not None and self.status in ("running", "starting"):
                try:
                    memory = memory_usage(self._torch_device)
                except Exception:  # pragma: no cover - memory is best effort
                    memory = ""
            return {
                "run_id": self.run_id, "run_dir": str(self.run_dir), "status": self.status,
                "config": self.config.to_dict(), "steps": [dict(s) for s in self._steps],
                "epochs": [dict(e) for e in self._epochs], "progress": min(1.0, max(0.0, self._progress)),
                "eta_s": eta, "device": self._device, "memory": memory, "error": self._error,
                "advice": self._advice, "start": dict(self._start), "final": dict(self._final),
                "alive": self._thread.is_alive(), "created": self.created,
            }

    def stop(self) -> None:
        """Ask the run to stop at its next step (it saves a checkpoint, status 'stopped')."""
        self._stop.set()

    def is_alive(self) -> bool:
        """Whether the training thread still runs."""
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (tests, CLI)."""
        self._thread.join(timeout)


def start_job(config: TrainConfig, runs_root: Path | None = None, resume_run_dir: Path | None = None) -> Job:
    """Validate `config` (ValueError), then train it in a background thread; returns the Job at once.

    Lowers the process's GIL switch interval to SWITCH_INTERVAL_S (never raises it), so that the
    other threads of the process (a web server's) take little from the run."""
    config.validate()
    if sys.getswitchinterval() > SWITCH_INTERVAL_S:
        sys.setswitchinterval(SWITCH_INTERVAL_S)
    if resume_run_dir is not None:
        run_dir = Path(resume_run_dir)
        if not run_dir.is_dir():
            raise ValueError(f"No run to resume at {run_dir}.")
    else:
        root = Path(runs_root) if runs_root is not None else runs.runs_root()
        run_dir = root / runs.new_run_id(config.model, config.dataset)
        run_dir.mkdir(parents=True, exist_ok=False)
    with _REGISTRY_LOCK:
        for j in _JOBS.values():
            if j.is_alive() and Path(j.run_dir).resolve() == run_dir.resolve():
                raise ValueError(f"Run {run_dir.name} is already training.")
        job = Job(config, run_dir, resume=resume_run_dir is not None)
        _JOBS[job.run_id] = job
        job._thread.start()
    return job


def get_job(run_id: str) -> Job | None:
    """The job of `run_id` started in this process, if any."""
    with _REGISTRY_LOCK:
        return _JOBS.get(run_id)


def list_jobs() -> list[Job]:
    """Jobs started in this process, newest first (running and ended)."""
    with _REGISTRY_LOCK:
        return sorted(_JOBS.values(), key=lambda j: j.created, reverse=True)
