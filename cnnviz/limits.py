"""What the server may spend on one visitor's request, and which folders a visitor may name.

Everything the app computes from what a browser sent (an uploaded checkpoint, a dataset zip, a
folder path, a saved design) is sized from shapes BEFORE anything is allocated, and refused above
a budget with one line giving the estimate and the budget:

- `server_budget_bytes()`: bytes one request may allocate (`CNNVIZ_SERVER_BUDGET_MB`, default 1024:
  a 2-core, 24 GB machine serving ~30 people); `check_budget(what, nbytes)` raises `BudgetError`;
  `fit_batch(per_sample, ...)` picks the largest batch that fits.
- `cache_bytes()`: the decoded-dataset disk cache's size (`CNNVIZ_CACHE_MB`, default 2048), least
  recently used files evicted first (`cnnviz.data.cache`).
- `data_roots()` and `confine(path)`: `folder:`/`zip:` paths typed in a browser must resolve
  (symlinks followed) under `CNNVIZ_DATA_ROOTS` (os.pathsep-separated; default the data folder
  `$CNNVIZ_DATA` and the uploads folder `$CNNVIZ_UPLOADS`, default `$CNNVIZ_DATA/uploads`). The
  refusal is the same whether the path exists or not and never shows a file's content.

These limits are for what a browser sends: the command line's user has a shell, and a path they
name explicitly is used as given. No streamlit, no torch here.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_BUDGET_MB = 1024
DEFAULT_CACHE_MB = 2048
MAX_CLASSES = 100_000        # outputs a checkpoint's metadata may ask for (ImageNet-21k has 21,841)
MAX_IN_CHANNELS = 16         # input channels (images have 1 or 3; designs allow up to 16)
MAX_INPUT_SIZE = 1024        # input side in pixels (the designer's limit too)
MAX_IMAGES = 200_000         # images in one folder or zip dataset (CNNVIZ_MAX_IMAGES)
MAX_DECODE_RATIO = 250.0     # full-size decoded pixel bytes / file bytes, over a whole dataset


class BudgetError(ValueError):
    """A request would need more memory than the server's budget; one line with both numbers."""


class PathRefused(ValueError):
    """A path a visitor sent is outside the folders this server reads from."""


def env_number(name: str, default, *, whole: bool = False, at_least: float | None = None,
               what: str | None = None):
    """The setting $`name` as a number (an int when `whole`), `default` when it is unset or blank; a
    value that is not a number, or is below `at_least`, is a ValueError naming the variable (the one
    parser behind every numeric CNNVIZ_* setting)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        raise ValueError(f"{name} must be {what or ('a whole number' if whole else 'a number')}, "
                         f"not {raw[:40]!r}.") from None
    if at_least is not None and value < at_least:
        raise ValueError(f"{name} must be at least {at_least:g}, not {raw[:40]!r}.")
    return value


def _env_number(name: str, default: float) -> float:
    value = env_number(name, default)
    if not value > 0:
        raise ValueError(f"{name} must be above 0, not {os.environ.get(name, '').strip()[:40]!r}.")
    return value


def server_budget_bytes() -> int:
    """Bytes one request may allocate: $CNNVIZ_SERVER_BUDGET_MB (default 1024) MiB."""
    return int(_env_number("CNNVIZ_SERVER_BUDGET_MB", DEFAULT_BUDGET_MB) * 2**20)


def cache_bytes() -> int:
    """Size of the decoded-dataset disk cache: $CNNVIZ_CACHE_MB (default 2048) MiB."""
    return int(_env_number("CNNVIZ_CACHE_MB", DEFAULT_CACHE_MB) * 2**20)


def max_images() -> int:
    """Images one folder or zip dataset may hold: $CNNVIZ_MAX_IMAGES (default 200,000)."""
    return int(_env_number("CNNVIZ_MAX_IMAGES", MAX_IMAGES))


def fmt_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (binary units, as the MB of the variables)."""
    n = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TB"  # pragma: no cover


def check_budget(what: str, nbytes: float, budget: int | None = None) -> None:
    """Raise BudgetError if `what` would need more than the budget (default: the server's)."""
    budget = server_budget_bytes() if budget is None else int(budget)
    if nbytes > budget:
        raise BudgetError(f"Refused: {what} would need about {fmt_bytes(nbytes)}, over this server's memory "
                          f"budget of {fmt_bytes(budget)} per request (CNNVIZ_SERVER_BUDGET_MB).")


def fit_batch(per_sample: float, fixed: float = 0, cap: int = 500, what: str = "one image",
              budget: int | None = None) -> int:
    """The largest batch (at most `cap`) whose `fixed + batch * per_sample` bytes fit the budget;
    BudgetError when not even one sample fits."""
    budget = server_budget_bytes() if budget is None else int(budget)
    check_budget(what, fixed + per_sample, budget)
    return int(max(1, min(cap, (budget - fixed) // max(per_sample, 1))))


def check_bounds(num_classes: int | None = None, in_channels: int | None = None,
                 input_size: int | None = None, source: str = "the checkpoint") -> None:
    """Refuse sizes (from a file's metadata or tensor shapes) above what any model here uses,
    before anything is built from them."""
    for value, limit, what in ((num_classes, MAX_CLASSES, "classes"), (in_channels, MAX_IN_CHANNELS,
                               "input channels"), (input_size, MAX_INPUT_SIZE, "pixels of input size")):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)[:40]
            raise BudgetError(f"Refused: {source} asks for {shown} {what}; at most {limit:,} are allowed.")


# ---------------------------------------------------------------- folders a visitor may name
def data_root() -> Path:
    """$CNNVIZ_DATA or ./data (as cnnviz.data.registry.data_root)."""
    return Path(os.environ.get("CNNVIZ_DATA") or "data")


def uploads_root() -> Path:
    """$CNNVIZ_UPLOADS, else <data folder>/uploads."""
    env = os.environ.get("CNNVIZ_UPLOADS")
    return Path(env) if env else data_root() / "uploads"


def data_roots() -> list[Path]:
    """The folders a visitor's folder:/zip: paths must lie under ($CNNVIZ_DATA_ROOTS, os.pathsep-
    separated; default the data folder and the uploads folder). A local single-user install may
    add `/` explicitly."""
    env = os.environ.get("CNNVIZ_DATA_ROOTS")
    if env is not None and env.strip():
        return [Path(p) for p in env.split(os.pathsep) if p.strip()]
    return [data_root(), uploads_root()]


def _inside(real: Path, root: Path) -> bool:
    return real == root or root in real.parents


def confine(path: str | Path, roots: list[Path] | None = None, what: str = "That path") -> Path:
    """`path` with symlinks resolved, if that lies under one of `roots` (default `data_roots()`);
    PathRefused otherwise. The message is the same whether or not the path exists."""
    roots = data_roots() if roots is None else list(roots)
    raw = str(path).strip()
    shown = ", ".join(str(r) for r in roots) or "none configured"
    refused = PathRefused(f"{what} is not inside the folders this server reads ({shown}); whoever runs the server "
                          "can add a folder to CNNVIZ_DATA_ROOTS.")
    if not raw or "\x00" in raw:
        raise refused
    try:
        real = Path(os.path.realpath(raw))
        for root in roots:
            if _inside(real, Path(os.path.realpath(root))):
                return real
    except (OSError, ValueError, RuntimeError):  # a loop of symlinks, a name too long
        raise refused from None
    raise refused
