"""A run directory on disk: its files, where runs live, run ids, and the small helpers every part shares.

    <runs root>/<run id>/
        config.json           the TrainConfig (atomic)
        metrics.jsonl         append-only, one JSON object per line with a "kind"
                              (start, resume, step, epoch, checkpoint, note, done, error)
        summary.json          a small digest (status, epochs, last/best scores, sweep, owner), rewritten
                              atomically at each start, epoch end and end: what listing reads
        epoch-0003.safetensors, last.safetensors, last-state.pt   weights and optimizer/RNG state
        pid                   "PID START" of the training process (START = its start time, so a reused
                              pid is not taken for the run)
        launcher.json         written by the executor that started the run (pid, start, argv, executor)
        log.txt               the run process's stdout/stderr
        sweep.json            {"sweep_id", "params"} for a run of a sweep
        owner.json            {"owner", "visitor"}: who queued it (a user; a browser session)
        stop                  present: the run ends at its next logged step, with a checkpoint
        gate                  present (tests): the run holds before logging more steps than the number in it
    <runs root>/.queue/       queued runs, one JSON file each (see `cnnviz.runs.queue`)

Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
LAST_WEIGHTS = "last.safetensors"
LAST_STATE = "last-state.pt"
PID_FILE = "pid"
LAUNCHER_FILE = "launcher.json"
LOG_FILE = "log.txt"
SWEEP_FILE = "sweep.json"
OWNER_FILE = "owner.json"
STOP_FILE = "stop"
GATE_FILE = "gate"
QUEUE_DIR = ".queue"
EPOCH_RE = re.compile(r"^epoch-(\d+)\.safetensors$")


def runs_root() -> Path:
    """Where runs live: $CNNVIZ_RUNS, else ./runs."""
    return Path(os.environ.get("CNNVIZ_RUNS") or "runs")


def root_of(root: Path | None) -> Path:
    return Path(root) if root is not None else runs_root()


def is_run_dir(d: Path) -> bool:
    """Whether `d` is a run directory (a folder with config.json or metrics.jsonl, not a hidden one)."""
    return (d.is_dir() and not d.name.startswith(".")
            and ((d / CONFIG_FILE).is_file() or (d / METRICS_FILE).is_file()))


def run_dirs(root: Path | None = None) -> list[Path]:
    """The run directories under `root` (default runs_root()), in no particular order."""
    root = root_of(root)
    if not root.is_dir():
        return []
    return [d for d in root.iterdir() if is_run_dir(d)]


def inside_root(run_dir: Path, root: Path | None = None) -> bool:
    """Whether `run_dir` is a direct child of the runs root (symlinks resolved; the root itself is not)."""
    try:
        rd, rt = Path(run_dir).resolve(), root_of(root).resolve()
    except OSError:
        return False
    return rd.parent == rt and rd != rt and not rd.name.startswith(".")


def _slug(text: str, keep: str = r"[^A-Za-z0-9]+") -> str:
    return re.sub(keep, "-", text).strip("-")


def new_run_dir(model: str, dataset: str, root: Path | None = None) -> Path:
    """Create and return a new, unique run directory: '<date-time>-<model>-<dataset>-<64-bit hex>'.

    The folder is made with mkdir (which fails when it exists), retried with a new random part, so
    two processes naming runs in the same second never share one."""
    root = root_of(root)
    root.mkdir(parents=True, exist_ok=True)
    ds = _slug(dataset.split(":", 1)[-1].rstrip("/").split("/")[-1] or dataset)[:24] or "data"
    for _ in range(16):
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(model, r'[^A-Za-z0-9_]+')[:32]}-{ds}-{secrets.token_hex(8)}"
        try:
            (root / name).mkdir()
            return root / name
        except FileExistsError:
            continue
    raise OSError(f"Could not create a new run directory under {root}.")


def epoch_checkpoint_name(epoch: int) -> str:
    """File name of the per-epoch weights of `epoch` (1-based)."""
    return f"epoch-{epoch:04d}.safetensors"


def checkpoints(run_dir: Path) -> dict[int, Path]:
    """The run's per-epoch weight files, by epoch, in order."""
    out = {}
    for p in Path(run_dir).glob("epoch-*.safetensors"):
        m = EPOCH_RE.match(p.name)
        if m:
            out[int(m.group(1))] = p
    return dict(sorted(out.items()))


def thin_checkpoints(run_dir: Path, cap: int) -> None:
    """Keep at most `cap` epoch checkpoints: first and last always, drop the most crowded in between."""
    ckpts = checkpoints(run_dir)
    eps = sorted(ckpts)
    while len(eps) > max(2, cap):
        _, victim = min((eps[i + 1] - eps[i - 1], eps[i]) for i in range(1, len(eps) - 1))
        ckpts[victim].unlink(missing_ok=True)
        eps.remove(victim)


PRUNE = "prune"  # the stop file's content when a search's pruner asks: the run ends as "pruned"


def request_stop(run_dir: Path, reason: str = "stop", *, by=None) -> None:
    """Ask the run training in `run_dir` (any process, any number of ranks) to stop with a checkpoint.
    `reason` PRUNE (a search's pruner) makes it end with status "pruned" instead of "stopped". `by`, the
    acting user, must own the run or be an admin (`cnnviz.runs.access.NotAllowed`); None is the trusted
    caller (the CLI, the Python API, a search's driver)."""
    if by is not None:
        from .access import require

        require(by, Path(run_dir), "stop")
    atomic_write_bytes(Path(run_dir) / STOP_FILE, f"{reason}\n".encode())


def stop_reason(run_dir: Path) -> str:
    """What the run's stop file asks ("stop" or PRUNE); "stop" when it is unreadable."""
    try:
        return (Path(run_dir) / STOP_FILE).read_text().strip() or "stop"
    except OSError:
        return "stop"


def read_json(path: Path) -> Any:
    """The JSON in `path`, or None when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def has_ended(run_dir: Path) -> bool:
    """Whether the run wrote its final line (summary.json's state is no longer "open")."""
    s = read_json(Path(run_dir) / SUMMARY_FILE)
    return isinstance(s, dict) and s.get("state") not in (None, "open")


def read_config(run_dir: Path) -> dict:
    cfg = read_json(Path(run_dir) / CONFIG_FILE)
    return cfg if isinstance(cfg, dict) else {}


def sweep_of(run_dir: Path) -> dict:
    """The run's sweep record ({"sweep_id", "params"}), or {}."""
    d = read_json(Path(run_dir) / SWEEP_FILE)
    return d if isinstance(d, dict) else {}


def write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=indent).encode())


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


def tail_bytes(path: Path, max_bytes: int) -> tuple[bytes, bool]:
    """The last `max_bytes` of a file and whether that is less than all of it (b'' when missing)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read(), size > max_bytes
    except OSError:
        return b"", False


def log_tail(run_dir: Path, lines: int = 20, max_bytes: int = 16384) -> str:
    """The last `lines` lines of a run's log.txt (its process's stdout/stderr), or ''."""
    raw, _ = tail_bytes(Path(run_dir) / LOG_FILE, max_bytes)
    return "\n".join(raw.decode("utf-8", "replace").splitlines()[-lines:])


def queue_file_for(run_dir: Path) -> Path | None:
    """The queue file that waits for `run_dir` (in its root's .queue folder), or None."""
    q = Path(run_dir).parent / QUEUE_DIR
    if not q.is_dir():
        return None
    return next(iter(q.glob(f"*-{Path(run_dir).name}.json")), None)
