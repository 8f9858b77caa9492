"""Background training jobs: `fit` in a daemon thread, held by a process-wide registry.

A Streamlit page starts a job and polls `job.snapshot()`; a browser refresh or a closed tab
does not stop it (the registry outlives sessions), and the page reattaches through
`list_jobs()` / `get_job(run_id)`. The thread never calls Streamlit.

`stop_all()` stops and joins every job and `forget()` drops ended ones from the registry (tests
end each one's runs this way). A `StepGate` passed to `start_job` lets a job log only the steps
allowed so far, so that a caller (a test) decides how far a run has got, not the machine's speed.
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


class StepGate:
    """Lets one job log only as many steps as allowed so far: it holds the job's thread after the
    run's start and after each logged step while the steps logged reach the steps allowed, until
    `allow` or `open` lets it go on. A test drives a run with it step by step, whatever the speed of
    the machine. A stopped job is never held: it goes on to save its checkpoint and end.

    "Steps" are the run's logged steps (its "step" events: every step on the CPU, every 10th on a
    GPU). While a job is held nothing trains; its snapshot stays as it was.
    """

    def __init__(self, steps: int = 0) -> None:
        if steps < 0:
            raise ValueError("steps must be >= 0")
        self._cond = threading.Condition()
        self._allowed: float = steps
        self._logged = 0
        self._held = False
        self._closed = False
        self._job: str | None = None

    def allow(self, steps: int = 1) -> None:
        """Let the job log `steps` more steps."""
        with self._cond:
            self._allowed += steps
            self._cond.notify_all()

    def open(self) -> None:
        """Let the job run freely from now on (to its end)."""
        with self._cond:
            self._allowed = float("inf")
            self._cond.notify_all()

    @property
    def logged(self) -> int:
        """Steps the job has logged so far."""
        with self._cond:
            return self._logged

    def wait_held(self, timeout: float = 120.0) -> int:
        """Wait until the job is held, having logged every step allowed; returns the steps logged.

        TimeoutError when that did not happen within `timeout` seconds, RuntimeError when the job
        ended first (an error, or fewer steps in the whole run than allowed)."""
        with self._cond:
            if not self._cond.wait_for(lambda: (self._held and self._logged >= self._allowed) or self._closed,
                                       timeout):
                raise TimeoutError(f"the job was not held within {timeout:g} s "
                                   f"({self._logged} steps logged, {self._allowed:g} allowed)")
            if not self._held:
                raise RuntimeError(f"the job ended after {self._logged} logged steps without being held")
            return self._logged

    # -- job side ----------------------------------------------------------------------------
    def _attach(self, run_id: str) -> None:
        with self._cond:
            if self._job is not None:
                raise ValueError(f"This StepGate already drives run {self._job}; one gate per job.")
            self._job = run_id

    def _pass(self, step: bool, stop: threading.Event) -> None:
        """Called by the job's thread after the start event and after each step event."""
        with self._cond:
            if step:
                self._logged += 1
            while self._logged >= self._allowed and not stop.is_set():
                self._held = True
                self._cond.notify_all()
                self._cond.wait()
            self._held = False

    def _wake(self) -> None:
        """The job was asked to stop: a held thread must see it."""
        with self._cond:
            self._cond.notify_all()

    def _close(self) -> None:
        """The job's thread ended."""
        with self._cond:
            self._held, self._closed = False, True
            self._cond.notify_all()


class Job:
    """One training run in a background thread; read it with `snapshot()`."""

    def __init__(self, config: TrainConfig, run_dir: Path, resume: bool = False,
                 gate: StepGate | None = None) -> None:
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
        self.gate = gate
        if gate is not None:
            gate._attach(self.run_id)
        self._thread = threading.Thread(target=self._run, name=f"cnnviz-train-{self.run_id}", daemon=True)

    # -- thread side -------------------------------------------------------------------------
    def _run(self) -> None:
        gate = self.gate
        try:
            for ev in fit(self.config, run_dir=self.run_dir, stop_event=self._stop,
                          resume=self.run_dir if self._resume else None):
                self._handle(ev)
                if gate is not None and ev.kind in ("start", "step"):
                    gate._pass(ev.kind == "step", self._stop)  # the run waits here (fit is a generator)
        except BaseException as exc:  # pragma: no cover - fit reports its own errors as events
            with self._lock:
                self.status, self._error = "error", f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                if self.status in ("starting", "running"):
                    self.status = "stopped" if self._stop.is_set() else "error"
                    self._error = self._error or "The training thread ended without a result."
            if gate is not None:
                gate._close()

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
        if self.gate is not None:
            self.gate._wake()

    def is_alive(self) -> bool:
        """Whether the training thread still runs."""
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (tests, CLI)."""
        self._thread.join(timeout)


def start_job(config: TrainConfig, runs_root: Path | None = None, resume_run_dir: Path | None = None,
              gate: StepGate | None = None) -> Job:
    """Validate `config` (ValueError), then train it in a background thread; returns the Job at once.

    With a `gate` (a new StepGate), the run logs only the steps the gate allows (tests).

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
        job = Job(config, run_dir, resume=resume_run_dir is not None, gate=gate)
        _JOBS[job.run_id] = job
        job._thread.start()
    return job


def get_job(run_id: str) -> Job | None:
    """The job of `run_id` started in this process, if any."""
    with _REGISTRY_LOCK:
        return _JOBS.get(run_id)


def list_jobs(runs_root: Path | None = None) -> list[Job]:
    """Jobs started in this process, newest first (running and ended); with `runs_root`, only
    those whose run directory lies in that folder."""
    with _REGISTRY_LOCK:
        found = sorted(_JOBS.values(), key=lambda j: j.created, reverse=True)
    if runs_root is None:
        return found
    root = Path(runs_root).resolve()
    return [j for j in found if Path(j.run_dir).resolve().parent == root]


def stop_all(timeout: float = 60.0) -> list[Job]:
    """Ask every running job of this process to stop, and wait for their threads to end, up to
    `timeout` seconds in all. Returns the jobs still running after that (none when all ended)."""
    with _REGISTRY_LOCK:
        live = [j for j in _JOBS.values() if j.is_alive()]
    for job in live:
        job.stop()
    deadline = time.monotonic() + timeout
    for job in live:
        job.join(max(0.0, deadline - time.monotonic()))
    return [j for j in live if j.is_alive()]


def forget(run_ids: list[str] | None = None) -> list[str]:
    """Drop ended jobs from the registry (every one, or those of `run_ids`); running jobs stay.
    Their run directories are left as they are. Returns the run ids dropped."""
    with _REGISTRY_LOCK:
        gone = [rid for rid, j in _JOBS.items() if not j.is_alive() and (run_ids is None or rid in run_ids)]
        for rid in gone:
            del _JOBS[rid]
    return gone
