"""Uploaded datasets kept for training: one folder per user, with a quota.

    path = save_upload(user_id, "pets.zip", data)   # <data>/uploads/<user id>/pets.zip, atomically
    list_uploads(user_id)                           # [(name, bytes)], newest first
    dataset_allowed(user, "zip:/...")               # may this user train on this dataset spec?

The folder is named by the user's id (a hash, never what the provider sent), the file by a slug of
the uploaded name. On a server with sign-in a student trains on the built-in datasets and on their
own uploads only; paths on the server (`folder:PATH`, any other `zip:PATH`) are for admins.
`CNNVIZ_UPLOAD_QUOTA_MB` (default 500) caps one user's uploads.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .atomic import atomic_write_bytes
from .limits import env_number
from .users import User, is_user_id

UPLOADS_DIR = "uploads"
DEFAULT_QUOTA_MB = 500


class UploadError(ValueError):
    """An upload refused (over the quota, not a zip); one line."""


def uploads_root() -> Path:
    return Path(os.environ.get("CNNVIZ_DATA") or "data") / UPLOADS_DIR


def uploads_dir(user_id: str) -> Path:
    """<data>/uploads/<user id>: ValueError for anything that is not a user id (never a path as given)."""
    if not is_user_id(user_id):
        raise ValueError(f"{str(user_id)[:40]!r} is not a user id.")
    return uploads_root() / user_id


def quota_bytes() -> int:
    try:
        mb = env_number("CNNVIZ_UPLOAD_QUOTA_MB", DEFAULT_QUOTA_MB, whole=True, what="a whole number of MB")
    except ValueError as exc:
        raise UploadError(str(exc)) from None
    return max(0, mb) * 2**20


def file_name(name: str) -> str:
    """'My Pets (v2).zip' -> 'my-pets-v2.zip'."""
    stem = re.sub(r"[^a-z0-9_]+", "-", Path(str(name)).stem.lower()).strip("-")
    return (stem or "upload")[:60] + ".zip"


def list_uploads(user_id: str) -> list[tuple[str, int]]:
    d = uploads_dir(user_id)
    if not d.is_dir():
        return []
    files = sorted((p for p in d.glob("*.zip") if p.is_file() and not p.is_symlink()),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    return [(p.name, p.stat().st_size) for p in files]


def used_bytes(user_id: str) -> int:
    return sum(n for _, n in list_uploads(user_id))


def save_upload(user_id: str, name: str, data: bytes) -> Path:
    """Keep an uploaded zip in the user's folder (replacing one of the same name), within the quota."""
    if not data.startswith(b"PK"):
        raise UploadError(f"{str(name)[:60]} is not a zip file.")
    d = uploads_dir(user_id)
    target = d / file_name(name)
    others = sum(n for f, n in list_uploads(user_id) if f != target.name)
    quota = quota_bytes()
    if quota and others + len(data) > quota:
        raise UploadError(f"Keeping {len(data) / 2**20:,.1f} MB more would put your uploads at "
                          f"{(others + len(data)) / 2**20:,.1f} MB, over the {quota / 2**20:,.0f} MB each user may "
                          "keep (CNNVIZ_UPLOAD_QUOTA_MB): delete an upload first.")
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, data)
    return target


def delete_upload(user_id: str, name: str) -> None:
    p = uploads_dir(user_id) / file_name(name)
    if p.name != name:
        raise UploadError(f"No upload {name[:60]!r}.")
    p.unlink(missing_ok=True)


def dataset_allowed(user: User | None, spec: str) -> bool:
    """Whether `user` may train on `spec`: anything for admins and the trusted caller (None); for a
    signed-in student a named dataset or a zip in their own uploads folder."""
    if user is None or user.is_admin:
        return True
    kind, _, rest = str(spec).partition(":")
    if kind not in ("folder", "zip"):
        return True
    if kind != "zip" or not rest:
        return False
    try:
        real = Path(rest).resolve()
        return real.parent == uploads_dir(user.id).resolve() and real.suffix == ".zip"
    except (OSError, ValueError):
        return False
