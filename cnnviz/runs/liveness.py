"""Is a process still the one that trains a run: pids with their start times (a reused pid is not ours)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .layout import LAUNCHER_FILE, PID_FILE


def process_start_time(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot, from /proc), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):  # a zombie has ended: no start time to match
        return None
    return fields[19]


def process_started_at(pid: int) -> float | None:
    """When process `pid` started, in seconds since the epoch (Linux /proc; never later than the real
    start: the boot time is whole seconds), or None where unknown."""
    ticks = process_start_time(pid)
    try:
        btime = next(int(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines()
                     if ln.startswith("btime "))
        return btime + int(ticks) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, TypeError, IndexError):
        return None


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether `pid` runs, and is the same process as the one that started at `start` (when given)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        pass
    except OSError:
        return False
    if Path("/proc/self/stat").exists():  # Linux: a zombie, or another process under a reused pid, is not ours
        now = process_start_time(pid)
        return now is not None and (start is None or now == start)
    return True


def pid_record() -> bytes:
    """What the `pid` file holds for this process: 'PID START'."""
    pid = os.getpid()
    return f"{pid} {process_start_time(pid) or ''}".strip().encode()


def read_pid(run_dir: Path) -> tuple[int, str | None] | None:
    """(pid, start time or None) from a run's pid file, or None."""
    try:
        parts = (Path(run_dir) / PID_FILE).read_text().split()
        return int(parts[0]), (parts[1] if len(parts) > 1 else None)
    except (OSError, ValueError, IndexError):
        return None


def read_launcher(run_dir: Path) -> dict | None:
    """The executor's record of how it started the run (launcher.json), or None."""
    try:
        d = json.loads((Path(run_dir) / LAUNCHER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None
