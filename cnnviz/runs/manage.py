"""Deleting a run: only a run directory directly under the runs root, never one that trains or waits."""

from __future__ import annotations

import shutil
from pathlib import Path

from .layout import CONFIG_FILE, METRICS_FILE, inside_root, root_of
from .status_type import Status
from .store import summary


def delete_run(path: Path, root: Path | None = None) -> None:
    """Delete a run directory under `root` (default runs_root()).

    Refuses, with a one-line ValueError: the root itself, anything not directly under the root (nested,
    `..`, a symlink that leads out), a folder that is not a run, a run still training (in any process)
    or waiting in the queue (cancel it first)."""
    path = Path(path)
    root = root_of(root)
    if path.is_symlink() or not inside_root(path, root):
        raise ValueError(f"{path.name or path} is not a run directory under the runs folder; not deleted.")
    if not path.is_dir():
        return
    if not ((path / CONFIG_FILE).is_file() or (path / METRICS_FILE).is_file()):
        raise ValueError(f"{path.name} does not look like a training run (no config.json / metrics.jsonl); not deleted.")
    status = summary(path).status
    if status.training:
        raise ValueError("This run is still training: stop it before deleting it.")
    if status == Status.QUEUED:
        raise ValueError("This run is waiting in the queue: cancel it first.")
    shutil.rmtree(path)
