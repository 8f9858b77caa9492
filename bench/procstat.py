"""CPU seconds from /proc (Linux), for the benches that compare what the server and the browser spend."""

from __future__ import annotations

import os
from pathlib import Path


def _stat(pid: int) -> tuple[str, int, float]:
    """(command name, parent pid, CPU seconds user + system over every thread) of a process."""
    name, _, rest = Path(f"/proc/{pid}/stat").read_text().partition(" (")[2].rpartition(")")
    f = rest.split()
    return name, int(f[1]), (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """CPU seconds a process has used so far."""
    return _stat(pid)[2]


def descendants_cpu_s(name_part: str, root: int | None = None) -> float:
    """CPU seconds used so far by the live processes under `root` (default: this one) whose command
    name contains `name_part` (e.g. "chrom": the Chromium processes playwright started)."""
    procs = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                procs[int(p.name)] = _stat(int(p.name))
            except (OSError, IndexError, ValueError):  # gone meanwhile
                pass
    mine, grew = {root or os.getpid()}, True
    while grew:
        new = {pid for pid, (_, parent, _) in procs.items() if parent in mine} - mine
        mine |= new
        grew = bool(new)
    return sum(cpu for pid, (name, _, cpu) in procs.items() if pid in mine and name_part in name)
