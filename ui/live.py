"""How often a live run redraws on the Train page.

A run is a process of its own, and its view reads only the bytes its metrics.jsonl gained since the
last look (`cnnviz.runs.snapshot`), so a refresh costs the server little. Status and progress redraw
every `seconds` (default 1 s) and the charts every CHARTS_EVERY refreshes (3 s), on any device.
Each redraw costs the browser CPU (measured with headless Chromium on this project's 2-core machine,
`bench/page_polling.py`: about a third of a core at 1 s, a tenth at 10 s); where the browser and a
CPU run share few cores the user can pick a slower refresh, or Paused (redraw on Refresh only).
"""

from __future__ import annotations

REFRESH_CHOICES = (1, 2, 5, 10, 0)   # seconds between status redraws of a live view; 0: paused
DEFAULT_REFRESH = 1
CHARTS_EVERY = 3                  # charts redraw every CHARTS_EVERY status refreshes

# A live view redraws every second. Streamlit's progress bar and metrics ease each change in with a CSS
# transition, and headless Chromium (software rendering) repaints every frame of it: measured with one
# fragment redrawing a progress bar each second, 8.5% of a core with the transition, 3.7% without.
# The run cards drop transitions (the bar jumps to its new width; it moves once a second anyway).
LIVE_CSS = """<style>
[class*="st-key-train_run_"] *, [class*="st-key-train_run_"] *::before, [class*="st-key-train_run_"] *::after
  { transition: none !important; animation: none !important; }
</style>"""

REFRESH_HELP = (
    "How often a live run's status redraws; its charts redraw every third time. A redraw costs the server "
    "little (it reads only what the run appended) but costs the browser CPU: measured on 2 cores, about a "
    "third of a core at 1 s and a tenth at 10 s. Where the browser and a CPU run share a few cores, a slower "
    "refresh, or Paused, leaves the run more of them (there, 1 s cost the run ~25% of its speed).")


def refresh_seconds(choice: object) -> int:
    """Seconds between status refreshes: the choice when it is one of REFRESH_CHOICES, else the default;
    0 when the user paused the live views."""
    return int(choice) if choice in REFRESH_CHOICES else DEFAULT_REFRESH


def chart_seconds(refresh_s: float) -> float | None:
    """Seconds between chart redraws for a live view refreshed every `refresh_s` seconds (None: paused)."""
    return CHARTS_EVERY * float(refresh_s) if refresh_s else None


def refresh_label(choice: int) -> str:
    """How the refresh picker shows a choice."""
    return f"{choice} s" if choice else "Paused"


def describe_refresh(choice: object) -> str:
    """The refresh setting in words, for a caption."""
    s = refresh_seconds(choice)
    if not s:
        return "paused (they redraw when you press Refresh or pick a period)"
    return f"status every {s} s, charts every {chart_seconds(s):g} s"
