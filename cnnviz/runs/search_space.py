"""What a search may vary, and how: ranges and choices of `TrainConfig` fields, checked before anything runs.

    dims, fixed = parse_space({"lr": "1e-4:1e-1:log", "batch_size": "64,128,256", "epochs": "3"})
    dims["lr"]        -> Dimension(name="lr", kind="float", low=1e-4, high=0.1, log=True)
    fixed             -> {"epochs": 3}      (a single value is a setting, not a dimension)

Text forms: `low:high` or `low:high:log` for a number field (a float, or a whole-number range for an int
field), `a,b,c` for choices of any field. What is searchable and each field's type and bounds come from
`TrainConfig.settings()` (fields with sweep=False, such as the device, are not). Nothing here imports
Optuna; `Dimension.distribution()` makes Optuna's object when asked.
"""

from __future__ import annotations

import math
from dataclasses import Field, asdict, dataclass
from typing import Any

from ..train.config import TrainConfig
from .sweeps import parse_values

KINDS = ("float", "int", "choice")


@dataclass(frozen=True)
class Dimension:
    """One searched setting: a float or int range (`low`..`high`, optionally log-scaled) or `choices`."""

    name: str
    kind: str                       # "float", "int" or "choice"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()

    def to_json(self) -> dict:
        d = asdict(self)
        d["choices"] = list(self.choices)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Dimension":
        if not isinstance(d, dict) or d.get("kind") not in KINDS or not isinstance(d.get("name"), str):
            raise ValueError(f"not a search dimension: {d!r}")
        return cls(name=d["name"], kind=d["kind"], low=d.get("low"), high=d.get("high"), log=bool(d.get("log")),
                   choices=tuple(d.get("choices") or ()))

    def describe(self) -> str:
        """As the CLI takes it: `1e-4:0.1:log`, `64,128`."""
        if self.kind == "choice":
            return ",".join(str(c) for c in self.choices)
        lo, hi = (int(self.low), int(self.high)) if self.kind == "int" else (self.low, self.high)
        return f"{lo:g}:{hi:g}" + (":log" if self.log else "")

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and not float(value).is_integer():
            return False
        return self.low <= value <= self.high

    def distribution(self):
        """Optuna's distribution for this dimension."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "float":
            return FloatDistribution(float(self.low), float(self.high), log=self.log)
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return CategoricalDistribution(list(self.choices))


def searchable() -> dict[str, Field]:
    """TrainConfig fields a search may vary, by name (every field with sweep=True)."""
    return {f.name: f for f in TrainConfig.settings() if f.metadata.get("sweep", True)}


def _kind(f: Field) -> str:
    t = str(f.type)
    return "int" if t.startswith("int") else "float" if t == "float" else "bool" if t == "bool" else "str"


def _number(name: str, text: str, whole: bool) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a number.") from None
    if not math.isfinite(v):
        raise ValueError(f"{name}: {text!r} is not a finite number.")
    if whole and not v.is_integer():
        raise ValueError(f"{name}: {text!r} is not a whole number ({name} is a whole-number setting).")
    return v


def parse_range(name: str, text: str) -> Dimension:
    """`low:high` or `low:high:log` for a number field, checked against the field's type and bounds."""
    fields = searchable()
    f = fields[name]
    kind = _kind(f)
    parts = [p.strip() for p in text.split(":")]
    if kind not in ("int", "float"):
        raise ValueError(f"{name}: a range (low:high) needs a number setting; give choices as a,b,c.")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2].lower() not in ("log", "linear", "")):
        raise ValueError(f"{name}: a range is low:high or low:high:log, not {text!r}.")
    log = len(parts) == 3 and parts[2].lower() == "log"
    low, high = (_number(name, p, kind == "int") for p in parts[:2])
    if low > high:
        raise ValueError(f"{name}: the range {text} has its low end above its high end.")
    if low == high:
        raise ValueError(f"{name}: the range {text} holds one value; give it as --{name.replace('_', '-')} "
                         f"{parts[0]} (a setting, not searched).")
    if log and low <= 0:
        raise ValueError(f"{name}: a log range needs a low end above 0, not {parts[0]}.")
    lo_b, hi_b = f.metadata.get("low"), f.metadata.get("high")
    if lo_b is not None and low < lo_b:
        raise ValueError(f"{name}: {parts[0]} is below the lowest {name}, {lo_b:g}.")
    if hi_b is not None and high > hi_b:
        raise ValueError(f"{name}: {parts[1]} is above the highest {name}, {hi_b:g}.")
    if kind == "int":
        return Dimension(name, "int", int(low), int(high), log)
    return Dimension(name, "float", low, high, log)


def parse_choices(name: str, raw: Any) -> list:
    """Typed, checked values of `name` (a list, or comma-separated text): each one fits the field."""
    values = parse_values(name, raw)
    f = searchable()[name]
    from ..train.config import _field_problem

    for v in values:
        problem = _field_problem(f, v)
        if problem:
            raise ValueError(problem)
    return values


def parse_one(name: str, raw: Any) -> Dimension | Any:
    """A Dimension for a range or several choices; the typed value itself for a single value."""
    fields = searchable()
    if name not in fields:
        known = {f.name for f in TrainConfig.settings()}
        if name in known:
            values = parse_values(name, raw) if not isinstance(raw, (dict, Dimension)) else []
            if len(values) == 1 and not (isinstance(raw, str) and ":" in raw and name != "dataset"):
                return values[0]  # a setting of every trial
            raise ValueError(f"{name} can't be searched (it is set once for the whole search).")
        raise ValueError(f"Unknown setting {name!r}; searchable: {', '.join(fields)}.")
    if isinstance(raw, Dimension):
        return raw
    if isinstance(raw, dict):
        return Dimension.from_json(raw)
    if isinstance(raw, str) and ":" in raw and _kind(fields[name]) in ("int", "float"):
        return parse_range(name, raw)
    values = parse_choices(name, raw)
    if len(values) == 1:
        return values[0]
    return Dimension(name, "choice", choices=tuple(values))


def parse_space(given: dict[str, Any]) -> tuple[dict[str, Dimension], dict[str, Any]]:
    """(dimensions, fixed settings) from {field: text, list or Dimension}: ValueError (one line) on bad input."""
    dims: dict[str, Dimension] = {}
    fixed: dict[str, Any] = {}
    for name, raw in given.items():
        got = parse_one(name, raw)
        if isinstance(got, Dimension):
            dims[name] = got
        else:
            fixed[name] = got
    return dims, fixed


def corners(dims: dict[str, Dimension]) -> list[dict[str, Any]]:
    """A few settings that together touch every end of every dimension (each range's low and high, every
    choice): checking a config with each finds a value that can't train before any run is queued."""
    out: list[dict[str, Any]] = []
    for d in dims.values():
        ends = list(d.choices) if d.kind == "choice" else [d.low, d.high]
        if d.kind == "int":
            ends = [int(v) for v in ends]
        out += [{d.name: v} for v in ends]
    return out
