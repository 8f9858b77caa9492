"""Fair order of the queue: round-robin across owners, the owner whose last start is oldest first.

    order(entries, last_starts)        # the entries in the order dispatch would start them
    load(qdir) / record(qdir, owner)   # <runs>/.queue/fair.state: each owner's last start (under the lock)
    ahead(entries, last_starts, mine)  # runs ahead of the first of `mine`, and how many people own them

Within one owner runs start oldest first. An owner who never started a run goes before everyone who
did (ties: whose oldest run was queued first). With one owner (a server without sign-in, or the
CLI) this is first-come first-served, as before.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable

from ..atomic import atomic_write_bytes
from .layout import read_json

FAIR_FILE = "fair.state"  # JSON, but not *.json: every .json file under .queue is a queue entry


def key(owner: str | None) -> str:
    return owner or ""


def load(qdir: Path) -> dict[str, float]:
    """owner -> time of their last start (a number that only grows), from <qdir>/fair.state."""
    d = read_json(Path(qdir) / FAIR_FILE)
    starts = d.get("last_start") if isinstance(d, dict) else None
    if not isinstance(starts, dict):
        return {}
    return {str(k): float(v) for k, v in starts.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def record(qdir: Path, owner: str | None, starts: dict[str, float]) -> dict[str, float]:
    """Note that `owner` started a run now (strictly later than any start before); written atomically.
    The caller holds the queue lock."""
    now = max(time.time(), max(starts.values(), default=0.0) + 1e-6)
    starts = {**starts, key(owner): now}
    atomic_write_bytes(Path(qdir) / FAIR_FILE, json.dumps({"last_start": starts}).encode())
    return starts


def order(entries: Iterable, last_starts: dict[str, float]) -> list:
    """The entries (each with .owner and .queued_at, given oldest first) in round-robin order."""
    per: dict[str, list] = {}
    for e in entries:
        per.setdefault(key(e.owner), []).append(e)
    starts = dict(last_starts)
    out = []
    tick = max(starts.values(), default=0.0)
    while per:
        who = min(per, key=lambda o: (starts.get(o, float("-inf")), per[o][0].queued_at))
        out.append(per[who].pop(0))
        if not per[who]:
            del per[who]
        tick += 1.0
        starts[who] = tick
    return out


def ahead(entries: list, last_starts: dict[str, float], mine: set[str]) -> tuple[int, int] | None:
    """(runs ahead of the first of the run ids `mine` in fair order, people owning them), or None when
    none of `mine` waits."""
    ordered = order(entries, last_starts)
    for i, e in enumerate(ordered):
        if e.run_dir.name in mine:
            before = ordered[:i]
            return len(before), len({key(x.owner) for x in before})
    return None
