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
- `pid`: "PID START" of the process that trains it, START being the process's start time (so a
  pid the system reused for another process is not taken for the run): tells "running" from
  "interrupted".
- `launcher.json`: written when a queued run's process is started (pid, start time, argv);
  `log.txt`: that process's stdout and stderr.
- `stop`: written by `request_stop`; the run (every rank of it) ends at its next logged step
  with a checkpoint, status "stopped".
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
LAUNCHER_FILE = "launcher.json"
LOG_FILE = "log.txt"
STOP_FILE = "stop"  # present: the run stops at its next logged step, with a checkpoint
_EPOCH_RE = re.compile(r"^epoch-(\d+)\.safetensors$")


def runs_root() -> Path:
    """Where runs live: $CNNVIZ_RUNS, else ./runs."""
    return Path(os.environ.get("CNNVIZ_RUNS") or "runs")


def new_run_id(model: str, dataset: str) -> str:
    """A sortable, unique, filesystem-safe id such as '20261128-174900-lenet5-shapes-a3f1'."""
    ds = re.sub(r"[^A-Za-z0-9]+", "-", dataset.split(":", 1)[-1].rstrip("/").split("/")[-1] or dataset)
    ds = ds.strip("-")[:24] or "data"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{re.sub(r'[^A-Za-z0-9_]+', '-', model)}-{ds}-{secrets.token_hex(2)}"


def request_stop(run_dir: Path) -> None:
    """Ask the run training in `run_dir` (any process, any number of ranks) to stop with a checkpoint."""
    from ..models.checkpoints import atomic_write_bytes

    atomic_write_bytes(Path(run_dir) / STOP_FILE, b"stop\n")


def epoch_checkpoint_name(epoch: int) -> str:
    """File name of the per-epoch weights of `epoch` (1-based)."""
    return f"epoch-{epoch:04d}.safetensors"


def parse_lines(lines: list[bytes]) -> list[dict[str, Any]]:
    """The JSON objects among `lines` (bytes, no newline); blank, torn or garbled lines are skipped."""
    out = []
    for line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All complete JSON-object lines of `path`; a torn or garbled line is skipped."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    return parse_lines(raw.split(b"\n"))


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
    reason: str = ""  # why an interrupted run is believed dead, or where a queued run waits

    @property
    def finished_epochs(self) -> int:
        """Number of epochs completed so far."""
        return max((int(e.get("epoch", 0)) for e in self.epochs), default=0)


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
    now = process_start_time(pid)
    if Path("/proc/self/stat").exists():  # Linux: a zombie, or another process under a reused pid, is not ours
        return now is not None and (start is None or now == start)
    return True


def pid_record() -> bytes:
    """What the `pid` file holds for this process: 'PID START'."""
    pid = os.getpid()
    return f"{pid} {process_start_time(pid) or ''}".strip().encode()


def read_pid(path: Path, name: str = PID_FILE) -> tuple[int, str | None] | None:
    """(pid, start time or None) from a run's pid file (or launcher.json), or None."""
    try:
        if name == LAUNCHER_FILE:
            d = json.loads((path / name).read_text())
            return int(d["pid"]), (str(d["start"]) if d.get("start") else None)
        parts = (path / name).read_text().split()
        return int(parts[0]), (parts[1] if len(parts) > 1 else None)
    except (OSError, ValueError, KeyError, IndexError, TypeError, json.JSONDecodeError):
        return None


def _live_in_this_process(path: Path) -> bool:
    jobs = sys.modules.get("cnnviz.train.jobs")
    if jobs is None:
        return False
    try:
        return any(j.is_alive() and Path(j.run_dir).resolve() == path.resolve() for j in jobs.list_jobs())
    except Exception:  # pragma: no cover - defensive
        return False


def _queued(path: Path) -> bool:
    from . import runqueue

    return runqueue.entry_for(path) is not None


def _status(path: Path, lines: list[dict]) -> tuple[str, dict, str]:
    """(status, the final line's data, why): from the last lines, the queue, the pid file, the launcher."""
    for obj in reversed(lines):
        kind = obj.get("kind")
        if kind == "done":
            return str(obj.get("status", "finished")), obj, ""
        if kind == "error":
            return "error", obj, ""
        if kind in ("start", "resume"):
            break
    for name in (PID_FILE, LAUNCHER_FILE):
        rec = read_pid(path, name)
        if rec is None:
            continue
        pid, start = rec
        if pid == os.getpid() and name == PID_FILE:
            alive = _live_in_this_process(path)
        else:
            alive = process_alive(pid, start)
        if alive:
            return ("running" if lines else "starting"), {}, ""
        if name == PID_FILE or not _queued(path):
            who = "training process" if name == PID_FILE else "process started for it"
            return "interrupted", {}, (f"its {who} (pid {pid}) is gone without writing a final line: killed "
                                       "(out of memory, kill -9), crashed, or the machine restarted")
    if _queued(path):
        return "queued", {}, ""
    return ("interrupted" if lines else "starting"), {}, ""


def status_of(path: Path, tail_bytes: int = 8192) -> tuple[str, str]:
    """(status, why) of a run from the END of its metrics.jsonl only: cheap enough to poll many runs."""
    path = Path(path)
    try:
        with open(path / METRICS_FILE, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - tail_bytes))
            raw = f.read()
    except OSError:
        raw, size = b"", 0
    lines = parse_lines(raw.split(b"\n")[1 if size > tail_bytes else 0:])  # (a tail starts mid-line)
    if raw and not lines:
        lines = [{}]  # something was written, just not a line this tail could read
    status, _, why = _status(path, lines)
    return status, why


def log_tail(path: Path, lines: int = 20, max_bytes: int = 16384) -> str:
    """The last `lines` lines of a run's log.txt (its process's stdout/stderr), or ''."""
    try:
        with open(Path(path) / LOG_FILE, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            raw = f.read()
    except OSError:
        return ""
    return "\n".join(raw.decode("utf-8", "replace").splitlines()[-lines:])


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
    status, final, reason = _status(path, lines)
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
                   created=created, final=final, start=start, reason=reason)


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


def delete_run(path: Path, root: Path | None = None) -> None:
    """Delete a run directory under `root` (default runs_root()).

    Refuses, with a one-line ValueError: a folder outside the root, a folder that is not a run, a
    run still training (in any process) or waiting in the queue (cancel it first)."""
    path = Path(path)
    if not path.is_dir():
        return
    root = Path(root) if root is not None else runs_root()
    if path.resolve().parent != root.resolve():
        raise ValueError(f"{path} is not a run directory under the runs folder {root}; not deleted.")
    if not ((path / CONFIG_FILE).is_file() or (path / METRICS_FILE).is_file()):
        raise ValueError(f"{path} does not look like a training run (no config.json / metrics.jsonl); not deleted.")
    status = load_run(path).status
    if status in ("running", "starting") or _live_in_this_process(path):
        raise ValueError("This run is still training: stop it before deleting it.")
    if status == "queued":
        raise ValueError("This run is waiting in the queue: cancel it first.")
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
