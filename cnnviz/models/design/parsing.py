"""Designs as documents: `Design` (a validated design, its JSON and its hash) and `parse`, which checks a
JSON design against the layer table (unknown types or keys, wrong types, ranges, at most `MAX_LAYERS`
layers) and says what is wrong in one line. JSON is read with `json.loads`, never run.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, replace
from typing import Any

from .layers import LAYERS
from .schema import CLASSES, MAX_INPUT_CHANNELS, MAX_INPUT_SIZE, MAX_JSON_CHARS, MAX_LAYERS, Arg, is_int

__all__ = ["Design", "parse"]


# ---- the document ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Design:
    """A validated design: every layer holds every argument of its type (defaults filled in)."""

    name: str
    input: tuple[int, int, int]
    layers: tuple[dict, ...]

    def to_dict(self, minimal: bool = True) -> dict:
        """The JSON document; `minimal` leaves out arguments equal to their default."""
        layers = []
        for layer in self.layers:
            t = LAYERS[layer["type"]]
            d = {"type": layer["type"]}
            for a in t.args:
                v = layer[a.name]
                if not minimal or a.required or v != a.default:
                    d[a.name] = v
            layers.append(d)
        return {"name": self.name, "input": list(self.input), "layers": layers}

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text, one layer per line (readable diffs)."""
        d = self.to_dict()
        if indent is None:
            return json.dumps(d)
        rows = ",\n".join(f"    {json.dumps(layer)}" for layer in d["layers"])
        body = f"[\n{rows}\n  ]" if rows else "[]"
        return f'{{\n  "name": {json.dumps(d["name"])},\n  "input": {json.dumps(d["input"])},\n  "layers": {body}\n}}\n'

    @property
    def hash(self) -> str:
        """12 hex digits of the layers and input (not the name): same hash, same model."""
        full = self.to_dict(minimal=False)
        blob = json.dumps({"input": full["input"], "layers": full["layers"]}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def replace_layer(self, i: int, **changes: Any) -> "Design":
        layers = list(self.layers)
        layers[i] = {**layers[i], **changes}
        return replace(self, layers=tuple(layers))

    def insert(self, i: int, layer: dict) -> "Design":
        layers = list(self.layers)
        layers.insert(i, layer)
        return replace(self, layers=tuple(layers))

    def remove(self, i: int) -> "Design":
        return replace(self, layers=tuple(layer for j, layer in enumerate(self.layers) if j != i))


def _num(v: float) -> str:
    return f"{v:,}" if is_int(v) else f"{v:g}"


def _check_arg(where: str, a: Arg, v: Any) -> Any:
    """The validated value of argument `a`, or ValueError(one line)."""
    rng = f"between {_num(a.lo)} and {_num(a.hi)}" if a.lo is not None else ""
    if a.kind in ("pin", "optint") and v is None:
        return None
    if a.kind == "width" and v == CLASSES:
        return v
    if a.kind in ("int", "pin", "optint", "width"):
        if not is_int(v):
            extra = ' or "classes"' if a.kind == "width" else (" or null (inferred)" if a.kind == "pin" else "")
            raise ValueError(f"{where}: {a.name} must be a whole number{extra}; got {json.dumps(v)[:40]}.")
        if not a.lo <= v <= a.hi:
            raise ValueError(f"{where}: {a.name} must be {rng}; got {v:,}.")
        return v
    if a.kind == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{where}: {a.name} must be a number; got {json.dumps(v)[:40]}.")
        if not a.lo <= v <= a.hi:
            raise ValueError(f"{where}: {a.name} must be {rng}; got {v:g}.")
        return float(v)
    if a.kind == "bool":
        if not isinstance(v, bool):
            raise ValueError(f"{where}: {a.name} must be true or false; got {json.dumps(v)[:40]}.")
        return v
    if a.kind == "choice":
        if v not in a.choices:
            raise ValueError(f"{where}: {a.name} must be one of {', '.join(map(repr, a.choices))}; "
                             f"got {json.dumps(v)[:40]}.")
        return v
    raise AssertionError(a.kind)  # pragma: no cover - table bug


def _parse_layer(i: int, raw: Any) -> dict:
    where = f"layer {i + 1}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object like {{\"type\": \"conv2d\", ...}}; got {json.dumps(raw)[:40]}.")
    type_ = raw.get("type")
    if not isinstance(type_, str) or type_ not in LAYERS:
        close = difflib.get_close_matches(str(type_).lower(), list(LAYERS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{where}: unknown layer type {json.dumps(type_)[:40]}{hint}; known: {', '.join(LAYERS)}.")
    t = LAYERS[type_]
    where = f"layer {i + 1} ({type_})"
    known = [a.name for a in t.args]
    unknown = [k for k in raw if k != "type" and k not in known]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{where}: unknown key {str(unknown[0])[:40]!r}{hint}; allowed: {', '.join(known) or 'none'}.")
    out = {"type": type_}
    for a in t.args:
        if a.name not in raw:
            if a.required:
                raise ValueError(f"{where}: {a.name} is required.")
            out[a.name] = a.default
        else:
            out[a.name] = _check_arg(where, a, raw[a.name])
    return out


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+-]{0,63}$")


def parse(spec: Any) -> Design:
    """A `Design` from JSON text, a parsed dict or a Design; ValueError with a one-line reason otherwise."""
    if isinstance(spec, Design):
        return spec
    if isinstance(spec, (bytes, bytearray)):
        try:
            spec = spec.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("A design must be UTF-8 JSON text.") from None
    if isinstance(spec, str):
        if len(spec) > MAX_JSON_CHARS:
            raise ValueError(f"The design JSON is too long ({len(spec):,} characters; at most {MAX_JSON_CHARS:,}).")
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise ValueError(f"Not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
        except RecursionError:
            raise ValueError("Not valid JSON: nested too deeply.") from None
    if not isinstance(spec, dict):
        raise ValueError('A design must be a JSON object {"name", "input", "layers"}; '
                         f"got {type(spec).__name__}.")
    extra = sorted(str(k) for k in spec if k not in ("name", "input", "layers"))
    if extra:
        raise ValueError(f"Unknown top-level key {extra[0][:40]!r}; a design has only 'name', 'input' and 'layers'.")
    name = spec.get("name", "design")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError("name must be 1-64 letters, digits, spaces or _ . + - (starting with a letter or digit); "
                         f"got {json.dumps(name)[:40]}.")
    inp = spec.get("input", [3, 32, 32])
    if not (isinstance(inp, list) and len(inp) == 3 and all(is_int(v) for v in inp)):
        raise ValueError(f"input must be [channels, height, width], three whole numbers; got {json.dumps(inp)[:40]}.")
    c, h, w = inp
    if not 1 <= c <= MAX_INPUT_CHANNELS:
        raise ValueError(f"input channels must be between 1 and {MAX_INPUT_CHANNELS}; got {c:,}.")
    if not (1 <= h <= MAX_INPUT_SIZE and 1 <= w <= MAX_INPUT_SIZE):
        raise ValueError(f"input height and width must be between 1 and {MAX_INPUT_SIZE:,}; got {h:,} x {w:,}.")
    if h != w:
        raise ValueError(f"input must be square (height = width), as cnnviz feeds square images; got {h} x {w}.")
    layers = spec.get("layers")
    if not isinstance(layers, list):
        raise ValueError("A design needs \"layers\": a list of {\"type\": ..., ...} objects.")
    if len(layers) > MAX_LAYERS:
        raise ValueError(f"Too many layers ({len(layers):,}); a design may have at most {MAX_LAYERS}.")
    return Design(name, (c, h, w), tuple(_parse_layer(i, raw) for i, raw in enumerate(layers)))

