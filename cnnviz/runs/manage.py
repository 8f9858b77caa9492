"""Managing a run: deleting it (confined to the runs root, refusing live runs), and what leaves the
server from it (its checkpoint, a standalone training script). Each takes the acting user (`by`) and
refuses a run that is not theirs (`cnnviz.runs.access`); `by=None` is the trusted caller (CLI, API)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .access import require
from .layout import CONFIG_FILE, LAST_WEIGHTS, METRICS_FILE, inside_root, root_of
from .status_type import Status
from .store import summary


def delete_run(path: Path, root: Path | None = None, *, by=None) -> None:
    """Delete a run directory under `root` (default runs_root()).

    Refuses, with a one-line ValueError: the root itself, anything not directly under the root (nested,
    `..`, a symlink that leads out), a folder that is not a run, a run still training (in any process)
    or waiting in the queue (cancel it first); with access.NotAllowed a run `by` does not own."""
    path = Path(path)
    root = root_of(root)
    if path.is_symlink() or not inside_root(path, root):
        raise ValueError(f"{path.name or path} is not a run directory under the runs folder; not deleted.")
    if not path.is_dir():
        return
    if not ((path / CONFIG_FILE).is_file() or (path / METRICS_FILE).is_file()):
        raise ValueError(f"{path.name} does not look like a training run (no config.json / metrics.jsonl); not deleted.")
    require(by, path, "delete")
    status = summary(path).status
    if status.training:
        raise ValueError("This run is still training: stop it before deleting it.")
    if status == Status.QUEUED:
        raise ValueError("This run is waiting in the queue: cancel it first.")
    shutil.rmtree(path)


def checkpoint_bytes(run_dir: Path, *, by=None) -> bytes:
    """The run's newest weights (last.safetensors) to download; FileNotFoundError when it has none."""
    run_dir = Path(run_dir)
    require(by, run_dir, "download")
    p = run_dir / LAST_WEIGHTS
    if not p.is_file():
        raise FileNotFoundError(f"Run {run_dir.name} has no checkpoint yet.")
    return p.read_bytes()


def training_script(run_dir: Path, *, by=None) -> str:
    """A standalone PyTorch script that reproduces the run (what `cnnviz export --script` writes)."""
    from ..train.export import export_script

    run_dir = Path(run_dir)
    require(by, run_dir, "export")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "train_run.py"
        export_script(run_dir, out)
        return out.read_text()


def bundle_source(run_dir: Path, *, by=None):
    """The run's weights as a bundle source (`cnnviz.train.bundle`), for an ONNX bundle download."""
    from ..train import bundle

    require(by, Path(run_dir), "download")
    return bundle.source_from_run(Path(run_dir))
