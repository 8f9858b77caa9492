"""Writing a run: metrics.jsonl appended one line per write() call, summary.json kept beside it,
and the optimizer/RNG state. Used by the training engine (rank 0 alone writes)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from pathlib import Path

from ..atomic import atomic_write_bytes
from .layout import LAST_STATE, METRICS_FILE, json_safe
from .reader import MetricsReader
from .store import summary_of, write_summary

SUMMARY_KINDS = ("start", "resume", "epoch", "done", "error")


class RunWriter:
    """metrics.jsonl: one os.write() per line (O_APPEND), fsync on epoch/status lines; after each
    start, resume, epoch and final line, summary.json is rewritten atomically from what was written."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        path = self.run_dir / METRICS_FILE
        if path.exists():  # a kill -9 may have torn the last line: cut it before appending
            with open(path, "r+b") as f:
                raw = f.read()
                if raw and not raw.endswith(b"\n"):
                    f.truncate(raw.rfind(b"\n") + 1)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._reader = MetricsReader(path)

    def write(self, kind: str, data: dict, sync: bool = True) -> None:
        line = json.dumps({"kind": kind, "t": round(time.time(), 3), **json_safe(data)}) + "\n"
        os.write(self.fd, line.encode())
        if sync:
            os.fsync(self.fd)
        if kind in SUMMARY_KINDS:
            self._reader.read()
            write_summary(self.run_dir, summary_of(self._reader, self.run_dir))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def write_state(run_dir: Path, payload: dict) -> None:
    """Atomically write last-state.pt (optimizer/schedule/RNG: plain tensors, dicts, lists, numbers only)."""
    import torch

    blob = io.BytesIO()
    torch.save(payload, blob)
    atomic_write_bytes(Path(run_dir) / LAST_STATE, blob.getvalue())
