"""Who may do what to a run: its owner and the admins manage it; everyone else is refused.

    require(user, run_dir, "stop")   # NotAllowed (a PermissionError, one line) unless user may
    may_manage(user, run_dir)        # the same, as a bool (what the pages use to draw buttons)
    mine(user, snapshots)            # the runs a user sees on the Train and Runs pages

The owner is the user id in the run's owner.json (written when it was queued). `user=None` is the
trusted caller: the CLI and the Python API (they have the shell anyway). A run with no owner (queued
by the CLI without --owner, or written before owners existed) is managed by admins only.
The pages check here *and* draw no button, so a forged request is refused by the backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..users import User
from .layout import OWNER_FILE, read_json


class NotAllowed(PermissionError):
    """A user acting on a run that is not theirs; the message is one line."""


def owner_of(run_dir: Path) -> str | None:
    """The user id that owns the run (its owner.json), or None."""
    d = read_json(Path(run_dir) / OWNER_FILE)
    return str(d["owner"]) if isinstance(d, dict) and d.get("owner") else None


def may_manage(user: User | None, run_dir: Path, owner: str | None = None) -> bool:
    """Whether `user` may stop, cancel, resume, delete, download or export the run."""
    if user is None or user.is_admin:
        return True
    owner = owner if owner is not None else owner_of(run_dir)
    return owner is not None and owner == user.id


def require(user: User | None, run_dir: Path, action: str) -> None:
    """Refuse (NotAllowed) `action` on the run unless `user` owns it or is an admin."""
    if not may_manage(user, run_dir):
        raise NotAllowed(f"{user.display} may not {action} run {Path(run_dir).name}: it belongs to someone else "
                         "(only its owner and the teachers may).")


def require_admin(user: User | None, action: str) -> None:
    if user is not None and not user.is_admin:
        raise NotAllowed(f"{user.display} may not {action}: only a teacher (CNNVIZ_ADMINS) may.")


def mine(user: User | None, snapshots: Iterable) -> list:
    """The runs `user` sees as theirs: all of them for an admin (and the trusted caller), else those it owns."""
    if user is None or user.is_admin:
        return list(snapshots)
    return [s for s in snapshots if s.owner == user.id]
