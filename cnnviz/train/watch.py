"""Watching a run from its directory: what a page shows of a run that trains in another process.

    w = RunWatch(run_dir)
    snap = w.snapshot()      # reads only the bytes appended to metrics.jsonl since the last call

The snapshot has the same keys as `jobs.Job.snapshot()` (status, config, steps, epochs,
progress, ETA, device, memory, error/advice, start, final), plus `queue_position` for a queued
run and `reason` / `log_tail` for an interrupted one, so a page draws a process run and an
in-process job alike. Nothing here writes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from . import runs

MAX_STEPS_KEPT = 20_000  # beyond that the step list is thinned (every other point) for the charts


class MetricsTail:
    """Incremental reader of an append-only JSONL file: each `read()` parses only the new complete lines.

    A torn last line waits for its end; a file that shrank (replaced) is read again from the start,
    and `reset` tells the caller so."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self._partial = b""
        self.reset = False

    def read(self) -> list[dict]:
        self.reset = False
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self.offset:  # the file was replaced: start again
                    self.offset, self._partial, self.reset = 0, b"", True
                if size == self.offset:
                    return []
                f.seek(self.offset)
                chunk = f.read(size - self.offset)
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        return runs.parse_lines(complete)


class RunWatch:
    """The live state of one run directory, built from its metrics.jsonl as it grows."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_id = self.run_dir.name
        self._tail = MetricsTail(self.run_dir / runs.METRICS_FILE)
        self._clear()

    def _clear(self) -> None:
        self.steps: list[dict] = []
        self.epochs: list[dict] = []
        self.start: dict = {}
        self.final: dict = {}
        self._control: list[dict] = []  # start/resume/done/error lines: what the status is read from
        self._any = False
        self._first: tuple[float, float] | None = None  # (time, progress) of the first step of this attempt

    def _take(self, lines: list[dict]) -> None:
        if self._tail.reset:
            self._clear()
        for obj in lines:
            self._any = True
            kind = obj.get("kind")
            if kind == "step":
                self.steps.append(obj)
                if len(self.steps) > MAX_STEPS_KEPT:
                    self.steps = self.steps[::2]
                if self._first is None:
                    self._first = (float(obj.get("t", time.time())), float(obj.get("progress", 0.0)))
            elif kind == "epoch":
                self.epochs.append(obj)
            elif kind in ("start", "resume", "done", "error"):
                self._control.append(obj)
                if kind == "start":
                    self.start, self.final, self._first = obj, {}, None
                elif kind == "resume":  # drop what a killed/stopped attempt logged after its last checkpoint
                    done_epochs, done_steps = int(obj.get("epochs_done", 0)), int(obj.get("global_step", 0))
                    self.epochs = [e for e in self.epochs if int(e.get("epoch", 0)) <= done_epochs]
                    self.steps = [s for s in self.steps if int(s.get("step", 0)) <= done_steps]
                else:
                    self.final = obj

    def snapshot(self) -> dict:
        """Everything a page draws of the run now (reads only what was appended since the last call)."""
        self._take(self._tail.read())
        status, _, reason = runs._status(self.run_dir, self._control or ([{}] if self._any else []))
        try:
            config = json.loads((self.run_dir / runs.CONFIG_FILE).read_text())
        except (OSError, ValueError):
            config = {}
        progress = 0.0
        if self.steps:
            progress = float(self.steps[-1].get("progress", 0.0))
        if self.epochs:
            progress = max(progress, float(self.epochs[-1].get("progress", 0.0)))
        if status == "finished":
            progress = 1.0
        eta = None
        if status == "running" and self._first is not None and self.steps:
            t0, p0 = self._first
            t1, p1 = float(self.steps[-1].get("t", t0)), progress
            if p1 > p0 and t1 > t0:
                eta = (t1 - t0) * (1.0 - p1) / (p1 - p0)
        error = advice = None
        if status in ("error", "diverged"):
            error, advice = self.final.get("message"), self.final.get("advice")
        memory = ""
        for s in reversed(self.steps[-50:]):
            if s.get("memory"):
                memory = s["memory"]
                break
        from . import runqueue

        return {
            "run_id": self.run_id, "run_dir": str(self.run_dir), "status": status, "config": config,
            "steps": list(self.steps), "epochs": list(self.epochs), "progress": min(1.0, max(0.0, progress)),
            "eta_s": eta, "device": self.start.get("device", ""), "memory": memory if status == "running" else "",
            "error": error, "advice": advice, "start": dict(self.start), "final": dict(self.final),
            "alive": status in ("queued", "starting", "running"), "reason": reason,
            "queue_position": runqueue.position(self.run_dir) if status == "queued" else None,
            "log_tail": runs.log_tail(self.run_dir) if status in ("interrupted", "error") else "",
        }
