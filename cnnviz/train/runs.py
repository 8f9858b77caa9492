"""Training runs on disk: `runs/<run-id>/` with config.json, metrics.jsonl and checkpoints.

Layout of one run directory (written by `cnnviz.train.fit`):

- `config.json`: the TrainConfig as a dict (written atomically).
- `metrics.jsonl`: append-only, one JSON object per line with a `kind` key
  ("start", "step", "epoch", "checkpoint", "resume", "done", "error"); every line is
  written with a single write() call, so a kill -9 can at worst tear the last line,
  which the reader here skips.
- `epoch-0003.safetensors`: per-epoch weights (a capped number kept, first and last
  always), `last.safetensors`: the newest weights, `last-state.pt`: optimizer,
  schedule and RNG state (plain tensors/dicts only: loads with `weights_only=True`).
- `pid`: the process id that trains it (tells "running" from "interrupted").
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
LAST_WEIGHTS = "last.safetensors"
LAST_STATE = "last-state.pt"
PID_FILE = "pid"
_EPOCH_RE = re.compile(r"^epoch-(\d+)\.safetensors$")


def runs_root() -> Path:
    """Where runs live: $CNNVIZ_RUNS, else ./runs."""
    return Path(os.environ.get("CNNVIZ_RUNS") or "runs")


def new_run_id(model: str, dataset: str) -> str:
    """A sortable, unique, filesystem-safe id such as '20261128-174900-lenet5-shapes-a3f1'."""
    ds = re.sub(r"[^A-Za-z0-9]+", "-", dataset.split(":", 1)[-1].rstrip("/").split("/")[-1] or dataset)
    ds = ds.strip("-")[:24] or "data"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{re.sub(r'[^A-Za-z0-9_]+', '-', model)}-{ds}-{secrets.token_hex(2)}"


def epoch_checkpoint_name(epoch: int) -> str:
    """File name of the per-epoch weights of `epoch` (1-based)."""
    return f"epoch-{epoch:04d}.safetensors"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All complete JSON-object lines of `path`; a torn or garbled line is skipped."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


@dataclass
class RunInfo:
    """One run directory, parsed."""

    run_id: str
    path: Path
    config: dict
    status: str  # starting | running | finished | stopped | diverged | error | interrupted
    epochs: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    checkpoints: dict[int, Path] = field(default_factory=dict)
    last_checkpoint: Path | None = None
    created: float = 0.0
    final: dict = field(default_factory=dict)  # data of the done/error line, if any
    start: dict = field(default_factory=dict)  # data of the latest start line (classes, device, ...)

    @property
    def finished_epochs(self) -> int:
        """Number of epochs completed so far."""
        return max((int(e.get("epoch", 0)) for e in self.epochs), default=0)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        return True
    except OSError:
        return False
    return True


def _live_in_this_process(path: Path) -> bool:
    jobs = sys.modules.get("cnnviz.train.jobs")
    if jobs is None:
        return False
    try:
        return any(j.is_alive() and Path(j.run_dir).resolve() == path.resolve() for j in jobs.list_jobs())
    except Exception:  # pragma: no cover - defensive
        return False


def _status(path: Path, lines: list[dict]) -> tuple[str, dict]:
    for obj in reversed(lines):
        kind = obj.get("kind")
        if kind == "done":
            return str(obj.get("status", "finished")), obj
        if kind == "error":
            return "error", obj
        if kind in ("start", "resume"):
            break
    try:
        pid = int((path / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid is not None:
        alive = _live_in_this_process(path) if pid == os.getpid() else _pid_alive(pid)
        if alive:
            return ("running" if lines else "starting"), {}
    return ("interrupted" if lines else "starting"), {}


def json_safe(d: dict) -> dict:
    """JSON-safe copy: non-finite floats -> None, tensors/paths -> numbers/strings."""
    out = {}
    for k, v in d.items():
        if hasattr(v, "numel") and hasattr(v, "tolist"):  # a tensor
            v = v.item() if v.numel() == 1 else v.tolist()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        elif isinstance(v, Path):
            v = str(v)
        elif isinstance(v, dict):
            v = json_safe(v)
        out[k] = v
    return out


class MetricsLog:
    """metrics.jsonl: one os.write() per line (O_APPEND), fsync on epoch/status lines."""

    def __init__(self, path: Path) -> None:
        if path.exists():  # a kill -9 may have torn the last line: cut it before appending
            raw = path.read_bytes()
            if raw and not raw.endswith(b"\n"):
                with open(path, "r+b") as f:
                    f.truncate(raw.rfind(b"\n") + 1)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, kind: str, data: dict, sync: bool = True) -> None:
        line = json.dumps({"kind": kind, "t": round(time.time(), 3), **json_safe(data)}) + "\n"
        os.write(self.fd, line.encode())
        if sync:
            os.fsync(self.fd)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def write_state(run_dir: Path, payload: dict) -> None:
    """Atomically write last-state.pt (optimizer/schedule/RNG: plain tensors, dicts, lists, numbers only)."""
    import io

    import torch

    from ..models.checkpoints import atomic_write_bytes

    blob = io.BytesIO()
    torch.save(payload, blob)
    atomic_write_bytes(Path(run_dir) / LAST_STATE, blob.getvalue())


def load_run(path: Path) -> RunInfo:
    """Parse one run directory (tolerates a torn last metrics line and missing files)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"No run directory at {path}.")
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
        if not isinstance(config, dict):
            config = {}
    except (OSError, json.JSONDecodeError):
        config = {}
    lines = read_jsonl(path / METRICS_FILE)
    epochs: list[dict] = []
    steps: list[dict] = []
    start: dict = {}
    for obj in lines:
        kind = obj.get("kind")
        if kind == "epoch":
            epochs.append(obj)
        elif kind == "step":
            steps.append(obj)
        elif kind == "start":
            start = obj
        elif kind == "resume":  # drop what a killed/stopped attempt logged after its last checkpoint
            done_epochs = int(obj.get("epochs_done", 0))
            done_steps = int(obj.get("global_step", 0))
            epochs = [e for e in epochs if int(e.get("epoch", 0)) <= done_epochs]
            steps = [s for s in steps if int(s.get("step", 0)) <= done_steps]
    status, final = _status(path, lines)
    ckpts = {}
    for p in path.glob("epoch-*.safetensors"):
        m = _EPOCH_RE.match(p.name)
        if m:
            ckpts[int(m.group(1))] = p
    last = path / LAST_WEIGHTS
    created = float(lines[0].get("t", 0)) if lines else 0.0
    if not created:
        try:
            created = (path / CONFIG_FILE).stat().st_mtime
        except OSError:
            created = path.stat().st_mtime
    return RunInfo(run_id=path.name, path=path, config=config, status=status, epochs=epochs, steps=steps,
                   checkpoints=dict(sorted(ckpts.items())), last_checkpoint=last if last.is_file() else None,
                   created=created, final=final, start=start)


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """All runs under `root` (default runs_root()), newest first."""
    root = Path(root) if root is not None else runs_root()
    if not root.is_dir():
        return []
    out = []
    for d in root.iterdir():
        if d.is_dir() and ((d / CONFIG_FILE).is_file() or (d / METRICS_FILE).is_file()):
            try:
                out.append(load_run(d))
            except OSError:
                continue
    return sorted(out, key=lambda r: (r.created, r.run_id), reverse=True)


def delete_run(path: Path) -> None:
    """Delete a run directory; refuses folders that are not runs and runs still training here."""
    path = Path(path)
    if not path.is_dir():
        return
    if not ((path / CONFIG_FILE).is_file() or (path / METRICS_FILE).is_file()):
        raise ValueError(f"{path} does not look like a training run (no config.json / metrics.jsonl); not deleted.")
    if _live_in_this_process(path):
        raise ValueError("This run is still training: stop it before deleting it.")
    shutil.rmtree(path)


def load_model(run: RunInfo, epoch: int | None = None):
    """The run's model (eval mode) with the weights of `epoch` (default: the latest) and their meta."""
    from .. import models
    from ..models.checkpoints import CheckpointError, load_checkpoint, load_into

    if epoch is None:
        ckpt_path = run.last_checkpoint or (run.checkpoints[max(run.checkpoints)] if run.checkpoints else None)
    else:
        ckpt_path = run.checkpoints.get(int(epoch))
        if ckpt_path is None:
            raise CheckpointError(f"Run {run.run_id} has no checkpoint for epoch {epoch}; "
                                  f"saved epochs: {sorted(run.checkpoints) or 'none'}.")
    if ckpt_path is None:
        raise CheckpointError(f"Run {run.run_id} has no checkpoint yet.")
    ckpt = load_checkpoint(ckpt_path)
    meta = dict(ckpt.meta)
    name = meta.get("model") or run.config.get("model")
    # a design is rebuilt from the JSON its checkpoint recorded, so editing the file later breaks nothing
    model = models.design.create_for_checkpoint(name, meta, int(meta.get("num_classes", 10)),
                                                int(meta.get("in_channels", 3)))
    load_into(model, ckpt, name)
    model.eval()
    return model, meta


def thin_checkpoints(run_dir: Path, cap: int) -> None:
    """Keep at most `cap` epoch checkpoints: first and last always, drop the most crowded in between."""
    info = load_run(run_dir)
    eps = sorted(info.checkpoints)
    while len(eps) > max(2, cap):
        gaps = [(eps[i + 1] - eps[i - 1], eps[i]) for i in range(1, len(eps) - 1)]
        _, victim = min(gaps)
        info.checkpoints[victim].unlink(missing_ok=True)
        eps.remove(victim)
