"""Design files: designs are saved under `$CNNVIZ_DESIGNS` (default `./designs`), atomically, one layer per
line; `design:NAME.json` names a saved design wherever a registry name works. Paths outside the designs folder
and the current folder are refused; a file is re-read only when it changes. On a server with sign-in each user
saves into a folder of their own, `<designs>/<user id>/` (`user_folder`), named `design:<user id>/NAME.json`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..checkpoints import atomic_write_bytes
from .parsing import Design, parse
from .schema import MAX_JSON_CHARS
from .shapes import check

__all__ = ["PREFIX", "designs_root", "user_folder", "is_design_name", "resolve_path", "load_file", "stamp",
           "file_name", "save", "design_names"]

PREFIX = "design:"


def designs_root() -> Path:
    """Where designs are saved: $CNNVIZ_DESIGNS, else ./designs."""
    return Path(os.environ.get("CNNVIZ_DESIGNS") or "designs")


def user_folder(user_id: str | None) -> Path:
    """Where a user's designs are saved: <designs>/<user id> (the id is a safe folder name, checked here);
    the designs folder itself for the local user ("local" or None)."""
    if user_id in (None, "local"):
        return designs_root()
    if not re.fullmatch(r"u-[0-9a-f]{32}", str(user_id)):
        raise ValueError(f"{str(user_id)[:40]!r} is not a user id.")
    return designs_root() / str(user_id)


def is_design_name(name: Any) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def resolve_path(ref: str, *, inside_only: bool = False) -> Path:
    """The file of `design:REF` (or REF): a name or path in the designs folder, else the path as given
    (the command line's user names any file). `inside_only` (a name a browser sent, e.g. in an uploaded
    checkpoint): only files in the designs folder, symlinks resolved; the refusal says nothing about
    whether the path exists. One-line ValueError."""
    ref = ref[len(PREFIX):] if is_design_name(ref) else ref
    if not ref or not ref.endswith(".json") or "\x00" in ref:
        raise ValueError(f"A design is a .json file: 'design:NAME.json'; got {ref[:80]!r}.")
    root = designs_root()
    p = Path(ref) if inside_only else Path(ref).expanduser()
    real, home = (root / p).resolve(), root.resolve()
    if (real == home or home in real.parents) and real.is_file():
        return real
    if inside_only:
        raise ValueError(f"Design {ref[:80]!r} is not a file in the designs folder; only saved designs "
                         "(design:NAME.json) are opened here.")
    given = p.resolve()
    if given.is_file():
        return given
    raise ValueError(f"No design file {ref[:80]!r} in {root} or at that path.")


_FILE_CACHE: dict[Path, tuple[tuple[int, int], Design]] = {}


def stamp(name: str) -> str:
    """The hash of design `name`'s current file ("" for registry names and unreadable files): a cache key part
    that changes when the design is saved again with other layers."""
    if not is_design_name(name):
        return ""
    try:
        return load_file(name).hash
    except (ValueError, OSError):
        return ""


def load_file(ref: str | Path) -> Design:
    """Read and validate a design file (`design:NAME.json`, a name under the designs folder, or a path)."""
    p = resolve_path(str(ref))
    st = p.stat()
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _FILE_CACHE.get(p)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    if st.st_size > MAX_JSON_CHARS * 4:
        raise ValueError(f"{p.name} is too large for a design ({st.st_size:,} bytes).")
    try:
        design = parse(p.read_bytes())
    except ValueError as exc:
        raise ValueError(f"{p.name}: {exc}") from None
    _FILE_CACHE[p] = (stamp, design)
    return design


def file_name(name: str) -> str:
    """The file a design called `name` is saved as: 'My net 2' -> 'my-net-2.json'."""
    slug = re.sub(r"[^a-z0-9_]+", "-", name.lower()).strip("-")
    return (slug or "design")[:60] + ".json"


def save(spec: Any, num_classes: int = 10, folder: Path | None = None) -> Path:
    """Save a design that builds (checked with `num_classes`) under the designs folder, atomically; returns the path."""
    analysis = check(spec, num_classes)
    if not analysis.ok:
        raise ValueError(f"Not saved: {analysis.problem.message}")
    folder = Path(folder) if folder is not None else designs_root()
    path = folder / file_name(analysis.design.name)
    atomic_write_bytes(path, analysis.design.to_json().encode())
    return path


def design_names(folder: Path | None = None) -> list[str]:
    """Model names ('design:NAME.json', 'design:<user id>/NAME.json' in a user's folder) of the valid designs
    saved in `folder` (default: the designs folder itself), sorted."""
    root = designs_root()
    folder = Path(folder) if folder is not None else root
    if not folder.is_dir():
        return []
    try:
        rel = folder.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = None
    out = []
    for p in sorted(folder.glob("*.json")):
        try:
            load_file(str(p))
        except (ValueError, OSError):  # a broken or foreign file: not offered
            continue
        out.append(PREFIX + (p.name if rel in (None, ".") else f"{rel}/{p.name}"))
    return out
