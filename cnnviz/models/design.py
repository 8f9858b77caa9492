"""Designs: your own CNN as a validated JSON document, checked layer by layer, built, and written as code.

A design is `{"name": ..., "input": [C, H, W], "layers": [{"type": "conv2d", "out_channels": 16,
"kernel_size": 5}, ...]}`. Types are the lower-case PyTorch class names (`LAYERS` below) plus
`resblock`, the tutorial's ResBlk; keys are PyTorch's own argument names. Input sizes are inferred:
`in_channels` (conv2d), `num_features` (batchnorm2d) and `in_features` (linear) may be left out,
and when given they are checked against what arrives. `out_channels` / `out_features` may be the
string `"classes"`: the dataset's class count. Sizes (kernel_size, stride, padding, dilation,
output_size) are single integers and the input is square, as everywhere else in cnnviz.

- `parse(spec)`: the schema (unknown types or keys, wrong types, ranges, at most `MAX_LAYERS`
  layers); a `ValueError` with a one-line reason. JSON is parsed with `json.loads`, never run.
- `check(spec, num_classes, in_channels)`: the shapes, worked out layer by layer with PyTorch's own
  formulas (no forward pass), parameters and FLOPs per layer (1 multiply-add = 2 FLOPs, as
  `cnnviz.inspect.summary` counts them), and the first layer that cannot take its input, said in
  plain words with the numbers and, where one is obvious, the fixes (`Fix.design`). The parameter
  and FLOP caps (`MAX_PARAMS`, `MAX_FLOPS`) are checked here too.
- `from_design(spec, num_classes, in_channels)`: an `nn.Module` (`DesignNet`, its layers named
  conv1, pool1, ..., fc2 in order); `to_code(spec, num_classes)`: the same model as plain,
  readable PyTorch source. Both come from one `Call` per layer, so they cannot drift.
- Files: designs are saved under `$CNNVIZ_DESIGNS` (default `./designs`); the model name
  `design:NAME.json` works wherever a registry name does (`registry.info` resolves the prefix
  here). A path names any file for the command line; what a browser sends is only looked up in the
  designs folder (`resolve_path(..., inside_only=True)`).
- In-channels: `create("design:x.json", num_classes, in_channels)` builds the design for the
  dataset's channel count (MNIST's 1), like the registry models do: the first layers take
  `in_channels` in place of the design's `input[0]`; a design that can't (a pinned
  `in_channels`, `groups`) is refused with the reason.
- Checkpoints: `checkpoint_meta(model)` records the design and its hash; `checkpoints.load_into`
  refuses weights saved from a different design.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .registry import ModelInfo, register_prefix
from .resnet import ResBlk

PREFIX = "design:"
MAX_LAYERS = 200
MAX_JSON_CHARS = 200_000
MAX_PARAMS = 150_000_000           # VGG-16 (138 M) fits; more is refused
MAX_FLOPS = 50_000_000_000         # per image; VGG-16 at 224 px costs 31 GFLOPs
MAX_CHANNELS = 4096
MAX_FEATURES = 65_536
MAX_INPUT_CHANNELS = 16
MAX_INPUT_SIZE = 1024
CLASSES = "classes"
_REQUIRED = object()

__all__ = ["PREFIX", "MAX_LAYERS", "MAX_PARAMS", "MAX_FLOPS", "LAYERS", "Arg", "LayerType", "Design", "Analysis",
           "LayerRow", "Problem", "Fix", "parse", "check", "from_design", "to_code", "class_name", "new_layer",
           "preset", "PRESETS", "from_registry", "plain_stack_models", "designs_root", "design_names",
           "resolve_path", "load_file", "stamp", "save", "is_design_name", "checkpoint_meta", "info_for_checkpoint",
           "create_for_checkpoint",
           "DesignNet"]


# ---- the layer table ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Arg:
    """One argument of a layer type.

    kind: "int" | "float" | "bool" | "choice" | "width" (an int or "classes") | "pin" (null = inferred,
    else an int that is checked) | "optint" (null or an int; maxpool's stride null = kernel_size).
    main: shown in the layer's row on the page (the others under "more").
    """

    name: str
    kind: str
    default: Any = _REQUIRED
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""
    main: bool = True

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@dataclass(frozen=True)
class LayerType:
    """A layer type: its JSON name, PyTorch class, module-name prefix and arguments."""

    type: str
    cls: str
    prefix: str
    help: str
    args: tuple[Arg, ...] = ()
    new: dict = field(default_factory=dict)   # values a freshly added layer starts with

    def arg(self, name: str) -> Arg:
        return next(a for a in self.args if a.name == name)


def _size(name: str, default: Any, lo: int, hi: int, help: str, main: bool = True) -> Arg:
    return Arg(name, "int", default, lo, hi, help=help, main=main)


_PIN_HELP = "Leave empty to infer it from what arrives; a number is checked against it."
LAYERS: dict[str, LayerType] = {t.type: t for t in [
    LayerType("conv2d", "Conv2d", "conv", "A 2-D convolution: out_channels kernels of kernel_size x kernel_size, "
              "slid with stride over the zero-padded input.", (
                  Arg("in_channels", "pin", None, 1, MAX_CHANNELS, help=_PIN_HELP, main=False),
                  Arg("out_channels", "width", _REQUIRED, 1, MAX_CHANNELS,
                      help="Output channels: a number, or 'classes' for the dataset's class count."),
                  _size("kernel_size", _REQUIRED, 1, 64, "Kernel side in pixels."),
                  _size("stride", 1, 1, 64, "Step between kernel positions."),
                  _size("padding", 0, 0, 64, "Zeros added on every side."),
                  _size("dilation", 1, 1, 32, "Spacing between kernel taps.", main=False),
                  Arg("groups", "int", 1, 1, MAX_CHANNELS, help="Channel groups (must divide in and out channels).",
                      main=False),
                  Arg("bias", "bool", True, help="Add a learned bias per output channel.", main=False),
              ), {"out_channels": 16, "kernel_size": 3, "padding": 1}),
    LayerType("batchnorm2d", "BatchNorm2d", "bn", "Normalises each channel over the batch, then scales and shifts.", (
        Arg("num_features", "pin", None, 1, MAX_CHANNELS, help=_PIN_HELP, main=False),
        Arg("eps", "float", 1e-5, 1e-12, 1.0, help="Added to the variance.", main=False),
        Arg("momentum", "float", 0.1, 0.0, 1.0, help="Running-statistics update rate.", main=False),
        Arg("affine", "bool", True, help="Learn a scale (gamma) and shift (beta) per channel.", main=False),
    )),
    LayerType("relu", "ReLU", "relu", "max(0, x), element-wise."),
    LayerType("leakyrelu", "LeakyReLU", "lrelu", "x for x > 0, negative_slope * x otherwise.", (
        Arg("negative_slope", "float", 0.01, 0.0, 1.0, help="Slope for negative inputs."),)),
    LayerType("gelu", "GELU", "gelu", "x * Phi(x): a smooth ReLU.", (
        Arg("approximate", "choice", "none", choices=("none", "tanh"), help="'tanh': the faster approximation."),)),
    LayerType("silu", "SiLU", "silu", "x * sigmoid(x) (Swish)."),
    LayerType("maxpool2d", "MaxPool2d", "pool", "The largest value of each kernel_size x kernel_size window.", (
        _size("kernel_size", _REQUIRED, 1, 64, "Window side in pixels."),
        Arg("stride", "optint", None, 1, 64, help="Step between windows; empty = kernel_size (PyTorch's default)."),
        _size("padding", 0, 0, 32, "Padding on every side (at most half the kernel)."),
        _size("dilation", 1, 1, 32, "Spacing between window taps.", main=False),
        Arg("ceil_mode", "bool", False, help="Round the output size up (a last, partial window).", main=False),
    ), {"kernel_size": 2}),
    LayerType("avgpool2d", "AvgPool2d", "avgpool", "The mean of each kernel_size x kernel_size window.", (
        _size("kernel_size", _REQUIRED, 1, 64, "Window side in pixels."),
        Arg("stride", "optint", None, 1, 64, help="Step between windows; empty = kernel_size (PyTorch's default)."),
        _size("padding", 0, 0, 32, "Padding on every side (at most half the kernel)."),
        Arg("ceil_mode", "bool", False, help="Round the output size up (a last, partial window).", main=False),
        Arg("count_include_pad", "bool", True, help="Count padded zeros in the mean.", main=False),
    ), {"kernel_size": 2}),
    LayerType("adaptiveavgpool2d", "AdaptiveAvgPool2d", "gap", "Averages to a fixed output_size x output_size map, "
              "whatever the input size (1 = global average pooling).", (
                  _size("output_size", 1, 1, 64, "Output side in pixels."),)),
    LayerType("dropout", "Dropout", "drop", "Zeroes each value with probability p while training.", (
        Arg("p", "float", 0.5, 0.0, 1.0, help="Probability of zeroing a value."),)),
    LayerType("flatten", "Flatten", "flatten", "C x H x W -> one vector of C*H*W values."),
    LayerType("linear", "Linear", "fc", "Fully connected: every output is a weighted sum of every input.", (
        Arg("in_features", "pin", None, 1, 10**8, help=_PIN_HELP),
        Arg("out_features", "width", _REQUIRED, 1, MAX_FEATURES,
            help="Outputs: a number, or 'classes' for the dataset's class count."),
        Arg("bias", "bool", True, help="Add a learned bias per output.", main=False),
    ), {"out_features": CLASSES}),
    LayerType("resblock", "ResBlk", "block", "The tutorial's residual block: conv3x3-BN-ReLU-conv3x3-BN plus the input "
              "(through a 1x1 conv + BN when the shape changes), then ReLU.", (
                  Arg("out_channels", "width", _REQUIRED, 1, MAX_CHANNELS, help="Output channels."),
                  _size("stride", 1, 1, 4, "Stride of the first conv (2 halves the size)."),
              ), {"out_channels": 32}),
]}
_PINS = {"conv2d": "in_channels", "batchnorm2d": "num_features", "linear": "in_features"}


def new_layer(type_: str) -> dict:
    """A fresh layer of `type_` with every argument filled (the page's 'Add' button)."""
    t = LAYERS[type_]
    out = {"type": type_}
    for a in t.args:
        out[a.name] = t.new.get(a.name, None if a.required else a.default)
    return out


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


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: float) -> str:
    return f"{v:,}" if _is_int(v) else f"{v:g}"


def _check_arg(where: str, a: Arg, v: Any) -> Any:
    """The validated value of argument `a`, or ValueError(one line)."""
    rng = f"between {_num(a.lo)} and {_num(a.hi)}" if a.lo is not None else ""
    if a.kind in ("pin", "optint") and v is None:
        return None
    if a.kind == "width" and v == CLASSES:
        return v
    if a.kind in ("int", "pin", "optint", "width"):
        if not _is_int(v):
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
    if not (isinstance(inp, list) and len(inp) == 3 and all(_is_int(v) for v in inp)):
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


# ---- calls: what build() instantiates and to_code() prints -----------------------------------------
@dataclass(frozen=True)
class Sym:
    """A number with the code that computes it ('in_channels', 'num_classes', '32 * 5 * 5')."""

    value: int
    code: str

    @classmethod
    def of(cls, v: int) -> "Sym":
        return cls(v, str(v))


@dataclass(frozen=True)
class Call:
    """`nn.<fn>(*args, **kwargs)` (or `ResBlk(...)`); args may be `Sym`s."""

    fn: str
    args: tuple = ()
    kwargs: tuple[tuple[str, Any], ...] = ()

    def build(self) -> nn.Module:
        cls = ResBlk if self.fn == "ResBlk" else getattr(nn, self.fn)
        if self.fn not in _CLASSES:  # pragma: no cover - table bug
            raise ValueError(f"{self.fn} is not an allowed layer")
        return cls(*[a.value if isinstance(a, Sym) else a for a in self.args], **dict(self.kwargs))

    def code(self) -> str:
        parts = [a.code if isinstance(a, Sym) else repr(a) for a in self.args]
        parts += [f"{k}={v!r}" for k, v in self.kwargs]
        return f"{'' if self.fn == 'ResBlk' else 'nn.'}{self.fn}({', '.join(parts)})"


_CLASSES = {t.cls for t in LAYERS.values()}


def _kw(layer: dict, *names: str) -> tuple[tuple[str, Any], ...]:
    """Keyword arguments that differ from the default (PyTorch's defaults are the design's)."""
    t = LAYERS[layer["type"]]
    return tuple((n, layer[n]) for n in names if layer[n] != t.arg(n).default or t.arg(n).required)


# ---- the shape check ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Fix:
    """A one-click repair: its button label and the repaired design."""

    label: str
    design: Design


@dataclass(frozen=True)
class Problem:
    """Why the design can't be built: the layer (0-based; None for the whole design), what, and fixes."""

    index: int | None
    message: str
    fixes: tuple[Fix, ...] = ()


@dataclass
class LayerRow:
    """One layer, checked: what arrives, what leaves, its cost, and how it is built."""

    index: int
    name: str                              # module name: conv1, pool1, ..., fc2
    type: str                              # PyTorch class name
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...] | None      # None: this layer failed
    params: int = 0
    flops: int = 0
    call: Call | None = None
    problem: str | None = None

    @property
    def shape_text(self) -> str:
        return _shape_text(self.out_shape) if self.out_shape is not None else "-"


@dataclass
class Analysis:
    """The result of `check`: a row per layer up to the first problem, totals, and that problem."""

    design: Design
    num_classes: int
    in_channels: int
    rows: list[LayerRow]
    problem: Problem | None
    total_params: int
    total_flops: int

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.design.input[1], self.design.input[2])

    @property
    def output_shape(self) -> tuple[int, ...]:
        return next((r.out_shape for r in reversed(self.rows) if r.out_shape is not None), self.input_shape)


def _shape_text(shape: tuple[int, ...]) -> str:
    return " x ".join(str(s) for s in shape)


def _label(i: int, layer: dict) -> str:
    return f"Layer {i + 1} ({LAYERS[layer['type']].cls})"


def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    """PyTorch's pooling_output_shape."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


class _Stop(Exception):
    def __init__(self, message: str, fixes: tuple[Fix, ...] = ()) -> None:
        super().__init__(message)
        self.message, self.fixes = message, fixes


def _module_names(design: Design) -> list[str]:
    counts: dict[str, int] = {}
    out = []
    for layer in design.layers:
        p = LAYERS[layer["type"]].prefix
        counts[p] = counts.get(p, 0) + 1
        out.append(f"{p}{counts[p]}")
    return out


def _step(design: Design, i: int, layer: dict, shape: tuple[int, ...], chan: Sym, flat_from: tuple | None,
          num_classes: int, in_channels: int):
    """One layer: (out_shape, out Sym, flat_from, params, flops, call) or raise _Stop."""
    t = LAYERS[layer["type"]]
    ty = layer["type"]
    lab = _label(i, layer)
    spatial = len(shape) == 3

    def width(v: Any) -> Sym:
        return Sym(num_classes, "num_classes") if v == CLASSES else Sym.of(v)

    def need_map() -> None:
        if spatial:
            return
        after = ""
        fixes: tuple[Fix, ...] = ()
        if i > 0 and design.layers[i - 1]["type"] == "flatten":
            after = f" (the Flatten at layer {i} made it one)"
            fixes = (Fix(f"Remove the Flatten (layer {i})", design.remove(i - 1)),)
        raise _Stop(f"{lab} needs a C x H x W map but receives a flat vector of {shape[0]:,} values{after}; "
                    f"{t.cls} can't follow a Flatten or a Linear.", fixes)

    def pin(arg: str, arriving: int, what: str) -> None:
        want = layer[arg]
        if want is not None and want != arriving:
            raise _Stop(f"{lab} expects {want:,} {what} but receives {arriving:,}.",
                        (Fix(f"Set {arg} to {arriving:,}", design.replace_layer(i, **{arg: arriving})),))

    if ty == "conv2d":
        need_map()
        c, h, w = shape
        pin("in_channels", c, "input channels")
        out = width(layer["out_channels"])
        k, s, p, d, g = (layer[n] for n in ("kernel_size", "stride", "padding", "dilation", "groups"))
        if c % g or out.value % g:
            raise _Stop(f"{lab}: groups = {g} must divide both its input channels ({c:,}) and out_channels "
                        f"({out.value:,}).")
        span = d * (k - 1) + 1
        if h + 2 * p < span:
            dil = f" (dilation {d})" if d > 1 else ""
            raise _Stop(f"{lab}: the {k}x{k} kernel{dil} spans {span} px but its input is only {h}x{w}"
                        f"{f' ({h + 2 * p} px with padding {p})' if p else ''}: use a smaller kernel, more padding "
                        "or a larger input.")
        ho = (h + 2 * p - span) // s + 1
        wo = (w + 2 * p - span) // s + 1
        params = out.value * (c // g) * k * k + (out.value if layer["bias"] else 0)
        flops = 2 * out.value * (c // g) * k * k * ho * wo
        call = Call("Conv2d", (chan, out), (("kernel_size", k),) + _kw(layer, "stride", "padding", "dilation",
                                                                         "groups", "bias"))
        return (out.value, ho, wo), out, None, params, flops, call
    if ty == "batchnorm2d":
        need_map()
        pin("num_features", shape[0], "channels")
        params = 2 * shape[0] if layer["affine"] else 0
        return shape, chan, None, params, 0, Call("BatchNorm2d", (chan,), _kw(layer, "eps", "momentum", "affine"))
    if ty in ("relu", "silu"):
        return shape, chan, flat_from, 0, 0, Call(t.cls)
    if ty == "leakyrelu":
        return shape, chan, flat_from, 0, 0, Call(t.cls, (), _kw(layer, "negative_slope"))
    if ty == "gelu":
        return shape, chan, flat_from, 0, 0, Call(t.cls, (), _kw(layer, "approximate"))
    if ty == "dropout":
        return shape, chan, flat_from, 0, 0, Call(t.cls, (), _kw(layer, "p"))
    if ty in ("maxpool2d", "avgpool2d"):
        need_map()
        c, h, w = shape
        k, p = layer["kernel_size"], layer["padding"]
        s = layer["stride"] or k
        d = layer.get("dilation", 1)
        if p > k // 2:
            raise _Stop(f"{lab}: padding {p} is more than half the {k}x{k} window (PyTorch allows at most {k // 2}).",
                        (Fix(f"Set padding to {k // 2}", design.replace_layer(i, padding=k // 2)),))
        ho, wo = (_pool_out(n, k, s, p, d, layer["ceil_mode"]) for n in (h, w))
        if ho < 1 or wo < 1:
            span = d * (k - 1) + 1
            raise _Stop(f"{lab}: the {k}x{k} window{f' (dilation {d}, {span} px)' if d > 1 else ''} does not fit "
                        f"its {h}x{w} input{f' ({h + 2 * p} px with padding {p})' if p else ''}: use a smaller "
                        "window or a larger input.")
        names = ("kernel_size", "stride", "padding") + (("dilation", "ceil_mode") if ty == "maxpool2d"
                                                          else ("ceil_mode", "count_include_pad"))
        kw = (("kernel_size", k),) + _kw(layer, *names[1:])
        return (c, ho, wo), chan, None, 0, 0, Call(t.cls, (), kw)
    if ty == "adaptiveavgpool2d":
        need_map()
        o = layer["output_size"]
        return (shape[0], o, o), chan, None, 0, 0, Call(t.cls, (o,))
    if ty == "flatten":
        if not spatial:
            return shape, chan, flat_from, 0, 0, Call(t.cls)
        c, h, w = shape
        code = chan.code if h * w == 1 else f"{chan.code} * {h} * {w}"
        return (c * h * w,), Sym(c * h * w, code), shape, 0, 0, Call(t.cls)
    if ty == "linear":
        if spatial:
            raise _Stop(f"{lab} needs a flat vector but receives a {_shape_text(shape)} map: insert a Flatten "
                        "before it.",
                        (Fix(f"Insert a Flatten before layer {i + 1}", design.insert(i, new_layer("flatten"))),))
        n = shape[0]
        want = layer["in_features"]
        if want is not None and want != n:
            made = f" = {_shape_text(flat_from)}" if flat_from else ""
            fixes = [Fix(f"Set in_features to {n:,}", design.replace_layer(i, in_features=n))]
            size = _input_size_for(design, i, want, num_classes, in_channels)
            why = ""
            if size is not None and size != design.input[1]:
                why = f": the input is {design.input[1]}x{design.input[2]}, not {size}x{size}"
                resized = replace(design, input=(design.input[0], size, size))
                fixes.append(Fix(f"Set the input to {size}x{size}", resized))
            raise _Stop(f"{lab} expects {want:,} inputs but receives {n:,}{made}{why}.", tuple(fixes))
        out = width(layer["out_features"])
        params = n * out.value + (out.value if layer["bias"] else 0)
        return (out.value,), out, None, params, 2 * n * out.value, Call("Linear", (chan, out), _kw(layer, "bias"))
    if ty == "resblock":
        need_map()
        c, h, w = shape
        out = width(layer["out_channels"])
        s = layer["stride"]
        ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
        o = out.value
        shortcut = o != c or s != 1
        params = 9 * c * o + 9 * o * o + 4 * o + ((c * o + 2 * o) if shortcut else 0)
        flops = 2 * ho * wo * (9 * c * o + 9 * o * o + (c * o if shortcut else 0))
        return (o, ho, wo), out, None, params, flops, Call("ResBlk", (chan, out), _kw(layer, "stride"))
    raise AssertionError(ty)  # pragma: no cover


def _walk(design: Design, num_classes: int, in_channels: int, upto: int | None = None):
    """Yield (index, name, in_shape, step result or _Stop) for each layer, stopping after a problem."""
    shape: tuple[int, ...] = (in_channels, design.input[1], design.input[2])
    chan = Sym(in_channels, "in_channels")
    flat_from = None
    for i, (layer, name) in enumerate(zip(design.layers, _module_names(design))):
        if upto is not None and i >= upto:
            return
        try:
            res = _step(design, i, layer, shape, chan, flat_from, num_classes, in_channels)
        except _Stop as stop:
            yield i, name, shape, stop
            return
        yield i, name, shape, res
        shape, chan, flat_from = res[0], res[1], res[2]


def _input_size_for(design: Design, i: int, features: int, num_classes: int, in_channels: int) -> int | None:
    """The square input size at which layer i would receive `features` values, if there is one."""
    def arriving(size: int) -> int:
        d = replace(design, input=(design.input[0], size, size))
        shape = (in_channels, size, size)
        for _, _, _, res in _walk(d, num_classes, in_channels, upto=i):
            if isinstance(res, _Stop):
                return 0
            shape = res[0]
        return shape[0] if len(shape) == 1 else 0

    lo, hi = 1, MAX_INPUT_SIZE  # values arriving grow with the input size: find the first >= features
    if arriving(hi) < features:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if arriving(mid) >= features:
            hi = mid
        else:
            lo = mid + 1
    return lo if arriving(lo) == features else None


def check(spec: Any, num_classes: int = 10, in_channels: int | None = None) -> Analysis:
    """Work out every layer's shape, parameters and FLOPs; the first problem, if any (see the module doc).

    Raises ValueError only for a spec that fails `parse` or bad `num_classes` / `in_channels`.
    """
    design = parse(spec)
    if not _is_int(num_classes) or not 1 <= num_classes <= MAX_FEATURES:
        raise ValueError(f"num_classes must be between 1 and {MAX_FEATURES:,}; got {num_classes!r}.")
    in_channels = design.input[0] if in_channels is None else in_channels
    if not _is_int(in_channels) or not 1 <= in_channels <= MAX_INPUT_CHANNELS:
        raise ValueError(f"in_channels must be between 1 and {MAX_INPUT_CHANNELS}; got {in_channels!r}.")
    rows: list[LayerRow] = []
    problem = None
    total_p = total_f = 0
    for i, name, in_shape, res in _walk(design, num_classes, in_channels):
        cls = LAYERS[design.layers[i]["type"]].cls
        if isinstance(res, _Stop):
            rows.append(LayerRow(i, name, cls, in_shape, None, problem=res.message))
            problem = Problem(i, res.message, res.fixes)
            break
        out, _, _, params, flops, call = res
        rows.append(LayerRow(i, name, cls, in_shape, out, params, flops, call))
        total_p += params
        total_f += flops
        cap = None
        if total_p > MAX_PARAMS:
            cap = f"brings the total to {total_p:,} parameters; a design may have at most {MAX_PARAMS:,}"
        elif total_f > MAX_FLOPS:
            cap = f"brings the cost to {total_f:,} FLOPs per image; a design may cost at most {MAX_FLOPS:,}"
        if cap:
            msg = f"{_label(i, design.layers[i])} {cap}."
            rows[-1].problem = msg
            problem = Problem(i, msg)
            break
    if problem is None:
        problem = _output_problem(design, rows, num_classes)
    return Analysis(design, num_classes, in_channels, rows, problem, total_p, total_f)


def _output_problem(design: Design, rows: list[LayerRow], num_classes: int) -> Problem | None:
    """A classifier must end with a flat vector of num_classes scores."""
    if not design.layers:
        return Problem(None, "The design has no layers yet: add some, or load a preset.")
    out = rows[-1].out_shape
    n = len(design.layers)
    head = [new_layer("flatten"), new_layer("linear")]
    if len(out) == 3:
        fixes = [Fix("Append a Flatten and a Linear(out_features=\"classes\")",
                     replace(design, layers=design.layers + tuple(head)))]
        return Problem(None, f"The design ends with a {_shape_text(out)} map; a classifier must end with a flat "
                             f"vector of {num_classes:,} class scores: add a Flatten and a Linear with "
                             'out_features "classes".', tuple(fixes))
    if out[0] != num_classes:
        last = design.layers[-1]
        if last["type"] == "linear":
            return Problem(n - 1, f"The design ends with {out[0]:,} values but there are {num_classes:,} classes: "
                                  f'set the last Linear\'s out_features to "classes".',
                           (Fix('Set out_features to "classes"', design.replace_layer(n - 1, out_features=CLASSES)),))
        return Problem(None, f"The design ends with {out[0]:,} values but there are {num_classes:,} classes: add a "
                             'Linear with out_features "classes".',
                       (Fix('Append a Linear(out_features="classes")',
                            replace(design, layers=design.layers + (head[1],))),))
    return None


# ---- the model -----------------------------------------------------------------------------------
class DesignNet(nn.Module):
    """A design as a module: its layers as named children (conv1, pool1, ...), called in order."""

    def __init__(self, spec: Any, num_classes: int = 10, in_channels: int | None = None) -> None:
        super().__init__()
        analysis = check(spec, num_classes, in_channels)
        if not analysis.ok:
            raise ValueError(_one_line(analysis))
        for row in analysis.rows:
            self.add_module(row.name, row.call.build())
        self.design = analysis.design
        self.design_hash = analysis.design.hash

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = layer(x)
        return x


def _one_line(analysis: Analysis) -> str:
    name = analysis.design.name
    return f"Design {name!r}: {analysis.problem.message}"


def from_design(spec: Any, num_classes: int = 10, in_channels: int | None = None) -> nn.Module:
    """Build a design (JSON text, dict or Design) as a `DesignNet`; ValueError with a one-line reason if it can't be."""
    return DesignNet(spec, num_classes, in_channels)


def class_name(spec: Any) -> str:
    """The class name `to_code` gives the design: its name in CamelCase ('lenet5' -> 'Lenet5')."""
    design = parse(spec)
    words = re.findall(r"[A-Za-z0-9]+", design.name)
    name = "".join(w[:1].upper() + w[1:] for w in words) or "Design"
    if name[0].isdigit():
        name = "Design" + name
    return name + "Net" if name in ("ResBlk", "Module") else name


def to_code(spec: Any, num_classes: int = 10, in_channels: int | None = None, standalone: bool = True) -> str:
    """Plain PyTorch source of the design: a class with one attribute per layer and a forward calling them.

    `num_classes` and `in_channels` become the constructor's defaults (and the shapes in the comments).
    `standalone` adds the imports and a docstring; without it the text is for pasting into a script that
    already imports torch, nn and F. ValueError (one line) if the design can't be built.
    """
    analysis = check(spec, num_classes, in_channels)
    if not analysis.ok:
        raise ValueError(_one_line(analysis))
    d = analysis.design
    cls = class_name(d)
    c_in = analysis.in_channels
    lines: list[str] = []
    uses_block = any(layer["type"] == "resblock" for layer in d.layers)
    if standalone:
        lines += [f'"""{d.name}: a cnnviz design as plain PyTorch ({c_in} x {d.input[1]} x {d.input[2]} input, '
                  f'{analysis.total_params:,} parameters with {num_classes} classes).',
                  "",
                  "Written by cnnviz.models.to_code: the same layers, names and shapes as cnnviz builds,",
                  'so a state_dict saved from either loads into the other.', '"""', "", "import torch",
                  "from torch import nn"]
        if uses_block:
            lines.append("from torch.nn import functional as F")
        lines += ["", ""]
    if uses_block:
        lines += [inspect.getsource(ResBlk).rstrip(), "", ""]
    calls = [f"self.{r.name} = {r.call.code()}" for r in analysis.rows]
    width = min(max((len(c) for c in calls), default=0), 72)
    lines += [f"class {cls}(nn.Module):",
              f'    """Design {d.name!r}: {len(d.layers)} layers, input {c_in} x {d.input[1]} x {d.input[2]} '
              f'(shapes after each layer below)."""', "",
              f"    def __init__(self, num_classes: int = {num_classes}, in_channels: int = {c_in}) -> None:",
              "        super().__init__()"]
    for c, r in zip(calls, analysis.rows):
        lines.append(f"        {c.ljust(width)}  # -> {_shape_text(r.out_shape)}")
    lines += ["", "    def forward(self, x: torch.Tensor) -> torch.Tensor:"]
    lines += [f"        x = self.{r.name}(x)" for r in analysis.rows]
    lines += ["        return x", ""]
    return "\n".join(lines)


# ---- presets and registry models ------------------------------------------------------------------
PRESETS: dict[str, dict] = {
    "lenet5": {"name": "lenet5", "input": [3, 32, 32], "layers": [
        {"type": "conv2d", "out_channels": 16, "kernel_size": 5},
        {"type": "maxpool2d", "kernel_size": 2, "stride": 2},
        {"type": "conv2d", "out_channels": 32, "kernel_size": 5},
        {"type": "maxpool2d", "kernel_size": 2, "stride": 2},
        {"type": "flatten"},
        {"type": "linear", "in_features": 800, "out_features": 32},   # the tutorial writes 32 * 5 * 5
        {"type": "relu"},
        {"type": "linear", "out_features": CLASSES},
    ]},
    "resnet_small": {"name": "resnet_small", "input": [3, 32, 32], "layers": [
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1, "bias": False},
        {"type": "batchnorm2d"},
        {"type": "relu"},
        {"type": "resblock", "out_channels": 16, "stride": 1},
        {"type": "resblock", "out_channels": 32, "stride": 2},
        {"type": "resblock", "out_channels": 64, "stride": 2},
        {"type": "adaptiveavgpool2d", "output_size": 1},
        {"type": "flatten"},
        {"type": "linear", "out_features": CLASSES},
    ]},
    "empty": {"name": "my-design", "input": [3, 32, 32], "layers": []},
}
PRESET_HELP = {
    "lenet5": "The tutorial's LeNet5, layer for layer (40,010 parameters with 10 classes). Its first Linear "
              "keeps the tutorial's hard-coded in_features = 32 * 5 * 5 = 800: change the input size to see why "
              "that breaks.",
    "resnet_small": "The registry's resnet_small: a 3x3 stem, three of the tutorial's ResBlk (16, 32, 64 channels), "
                    "global average pooling and a Linear.",
    "empty": "No layers: add them one by one below.",
}


def preset(name: str) -> Design:
    """A preset design by name (see PRESETS)."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; known: {', '.join(PRESETS)}.")
    return parse(PRESETS[name])


def _square(v: Any, what: str) -> int:
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise ValueError(f"a non-square {what} {tuple(v)}")
        v = v[0]
    if not _is_int(v):
        raise ValueError(f"a {what} of {v!r}")
    return v


def _layer_from_module(m: nn.Module) -> dict | None:
    """The design layer of a module (None: a no-op such as nn.Identity); ValueError naming what doesn't fit."""
    sq = _square
    if isinstance(m, nn.Identity):
        return None
    if isinstance(m, nn.Conv2d):
        if isinstance(m.padding, str) or m.padding_mode != "zeros":
            raise ValueError(f"a Conv2d with padding {m.padding!r} / {m.padding_mode}")
        return {"type": "conv2d", "out_channels": m.out_channels, "kernel_size": sq(m.kernel_size, "kernel"),
                "stride": sq(m.stride, "stride"), "padding": sq(m.padding, "padding"),
                "dilation": sq(m.dilation, "dilation"), "groups": m.groups, "bias": m.bias is not None,
                "in_channels": None}
    if isinstance(m, nn.BatchNorm2d):
        if m.momentum is None or not m.track_running_stats:
            raise ValueError("a BatchNorm2d without running statistics")
        return {"type": "batchnorm2d", "eps": float(m.eps), "momentum": float(m.momentum), "affine": m.affine,
                "num_features": None}
    if type(m) in (nn.ReLU, nn.SiLU):
        return {"type": type(m).__name__.lower()}
    if isinstance(m, nn.LeakyReLU):
        return {"type": "leakyrelu", "negative_slope": float(m.negative_slope)}
    if isinstance(m, nn.GELU):
        return {"type": "gelu", "approximate": m.approximate}
    if isinstance(m, nn.MaxPool2d):
        if m.return_indices:
            raise ValueError("a MaxPool2d returning indices")
        return {"type": "maxpool2d", "kernel_size": sq(m.kernel_size, "kernel"), "stride": sq(m.stride, "stride"),
                "padding": sq(m.padding, "padding"), "dilation": sq(m.dilation, "dilation"), "ceil_mode": m.ceil_mode}
    if isinstance(m, nn.AvgPool2d):
        if m.divisor_override is not None:
            raise ValueError("an AvgPool2d with divisor_override")
        return {"type": "avgpool2d", "kernel_size": sq(m.kernel_size, "kernel"), "stride": sq(m.stride, "stride"),
                "padding": sq(m.padding, "padding"), "ceil_mode": m.ceil_mode,
                "count_include_pad": m.count_include_pad}
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return {"type": "adaptiveavgpool2d", "output_size": sq(m.output_size, "output size")}
    if type(m) is nn.Dropout:
        return {"type": "dropout", "p": float(m.p)}
    if isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise ValueError(f"a Flatten({m.start_dim}, {m.end_dim})")
        return {"type": "flatten"}
    if isinstance(m, nn.Linear):
        return {"type": "linear", "out_features": m.out_features, "in_features": None, "bias": m.bias is not None}
    block = _block_args(m)
    if block is not None:
        return {"type": "resblock", **block}
    cls = type(m).__name__
    raise ValueError(f"{'an' if cls[0] in 'AEIOU' else 'a'} {cls} layer, which designs don't offer")


def _block_args(m: nn.Module) -> dict | None:
    """out_channels/stride of a ResBlk, or of a torchvision BasicBlock built the same way."""
    if isinstance(m, ResBlk):
        return {"out_channels": m.conv1.out_channels, "stride": _square(m.conv1.stride, "stride")}
    if type(m).__name__ == "BasicBlock" and type(m).__module__.startswith("torchvision"):
        c1, c2, ds = m.conv1, m.conv2, m.downsample
        s = _square(c1.stride, "stride")
        same = (c1.kernel_size == (3, 3) and c1.padding == (1, 1) and c1.bias is None and c2.stride == (1, 1)
                and c2.kernel_size == (3, 3) and c2.bias is None and c1.groups == 1 and c1.dilation == (1, 1))
        shortcut = c1.in_channels != c1.out_channels or s != 1
        ds_ok = (ds is None and not shortcut) or (
            shortcut and isinstance(ds, nn.Sequential) and len(ds) == 2 and isinstance(ds[0], nn.Conv2d)
            and ds[0].kernel_size == (1, 1) and ds[0].stride == (s, s) and isinstance(ds[1], nn.BatchNorm2d))
        if same and ds_ok and s <= 4:
            return {"out_channels": c1.out_channels, "stride": s}
    return None


def from_registry(name: str) -> Design:
    """The design of registry model `name` when it is a plain stack of supported layers; ValueError saying why not.

    The model is built on the `meta` device (no weights) and traced with torch.fx; ResBlk (and torchvision's
    identical BasicBlock) count as one `resblock` layer. The last Linear's out_features becomes "classes".
    """
    import torch.fx

    from . import registry

    info = registry.info(name)

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return _block_args(m) is not None or super().is_leaf_module(m, qualname)

    with torch.device("meta"):
        model = info.builder(num_classes=10, in_channels=info.in_channels)
    try:
        graph = Tracer().trace(model)
    except Exception as exc:  # noqa: BLE001 - any tracing failure: not a plain stack
        raise ValueError(f"{name} can't be read as a stack of layers ({type(exc).__name__}).") from None
    layers: list[dict] = []
    prev = None
    for node in graph.nodes:
        if node.op == "placeholder":
            prev = node
            continue
        if node.op == "output":
            if node.args[0] is not prev:
                raise ValueError(f"{name} is not a plain stack: its output is not its last layer's.")
            break
        if node.all_input_nodes != [prev]:
            what = node.target if node.op == "call_module" else node.name
            raise ValueError(f"{name} is not a plain stack of layers: {what} does not just take the previous layer's "
                             "output (a branch or a shortcut that is not a ResBlk).")
        if node.op == "call_module":
            try:
                layer = _layer_from_module(model.get_submodule(node.target))
            except ValueError as exc:
                raise ValueError(f"{name} is not a plain stack of supported layers: {node.target} is {exc}.") from None
        elif node.op == "call_function" and node.target is torch.flatten and tuple(node.args[1:]) == (1,) \
                and not node.kwargs:
            layer = {"type": "flatten"}
        elif node.op == "call_function" and node.target in (torch.relu, nn.functional.relu):
            layer = {"type": "relu"}
        else:
            raise ValueError(f"{name} is not a plain stack of supported layers: its forward calls {node.target}.")
        if layer is not None:
            layers.append(layer)
        prev = node
    linears = [i for i, layer in enumerate(layers) if layer["type"] == "linear"]
    if linears and layers[linears[-1]]["out_features"] == 10:
        layers[linears[-1]]["out_features"] = CLASSES
    s = info.input_size
    return parse({"name": name, "input": [info.in_channels, s, s], "layers": layers})


_PLAIN: dict[str, tuple[Design | None, str]] = {}


def plain_stack_models() -> dict[str, Design]:
    """{registry name: its design} for every registered model that is a plain stack (computed once)."""
    from . import registry

    for n in registry.names():
        if n not in _PLAIN:
            try:
                _PLAIN[n] = (from_registry(n), "")
            except ValueError as exc:
                _PLAIN[n] = (None, str(exc))
    return {n: d for n, (d, _) in _PLAIN.items() if d is not None}


# ---- files ---------------------------------------------------------------------------------------
def designs_root() -> Path:
    """Where designs are saved: $CNNVIZ_DESIGNS, else ./designs."""
    return Path(os.environ.get("CNNVIZ_DESIGNS") or "designs")


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
    from .checkpoints import atomic_write_bytes

    analysis = check(spec, num_classes)
    if not analysis.ok:
        raise ValueError(f"Not saved: {analysis.problem.message}")
    folder = Path(folder) if folder is not None else designs_root()
    path = folder / file_name(analysis.design.name)
    atomic_write_bytes(path, analysis.design.to_json().encode())
    return path


def design_names() -> list[str]:
    """Model names ('design:NAME.json') of the valid designs saved in the designs folder, sorted."""
    root = designs_root()
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.glob("*.json")):
        try:
            load_file(str(p))
        except (ValueError, OSError):  # a broken or foreign file: not offered
            continue
        out.append(PREFIX + p.name)
    return out


# ---- the registry's view of designs ---------------------------------------------------------------
def model_info(name: str, design: Design) -> ModelInfo:
    """A registry ModelInfo for `design` under model name `name` (its builder builds the design)."""

    def build(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        return DesignNet(design, num_classes, in_channels)

    build.__doc__ = f"Design {design.name!r}"
    kinds = ", ".join(dict.fromkeys(LAYERS[layer["type"]].cls for layer in design.layers))
    return ModelInfo(name, build, design.input[1], design.input[0], family="design",
                     description=f"Your design {design.name!r}: {len(design.layers)} layers ({kinds}).",
                     idea="Your own stack of layers, checked shape by shape.",
                     depth=sum(layer["type"] in ("conv2d", "linear") for layer in design.layers)
                     + 2 * sum(layer["type"] == "resblock" for layer in design.layers))


def _resolve(name: str) -> ModelInfo:
    return model_info(name, load_file(name))


register_prefix(PREFIX, _resolve)


def checkpoint_meta(model: nn.Module) -> dict:
    """What a checkpoint of `model` records about its design ({} for registry models)."""
    if isinstance(model, DesignNet):
        return {"design": model.design.to_dict(), "design_hash": model.design_hash}
    return {}


def info_for_checkpoint(name: str, meta: dict) -> ModelInfo:
    """The model a checkpoint describes: its recorded design (validated) if it has one, else registry `name`."""
    from . import registry

    recorded = meta.get("design") if isinstance(meta, dict) else None
    if recorded is not None:
        try:
            return model_info(name, parse(recorded))
        except ValueError as exc:
            raise ValueError(f"The checkpoint's recorded design is not valid: {exc}") from None
    return registry.info(name)


def create_for_checkpoint(name: str, meta: dict, num_classes: int, in_channels: int) -> nn.Module:
    """Build the model a checkpoint's metadata describes: its recorded design, else `registry.create(name)`."""
    from . import registry

    if isinstance(meta, dict) and meta.get("design") is not None:
        return info_for_checkpoint(name, meta).builder(num_classes=num_classes, in_channels=in_channels)
    return registry.create(name, num_classes, in_channels)
