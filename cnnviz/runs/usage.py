"""The class board and the teacher's view of who uses what.

    board(runs, "cifar10")      # finished runs on a dataset, best test accuracy first (BoardRow)
    board_datasets(runs)        # datasets with at least one finished run, most runs first
    usage(runs, root)           # per owner: runs, live runs, GPU and CPU hours, storage (UsageRow)

Both work on a listing (`list_runs()`), so a page lists once. Names are not decided here: a row
carries the owner's id; the page shows a name to admins only (or to all with CNNVIZ_BOARD_NAMES=1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..uploads import used_bytes
from ..users import is_user_id
from .quotas import dir_bytes
from .status_type import Status

BOARD_SETTINGS = ("optimizer", "lr", "batch_size", "schedule", "augment", "weight_decay")


@dataclass(frozen=True)
class BoardRow:
    rank: int
    run_id: str
    run_dir: Path
    owner: str | None
    model: str
    dataset: str
    epochs: int
    test_acc: float
    best_acc: float | None
    settings: dict


@dataclass(frozen=True)
class UsageRow:
    owner: str | None
    runs: int
    live: int
    finished: int
    gpu_hours: float
    cpu_hours: float
    storage_bytes: int


def names_on_board() -> bool:
    """Whether everyone sees the names on the board ($CNNVIZ_BOARD_NAMES=1), not only admins."""
    return os.environ.get("CNNVIZ_BOARD_NAMES", "").strip().lower() in ("1", "true", "yes")


def board_datasets(runs: list) -> list[str]:
    counts: dict[str, int] = {}
    for r in runs:
        if r.status == Status.FINISHED and r.test_acc is not None:
            ds = str(r.config.get("dataset") or "")
            counts[ds] = counts.get(ds, 0) + 1
    return sorted(counts, key=lambda d: (-counts[d], d))


def board(runs: list, dataset: str, model: str | None = None) -> list[BoardRow]:
    """Finished runs on `dataset` (and `model`, if given), ranked by final test accuracy (ties: fewer epochs,
    then earlier)."""
    rows = [r for r in runs if r.status == Status.FINISHED and r.test_acc is not None
            and r.config.get("dataset") == dataset and (model is None or r.config.get("model") == model)]
    rows.sort(key=lambda r: (-r.test_acc, r.epochs_done, r.created))
    out = []
    for i, r in enumerate(rows, 1):
        c = r.config
        out.append(BoardRow(i, r.run_id, r.run_dir, r.owner, str(c.get("model")), dataset, r.epochs_done,
                            float(r.test_acc), r.best.get("test_acc"),
                            {k: c.get(k) for k in BOARD_SETTINGS if k in c}))
    return out


def _hours(r) -> float:
    last = r.last_epoch or {}
    secs = last.get("elapsed_s") or (r.last_step or {}).get("elapsed_s") or 0.0
    return float(secs) * int(r.start.get("world_size") or 1) / 3600.0


def usage(runs: list, root: Path | None = None) -> list[UsageRow]:
    """Per owner (None: runs without one): how many runs, how many queued or training, finished,
    device hours (GPU: CUDA runs; CPU: the rest; training time x processes) and bytes on disk (runs and
    uploads). Most storage first."""
    per: dict[str | None, dict] = {}
    for r in runs:
        u = per.setdefault(r.owner, {"runs": 0, "live": 0, "finished": 0, "gpu": 0.0, "cpu": 0.0, "bytes": 0})
        u["runs"] += 1
        u["live"] += int(r.status.live)
        u["finished"] += int(r.status == Status.FINISHED)
        kind = str(r.start.get("device_type") or r.device or r.config.get("device") or "")
        u["gpu" if kind.startswith("cuda") else "cpu"] += _hours(r)
        u["bytes"] += dir_bytes(r.run_dir)
    for owner, u in per.items():
        if is_user_id(owner):
            try:
                u["bytes"] += used_bytes(owner)
            except (OSError, ValueError):
                pass
    rows = [UsageRow(o, u["runs"], u["live"], u["finished"], u["gpu"], u["cpu"], u["bytes"]) for o, u in per.items()]
    return sorted(rows, key=lambda x: (-x.storage_bytes, x.owner or ""))
