"""How often a live training view redraws, and which data its charts show between redraws.

No streamlit here: the Train page keeps a `ChartHold` per run in its session state and asks it,
at every refresh of the live view, which steps and epochs the charts should draw. Between chart
redraws it hands back the very same lists, so the page sends the browser byte-identical charts,
which the browser does not redraw. Redrawing plotly charts is the costly part of a live view:
on a small CPU-only machine the browser's drawing time is taken from the training run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

REFRESH_CHOICES = ("auto", 1, 2, 5, 10, 30)  # seconds between refreshes of a live view, or "auto"
DEFAULT_REFRESH = "auto"
AUTO_REFRESH_S = {"cpu": 10, "gpu": 2}         # "auto": by where the run trains
CHARTS_EVERY = 3                               # charts redraw every CHARTS_EVERY refreshes


def refresh_seconds(choice: object, device_type: str = "cpu") -> int:
    """Seconds between refreshes of a live view of a run on `device_type` ("cpu", "cuda", "mps").

    A number from REFRESH_CHOICES is taken as is. "auto" (and None or anything unknown) gives 10 s
    for a run on the CPU, where every redraw in a browser on the same machine takes CPU from the
    run, and 2 s for a run on a GPU, which the browser does not slow down."""
    if choice in REFRESH_CHOICES and choice != "auto":
        return int(choice)
    return AUTO_REFRESH_S["cpu" if device_type == "cpu" else "gpu"]


def describe_refresh(choice: object) -> str:
    """The refresh setting in words, for a caption."""
    if choice in REFRESH_CHOICES and choice != "auto":
        return f"every {choice} s (charts every {chart_period(int(choice)):g} s)"
    cpu, gpu = AUTO_REFRESH_S["cpu"], AUTO_REFRESH_S["gpu"]
    return (f"every {cpu} s for a run on the CPU (charts every {chart_period(cpu):g} s), every {gpu} s "
            f"on a GPU (charts every {chart_period(gpu):g} s)")


def clock() -> float:
    """Seconds on a monotonic clock: what ChartHold measures its period on (tests replace it)."""
    return time.monotonic()


def chart_period(refresh_s: float) -> float:
    """Seconds between chart redraws for a live view refreshed every `refresh_s` seconds."""
    return CHARTS_EVERY * float(refresh_s)


@dataclass
class ChartHold:
    """The steps and epochs a run's charts show, renewed at most every `period` seconds.

    `view(steps, epochs)` returns the lists to draw: the held ones, or the new ones, which it then
    holds, when the period has passed, the run has ended, nothing was held yet (so the charts appear
    with the first logged step, not a period later) or the steps shrank (other data: never keep a
    stale longer curve). Not at each epoch's end: with short epochs that would redraw the charts at
    every refresh; the accuracy chart shows a finished epoch within one period.
    """

    period: float
    steps: list = field(default_factory=list)
    epochs: list = field(default_factory=list)
    at: float = float("-inf")

    def view(self, steps: list, epochs: list, *, ended: bool = False,
             now: float | None = None) -> tuple[list, list]:
        now = clock() if now is None else now
        due = (ended or now - self.at >= self.period or not (self.steps or self.epochs)
               or len(steps) < len(self.steps))
        if due:
            self.steps, self.epochs, self.at = list(steps), list(epochs), now
        return self.steps, self.epochs
