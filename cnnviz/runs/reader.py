"""The one reader of metrics.jsonl: incremental (each read parses only the bytes appended since the
last), so a full read is the incremental read from byte 0.

    r = MetricsReader(run_dir / "metrics.jsonl")
    r.read()                  # take what was appended; r.epochs, r.steps.points(), r.start, r.final ...

One rule for a resumed run: a "resume" line says how far the checkpoint it resumes from got
(epochs_done, global_step); what a killed or stopped attempt logged after that is dropped, since
the resumed attempt trains those epochs and steps again.

Steps are kept as a `StepSeries`: at most `max_points` points whatever the run's length, each
bucket of consecutive steps keeping its lowest and highest loss (so spikes survive) and the newest
step always kept; with `max_points=None` every step is kept (TensorBoard export).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from .layout import parse_lines

MAX_POINTS = 2000
CHUNK = 4 * 2**20  # bytes read and parsed at a time
CONTROL = ("start", "resume", "done", "error")


class StepSeries:
    """A bounded, min/max-preserving series of step records (dicts with "step" and "loss")."""

    def __init__(self, max_points: int | None = MAX_POINTS) -> None:
        self.max_points = max_points
        self._buckets: list[list[dict]] = []  # each: its records (<= 2: lowest and highest loss), by step
        self._width = 1                       # steps per bucket
        self._fill = 0                        # steps taken into the newest bucket
        self.last: dict = {}
        self.count = 0                        # steps taken (after drops)

    def add(self, rec: dict) -> None:
        self.last = rec
        self.count += 1
        if self.max_points is None:
            self._buckets.append([rec])
            return
        if not self._buckets or self._fill >= self._width:
            self._buckets.append([rec])
            self._fill = 1
        else:
            self._buckets[-1] = _extremes(self._buckets[-1] + [rec])
            self._fill += 1
        if 2 * len(self._buckets) > self.max_points:
            pairs = [self._buckets[i:i + 2] for i in range(0, len(self._buckets), 2)]
            self._buckets = [_extremes([r for b in pair for r in b]) for pair in pairs]
            if len(pairs[-1]) == 2:  # the newest bucket now also holds the full one before it
                self._fill += self._width
            self._width *= 2

    def drop_after(self, step: int) -> None:
        """Forget every record past `step` (a resumed attempt logs them again)."""
        kept = [[r for r in b if int(r.get("step", 0)) <= step] for b in self._buckets]
        self._buckets = [b for b in kept if b]
        self._fill = self._width
        self.count = min(self.count, step)
        if self.last and int(self.last.get("step", 0)) > step:
            self.last = self._buckets[-1][-1] if self._buckets else {}

    def points(self) -> list[dict]:
        """The kept records in step order, the newest last."""
        out = [r for b in self._buckets for r in b]
        if self.last and (not out or out[-1] is not self.last):
            out.append(self.last)
        return out


def _extremes(recs: list[dict]) -> list[dict]:
    """The records of lowest and highest loss among `recs`, in step order (one if they are the same)."""
    def loss(r: dict) -> float:
        v = r.get("loss")
        return v if isinstance(v, (int, float)) else float("nan")

    finite = [r for r in recs if loss(r) == loss(r)]
    if not finite:
        return [recs[-1]]
    lo, hi = min(finite, key=loss), max(finite, key=loss)
    pair = sorted({id(lo): lo, id(hi): hi}.values(), key=lambda r: int(r.get("step", 0)))
    return pair


class MetricsReader:
    """The state of one metrics.jsonl, updated by `read()` from the bytes appended since the last call."""

    def __init__(self, path: Path, max_points: int | None = MAX_POINTS) -> None:
        self.path = Path(path)
        self.max_points = max_points
        self.lock = threading.Lock()  # a reader shared by the server's sessions is read by one at a time
        self._clear()

    def _clear(self) -> None:
        self.offset = 0
        self._partial = b""
        self.steps = StepSeries(self.max_points)
        self.epochs: list[dict] = []
        self.start: dict = {}
        self.final: dict | None = None       # the latest done/error line while it is the latest control line
        self.any = False
        self.first_step: tuple[float, float] | None = None  # (time, progress) of this attempt's first step
        self.memory = ""
        self.created = 0.0

    def read(self) -> bool:
        """Take the complete lines appended since the last read; True when anything new was taken.
        The file is read in blocks of CHUNK bytes, so a long run's first read holds one block at a time."""
        taken = False
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self.offset:  # the file was replaced: start again
                    self._clear()
                f.seek(self.offset)
                while self.offset < size:
                    chunk = f.read(min(CHUNK, size - self.offset))
                    if not chunk:
                        break
                    self.offset += len(chunk)
                    *complete, self._partial = (self._partial + chunk).split(b"\n")
                    for obj in parse_lines(complete):
                        self._take(obj)
                        taken = True
        except FileNotFoundError:
            return False
        return taken

    def _take(self, obj: dict) -> None:
        if not self.any:
            self.created = float(obj.get("t") or 0.0)
        self.any = True
        kind = obj.get("kind")
        if kind == "step":
            self.steps.add(obj)
            if self.first_step is None:
                self.first_step = (float(obj.get("t", time.time())), float(obj.get("progress", 0.0)))
            if obj.get("memory"):
                self.memory = str(obj["memory"])
        elif kind == "epoch":
            self.epochs.append(obj)
        elif kind == "resume":
            done_epochs, done_steps = int(obj.get("epochs_done", 0)), int(obj.get("global_step", 0))
            self.epochs = [e for e in self.epochs if int(e.get("epoch", 0)) <= done_epochs]
            self.steps.drop_after(done_steps)
            self.final = None
        elif kind == "start":
            self.start, self.final, self.first_step, self.memory = obj, None, None, ""
        elif kind in ("done", "error"):
            self.final = obj

    @property
    def epochs_done(self) -> int:
        return max((int(e.get("epoch", 0)) for e in self.epochs), default=0)

    def progress(self) -> float:
        p = float(self.steps.last.get("progress", 0.0)) if self.steps.last else 0.0
        if self.epochs:
            p = max(p, float(self.epochs[-1].get("progress", 0.0)))
        return min(1.0, max(0.0, p))

    def eta_s(self) -> float | None:
        """Seconds left, from this attempt's progress rate (None before two steps of it)."""
        if self.first_step is None or not self.steps.last:
            return None
        t0, p0 = self.first_step
        t1, p1 = float(self.steps.last.get("t", t0)), self.progress()
        if p1 > p0 and t1 > t0:
            return (t1 - t0) * (1.0 - p1) / (p1 - p0)
        return None
