"""Per-user limits on what a browser can queue, so that no single user can starve the others.

    lim = Limits.for_user(user_id, root)     # the environment's limits, and a teacher's quota for that user
    lim.check(configs, visitor=user_id, root=root, owner=user_id)   # LimitError (one line) or None
    lim.local()                              # a server without sign-in: one user, nothing to share

The pages pass the visitor (the signed-in user's id; the browser session on a server without
sign-in) and the limits; the CLI has a shell already and passes none. Each limit is an environment
variable (0 = no limit); a teacher can set other values for one user (the Class page's teacher view,
stored in <runs>/.users/quotas.json).

| variable | default | what |
|---|---|---|
| CNNVIZ_MAX_QUEUED_PER_USER | 8 | runs one user may have queued or training at once |
| CNNVIZ_MAX_RUNNING_PER_USER | 1 | runs of one user training at once (dispatch skips the others; with sign-in) |
| CNNVIZ_MAX_EPOCHS | 200 | epochs of one run (a resume counts its total) |
| CNNVIZ_MAX_SWEEP_RUNS | 16 | runs in one sweep |
| CNNVIZ_MAX_TRAIN_IMAGES | 100000 | training images of one run (`limit_train`, else the dataset's size where known) |
| CNNVIZ_MAX_STORAGE_MB_PER_USER | 2000 | disk one user's runs and uploads may hold (with sign-in) |

`CNNVIZ_MAX_QUEUED_PER_VISITOR` (the earlier name) is read when the new one is not set.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from ..atomic import atomic_write_bytes
from ..users import USERS_DIR, is_user_id
from .layout import OWNER_FILE, QUEUE_DIR, read_json, root_of, run_dirs

DEFAULTS = {"max_queued": ("CNNVIZ_MAX_QUEUED_PER_USER", 8), "max_running": ("CNNVIZ_MAX_RUNNING_PER_USER", 1),
            "max_epochs": ("CNNVIZ_MAX_EPOCHS", 200), "max_sweep_runs": ("CNNVIZ_MAX_SWEEP_RUNS", 16),
            "max_train_images": ("CNNVIZ_MAX_TRAIN_IMAGES", 100_000),
            "max_storage_mb": ("CNNVIZ_MAX_STORAGE_MB_PER_USER", 2000)}
OLD_NAMES = {"CNNVIZ_MAX_QUEUED_PER_USER": "CNNVIZ_MAX_QUEUED_PER_VISITOR"}
QUOTAS_FILE = "quotas.json"
KNOWN_SIZES = {"shapes": 20_000, "digits": 4500, "cifar10": 50_000, "mnist": 60_000, "fashion-mnist": 60_000}


class LimitError(ValueError):
    """A request over a per-user limit; the message names the limit and its variable."""


@dataclass(frozen=True)
class Limits:
    max_queued: int = 8
    max_epochs: int = 200
    max_sweep_runs: int = 16
    max_train_images: int = 100_000
    max_running: int = 1
    max_storage_mb: int = 2000

    @classmethod
    def from_env(cls) -> "Limits":
        vals = {}
        for name, (var, default) in DEFAULTS.items():
            raw = os.environ.get(var, "").strip() or os.environ.get(OLD_NAMES.get(var, ""), "").strip()
            try:
                vals[name] = int(raw) if raw else default
            except ValueError:
                raise LimitError(f"{var} must be a whole number, not {raw!r}.") from None
            if vals[name] < 0:
                raise LimitError(f"{var} must be 0 (no limit) or more, not {vals[name]}.")
        return cls(**vals)

    @classmethod
    def for_user(cls, user_id: str | None, root: Path | None = None) -> "Limits":
        """The environment's limits with the teacher's quota for `user_id` (if any) over them."""
        lim = cls.from_env()
        q = quota_of(user_id, root) if user_id else {}
        return replace(lim, **q) if q else lim

    def local(self) -> "Limits":
        """A server without sign-in (one user): no running-at-once or storage limit."""
        return replace(self, max_running=0, max_storage_mb=0)

    def check(self, configs: list, visitor: str | None, root: Path | None = None, *, sweep: bool = False,
              resume: bool = False, owner: str | None = None) -> None:
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
                raise LimitError(f"You have {mine} run(s) queued or training; one user may have "
                                 f"{self.max_queued} at once here (CNNVIZ_MAX_QUEUED_PER_USER). Wait for one "
                                 "to end, or cancel one.")
        if self.max_storage_mb and owner is not None:
            used = storage_of(owner, root)
            if used > self.max_storage_mb * 2**20:
                raise LimitError(f"Your runs and uploads hold {used / 2**20:,.0f} MB; one user may keep "
                                 f"{self.max_storage_mb:,} MB here (CNNVIZ_MAX_STORAGE_MB_PER_USER). Delete a run "
                                 "or an upload first.")


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


def dir_bytes(path: Path) -> int:
    """Bytes of the files under `path` (symlinks not followed)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                continue
    return total


def storage_of(owner: str, root: Path | None = None) -> int:
    """Bytes held by `owner`'s runs under `root` and by their uploads folder."""
    from ..uploads import uploads_dir

    root = root_of(root)
    total = 0
    for d in run_dirs(root):
        rec = read_json(d / OWNER_FILE)
        if isinstance(rec, dict) and rec.get("owner") == owner:
            total += dir_bytes(d)
    if is_user_id(owner):
        up = uploads_dir(owner)
        if up.is_dir():
            total += dir_bytes(up)
    return total


# ---------------------------------------------------------------- quotas a teacher sets

QUOTA_FIELDS = ("max_queued", "max_running", "max_epochs", "max_storage_mb")


def _quotas_path(root: Path | None) -> Path:
    return root_of(root) / USERS_DIR / QUOTAS_FILE


def quotas(root: Path | None = None) -> dict[str, dict[str, int]]:
    """user id -> the limits a teacher set for that user (only the fields set)."""
    d = read_json(_quotas_path(root))
    if not isinstance(d, dict):
        return {}
    known = {f.name for f in fields(Limits)}
    out = {}
    for uid, q in d.items():
        if is_user_id(uid) and isinstance(q, dict):
            out[uid] = {k: int(v) for k, v in q.items() if k in known and isinstance(v, int) and v >= 0}
    return out


def quota_of(user_id: str, root: Path | None = None) -> dict[str, int]:
    return quotas(root).get(user_id, {})


def set_quota(user_id: str, values: dict[str, int | None], root: Path | None = None) -> None:
    """Set (a value) or clear (None) a user's quota fields, atomically. ValueError for a bad value."""
    if not is_user_id(user_id):
        raise ValueError(f"{user_id[:40]!r} is not a user id.")
    allq = quotas(root)
    q = dict(allq.get(user_id, {}))
    for k, v in values.items():
        if k not in QUOTA_FIELDS:
            raise ValueError(f"{k!r} is not a quota; known: {', '.join(QUOTA_FIELDS)}.")
        if v is None:
            q.pop(k, None)
        elif not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{k} must be a whole number, 0 or more (0 = no limit), not {v!r}.")
        else:
            q[k] = v
    if q:
        allq[user_id] = q
    else:
        allq.pop(user_id, None)
    p = _quotas_path(root)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(p, json.dumps(allq, indent=1).encode())
