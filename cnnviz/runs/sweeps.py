"""Sweeps: a grid of settings queued as runs that share a sweep id, and their comparison.

    sweep_id, dirs = submit_grid({"lr": "1e-3,3e-3,1e-2", "batch_size": "64,128"}, base={"epochs": 2})
    rows = table(sweep_id)            # settings and final scores of each run, best first

Values are lists or comma-separated text, converted to each TrainConfig field's type. Every
combination is validated before any is queued, so a bad value queues nothing.
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..train.config import TrainConfig, preset_config
from . import queue
from .store import list_runs

MAX_RUNS_PER_SWEEP = 64
TABLE_SCORES = ("run_id", "status", "epochs_done", "test_acc", "test_loss", "train_loss", "images_per_s", "best")
_BOOL = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _field_types() -> dict[str, str]:
    return {f.name: str(f.type) for f in fields(TrainConfig)}


def parse_values(name: str, raw: Any) -> list:
    """The values of one swept field: a list as given, or comma-separated text converted to the field's type."""
    types = _field_types()
    if name not in types:
        raise ValueError(f"Unknown setting {name!r}; known: {', '.join(sorted(types))}.")
    items = list(raw) if isinstance(raw, (list, tuple)) else [v.strip() for v in str(raw).split(",")]
    items = [v for v in items if v != ""]
    if not items:
        raise ValueError(f"No value given for {name}.")
    kind = types[name]
    out = []
    for v in items:
        if not isinstance(v, str):
            out.append(v)
            continue
        try:
            if kind.startswith("int"):
                if v.lower() in ("none", "all") and "None" in kind:
                    out.append(None)
                    continue
                f = float(v)
                if not f.is_integer():
                    _bad(name, v, "a whole number")
                out.append(int(f))
            elif kind == "float":
                out.append(float(v))
            elif kind == "bool":
                if v.lower() not in _BOOL:
                    _bad(name, v, "true or false")
                out.append(_BOOL[v.lower()])
            else:
                out.append(v)
        except ValueError as exc:
            if "must be" in str(exc):
                raise
            _bad(name, v, "a number")
    return list(dict.fromkeys(out))  # no duplicate runs


def _bad(name: str, value: str, what: str):
    raise ValueError(f"{name} must be {what}, not {value!r}.")


def expand(grid: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, as dicts of settings (fields in the grid's order)."""
    names = list(grid)
    values = [parse_values(n, grid[n]) for n in names]
    n = 1
    for v in values:
        n *= len(v)
    if n > MAX_RUNS_PER_SWEEP:
        raise ValueError(f"The grid makes {n:,} runs; a sweep holds at most {MAX_RUNS_PER_SWEEP}.")
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def new_sweep_id() -> str:
    return f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def submit_grid(grid: dict[str, Any], base: dict[str, Any] | None = None, preset: str | None = None,
                nproc: int | None = None, root: Path | None = None, owner: str | None = None,
                visitor: str | None = None, limits=None, by=None) -> tuple[str, list[Path]]:
    """Queue one run per combination, all or nothing (ValueError, nothing queued, if any is invalid);
    `by`, the acting user, owns them (see `queue.submit_many`)."""
    combos = expand(grid)
    base = dict(base or {})
    configs = []
    for combo in combos:
        settings = {**base, **combo}
        cfg = preset_config(preset, **settings) if preset else TrainConfig.from_dict(settings)
        try:
            cfg.validate()
        except ValueError as exc:
            shown = ", ".join(f"{k}={v}" for k, v in combo.items())
            raise ValueError(f"The run {shown} is not valid: {exc}") from None
        configs.append((combo, cfg))
    sweep_id = new_sweep_id()
    varying = [k for k in grid if len({repr(c[k]) for c, _ in configs}) > 1]
    dirs = queue.submit_many([cfg for _, cfg in configs], root, nproc=nproc, owner=owner, visitor=visitor,
                             limits=limits, by=by,
                             sweeps=[{"sweep_id": sweep_id, "params": {k: combo[k] for k in varying} or combo}
                                     for combo, _ in configs])
    return sweep_id, dirs


def sweep_ids(root: Path | None = None) -> list[str]:
    """Sweep ids found under the runs root, newest first."""
    return sorted({r.sweep.get("sweep_id") for r in list_runs(root)} - {None, ""}, reverse=True)


def table(sweep_id: str, root: Path | None = None, runs: list | None = None) -> list[dict[str, Any]]:
    """One row per run of the sweep: its swept settings, status, epochs and final scores; best first
    (`runs`: a listing already made, else `list_runs(root)`)."""
    rows = []
    for r in (runs if runs is not None else list_runs(root)):
        if r.sweep.get("sweep_id") != sweep_id:
            continue
        last = r.last_epoch
        rows.append({"run_id": r.run_id, **dict(r.sweep.get("params") or {}),
                     "status": str(r.status), "epochs_done": r.epochs_done,
                     "test_acc": last.get("test_acc"), "test_loss": last.get("test_loss"),
                     "train_loss": last.get("train_loss"), "images_per_s": last.get("images_per_s")})
    rows.sort(key=lambda d: -1.0 if d["test_acc"] is None else d["test_acc"], reverse=True)
    for i, row in enumerate(rows):
        row["best"] = i == 0 and row["test_acc"] is not None
    return rows
