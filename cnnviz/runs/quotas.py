"""Per-visitor limits on what a browser can queue, so that no single visitor can starve the others.

    lim = Limits.from_env()
    lim.check(configs, visitor="session-or-user id", root=runs_root())   # LimitError (one line) or None

The pages pass the visitor (the browser session today; the signed-in user with sign-in) and
`Limits.from_env()`; the CLI's user has a shell already and passes none. Each limit is an
environment variable (0 = no limit):

| variable | default | what |
|---|---|---|
| CNNVIZ_MAX_QUEUED_PER_VISITOR | 8 | runs one visitor may have queued or training at once |
| CNNVIZ_MAX_EPOCHS | 200 | epochs of one run (a resume counts its total) |
| CNNVIZ_MAX_SWEEP_RUNS | 16 | runs in one sweep |
| CNNVIZ_MAX_TRAIN_IMAGES | 100000 | training images of one run (`limit_train`, else the dataset's size where known) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .layout import OWNER_FILE, QUEUE_DIR, read_json, root_of, run_dirs

DEFAULTS = {"max_queued": ("CNNVIZ_MAX_QUEUED_PER_VISITOR", 8), "max_epochs": ("CNNVIZ_MAX_EPOCHS", 200),
            "max_sweep_runs": ("CNNVIZ_MAX_SWEEP_RUNS", 16), "max_train_images": ("CNNVIZ_MAX_TRAIN_IMAGES", 100_000)}
KNOWN_SIZES = {"shapes": 5000, "digits": 4500, "cifar10": 50_000, "mnist": 60_000, "fashion-mnist": 60_000}


class LimitError(ValueError):
    """A request over a per-visitor limit; the message names the limit and its variable."""


@dataclass(frozen=True)
class Limits:
    max_queued: int = 8
    max_epochs: int = 200
    max_sweep_runs: int = 16
    max_train_images: int = 100_000

    @classmethod
    def from_env(cls) -> "Limits":
        vals = {}
        for name, (var, default) in DEFAULTS.items():
            raw = os.environ.get(var, "").strip()
            try:
                vals[name] = int(raw) if raw else default
            except ValueError:
                raise LimitError(f"{var} must be a whole number, not {raw!r}.") from None
        return cls(**vals)

    def check(self, configs: list, visitor: str | None, root: Path | None = None, *, sweep: bool = False,
              resume: bool = False) -> None:
        """Refuse (LimitError, one line) a request of `configs` by `visitor` that would pass a limit."""
        if sweep and self.max_sweep_runs and len(configs) > self.max_sweep_runs:
            raise LimitError(f"The sweep makes {len(configs)} runs; one sweep may hold {self.max_sweep_runs} "
                             "here (CNNVIZ_MAX_SWEEP_RUNS).")
        for cfg in configs:
            if self.max_epochs and cfg.epochs > self.max_epochs:
                raise LimitError(f"{cfg.epochs} epochs is over this server's limit of {self.max_epochs} per run "
                                 "(CNNVIZ_MAX_EPOCHS).")
            images = cfg.limit_train or KNOWN_SIZES.get(cfg.dataset.split(":", 1)[0])
            if self.max_train_images and images and images > self.max_train_images:
                raise LimitError(f"{images:,} training images is over this server's limit of "
                                 f"{self.max_train_images:,} per run (CNNVIZ_MAX_TRAIN_IMAGES): set 'Limit train'.")
        if self.max_queued and visitor is not None:
            mine = live_runs_of(visitor, root)
            if mine + len(configs) - (1 if resume else 0) > self.max_queued and len(configs) > 0:
                raise LimitError(f"You have {mine} run(s) queued or training; one visitor may have "
                                 f"{self.max_queued} at once here (CNNVIZ_MAX_QUEUED_PER_VISITOR). Wait for one "
                                 "to end, or cancel one.")


def live_runs_of(visitor: str, root: Path | None = None) -> int:
    """Runs of `visitor` queued or training under `root`: its queue entries and its training runs."""
    from .store import summary

    root = root_of(root)
    count = 0
    q = root / QUEUE_DIR
    if q.is_dir():
        for p in q.glob("*.json"):
            d = read_json(p)
            if isinstance(d, dict) and d.get("visitor") == visitor:
                count += 1
    for d in run_dirs(root):
        rec = read_json(d / OWNER_FILE)
        if isinstance(rec, dict) and rec.get("visitor") == visitor and summary(d).status.training:
            count += 1
    return count
