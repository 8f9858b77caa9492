"""The per-request memory budget of the inspection tools (projector, attribution, attacks).

`CNNVIZ_SERVER_BUDGET_MB` (default 1024) is what one request may allocate. Each tool estimates
its largest allocation from shapes before making it and refuses above the budget with one line
(`BudgetError`, a ValueError). The names match `cnnviz.limits` (hardening branch): at the merge
this module can become `from ..limits import BudgetError, check_budget, fit_batch`.
No streamlit, no torch here.
"""

from __future__ import annotations

import os

DEFAULT_BUDGET_MB = 1024


class BudgetError(ValueError):
    """A request would need more memory than the server's budget; one line with both numbers."""


def server_budget_bytes() -> int:
    """Bytes one request may allocate: $CNNVIZ_SERVER_BUDGET_MB (default 1024) MiB."""
    raw = os.environ.get("CNNVIZ_SERVER_BUDGET_MB", "").strip()
    try:
        mb = float(raw) if raw else DEFAULT_BUDGET_MB
    except ValueError:
        raise ValueError(f"CNNVIZ_SERVER_BUDGET_MB must be a number, not {raw[:40]!r}.") from None
    if not mb > 0:
        raise ValueError(f"CNNVIZ_SERVER_BUDGET_MB must be above 0, not {raw[:40]!r}.")
    return int(mb * 2**20)


def fmt_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (binary units)."""
    n = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(n) < 1024:
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TB"


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
