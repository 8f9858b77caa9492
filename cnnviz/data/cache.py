"""Disk cache of decoded datasets: safetensors files keyed by a hash of the source's identity.

Decoding 60,000 JPEGs takes ~10 s; reading the decoded uint8 tensors back takes a fraction of a
second. Files are written atomically (temp file + rename) and read with safetensors (no pickle).
A corrupt or unreadable cache file counts as a miss and is removed. The folder is bounded
(`cnnviz.limits.cache_bytes()`, $CNNVIZ_CACHE_MB): a hit marks its file used (mtime), and after each
write the least recently used files go until the rest fit; a set larger than the whole cache is not kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .. import limits

CACHE_FORMAT = "cnnviz-data-1"


def cache_dir() -> Path:
    """$CNNVIZ_CACHE, else <$CNNVIZ_DATA or ./data>/.cache."""
    env = os.environ.get("CNNVIZ_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("CNNVIZ_DATA") or "data") / ".cache"


def digest(parts: object) -> str:
    """A short stable hash of JSON-able key parts."""
    blob = json.dumps([CACHE_FORMAT, parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def cache_path(kind: str, key: str) -> Path:
    """Where the cache file for a dataset kind and key lives."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in kind)
    return cache_dir() / f"{safe}-{key}.safetensors"


def save(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> bool:
    """Write tensors + JSON meta atomically. Returns False (and leaves nothing) if the disk refuses."""
    path = Path(path)
    if sum(t.numel() * t.element_size() for t in tensors.values()) > limits.cache_bytes():
        return False  # larger than the whole cache: decoded again next time
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError:
        return False
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp,
                  metadata={"format": CACHE_FORMAT, "meta": json.dumps(meta)})
        os.replace(tmp, path)
    except OSError:
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)
    evict(keep=path)
    return True


def evict(keep: Path | None = None, limit: int | None = None) -> list[Path]:
    """Remove the least recently used cache files until the folder fits `limit` bytes (default
    `limits.cache_bytes()`); `keep` stays. Returns what was removed."""
    limit = limits.cache_bytes() if limit is None else int(limit)
    files = []
    for p in cache_dir().glob("*.safetensors"):
        try:
            st = p.stat()
        except OSError:  # removed meanwhile by another process
            continue
        files.append((st.st_mtime_ns, st.st_size, p))
    total = sum(size for _, size, _ in files)
    gone = []
    for _, size, p in sorted(files, key=lambda f: f[0]):
        if total <= limit:
            break
        if keep is not None and p == Path(keep):
            continue
        p.unlink(missing_ok=True)
        total -= size
        gone.append(p)
    return gone


def load(path: Path, names: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """Read the named tensors and the meta, or None on a miss (absent, stale format, corrupt)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
            if md.get("format") != CACHE_FORMAT:
                raise ValueError("stale cache format")
            meta = json.loads(md.get("meta", "{}"))
            tensors = {n: f.get_tensor(n) for n in names}
        _touch(path)
        return tensors, meta
    except Exception:  # corrupt/truncated file: drop it and decode again
        path.unlink(missing_ok=True)
        return None


def _touch(path: Path) -> None:
    """Mark a cache file as just used (its mtime), for the least-recently-used eviction."""
    try:
        os.utime(path)
    except OSError:  # read-only cache folder: eviction order falls back to write time
        return
