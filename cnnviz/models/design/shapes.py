"""The shape check: every layer's output shape, parameters and FLOPs, worked out from the layer table's rules
(PyTorch's own size formulas, no forward pass), and the first layer that can't take its input, said in plain
words with the numbers and, where one is obvious, the fixes. Also the activation memory the checked shapes
imply (`activation_memory`), without building anything.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterator

from .layers import LAYERS, new_layer
from .parsing import Design, parse
from ...limits import server_budget_bytes
from .schema import (CLASSES, MAX_FEATURES, MAX_FLOPS, MAX_INPUT_CHANNELS, MAX_INPUT_SIZE, MAX_PARAMS, Call, Ctx,
                     Fix, Step, Stop, Sym, is_int, shape_text)

__all__ = ["Problem", "LayerRow", "Analysis", "ActivationMemory", "activation_memory", "check", "require_ok",
           "BYTES_PER_VALUE"]

BYTES_PER_VALUE = 4  # float32


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
        return shape_text(self.out_shape) if self.out_shape is not None else "-"

    @property
    def out_bytes(self) -> int:
        """Bytes of this layer's output for one image (float32; 0 if the layer failed)."""
        return _numel(self.out_shape) * BYTES_PER_VALUE if self.out_shape is not None else 0


@dataclass(frozen=True)
class ActivationMemory:
    """The float32 activations of a forward pass: the output of each checked layer for `batch_size` images.

    A resblock counts as one layer (its output; the tensors inside it are not counted); the input is not
    counted. `largest` is the biggest single output, `total` all of them together (what a training step
    keeps for the backward pass, roughly).
    """

    batch_size: int
    per_layer: tuple[int, ...]             # bytes, one per checked layer, in order

    @property
    def largest(self) -> int:
        return max(self.per_layer, default=0)

    @property
    def total(self) -> int:
        return sum(self.per_layer)


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

    @property
    def activations(self) -> ActivationMemory:
        """The activation memory of one image (`activation_memory(self, batch_size)` for a batch)."""
        return activation_memory(self, 1)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def activation_memory(analysis: Analysis, batch_size: int = 1) -> ActivationMemory:
    """Bytes of every checked layer's float32 output for `batch_size` images, from the checked shapes alone
    (nothing is built or run). Layers after a problem are not counted."""
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number of at least 1; got {batch_size!r}.")
    return ActivationMemory(batch_size, tuple(batch_size * r.out_bytes for r in analysis.rows
                                              if r.out_shape is not None))


# ---- the walk ---------------------------------------------------------------------------------------
def _module_names(design: Design) -> list[str]:
    counts: dict[str, int] = {}
    out = []
    for layer in design.layers:
        p = LAYERS[layer["type"]].prefix
        counts[p] = counts.get(p, 0) + 1
        out.append(f"{p}{counts[p]}")
    return out


def _walk(design: Design, num_classes: int, in_channels: int,
          upto: int | None = None) -> Iterator[tuple[int, str, tuple[int, ...], Sym, Step | Stop]]:
    """Yield (index, name, in_shape, arriving Sym, Step or Stop) for each layer, stopping after a problem."""
    shape: tuple[int, ...] = (in_channels, design.input[1], design.input[2])
    chan = Sym(in_channels, "in_channels")
    flat_from = None
    for i, (layer, name) in enumerate(zip(design.layers, _module_names(design))):
        if upto is not None and i >= upto:
            return
        t = LAYERS[layer["type"]]
        ctx = Ctx(design, i, t, layer, shape, chan, flat_from, num_classes, in_channels,
                  lambda n, i=i: _input_size_for(design, i, n, num_classes, in_channels))
        try:
            step = t.shape(ctx)
        except Stop as stop:
            yield i, name, shape, chan, stop
            return
        yield i, name, shape, chan, step
        shape, chan, flat_from = step.shape, step.chan, step.flat_from


def _input_size_for(design: Design, i: int, features: int, num_classes: int, in_channels: int) -> int | None:
    """The square input size at which layer i would receive `features` values, if there is one."""
    def arriving(size: int) -> int:
        d = replace(design, input=(design.input[0], size, size))
        shape: tuple[int, ...] = (in_channels, size, size)
        for *_, res in _walk(d, num_classes, in_channels, upto=i):
            if isinstance(res, Stop):
                return 0
            shape = res.shape
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


# ---- the check --------------------------------------------------------------------------------------
def check(spec: Any, num_classes: int = 10, in_channels: int | None = None) -> Analysis:
    """Work out every layer's shape, parameters and FLOPs; the first problem, if any (see the module doc).

    Raises ValueError only for a spec that fails `parse` or bad `num_classes` / `in_channels`.
    The parameter and FLOP caps (`MAX_PARAMS`, `MAX_FLOPS`) are problems of the layer that crosses them.
    """
    design = parse(spec)
    if not is_int(num_classes) or not 1 <= num_classes <= MAX_FEATURES:
        raise ValueError(f"num_classes must be between 1 and {MAX_FEATURES:,}; got {num_classes!r}.")
    in_channels = design.input[0] if in_channels is None else in_channels
    if not is_int(in_channels) or not 1 <= in_channels <= MAX_INPUT_CHANNELS:
        raise ValueError(f"in_channels must be between 1 and {MAX_INPUT_CHANNELS}; got {in_channels!r}.")
    rows: list[LayerRow] = []
    problem = None
    total_p = total_f = 0
    for i, name, in_shape, chan, res in _walk(design, num_classes, in_channels):
        layer = design.layers[i]
        t = LAYERS[layer["type"]]
        if isinstance(res, Stop):
            rows.append(LayerRow(i, name, t.cls, in_shape, None, problem=res.message))
            problem = Problem(i, res.message, res.fixes)
            break
        rows.append(LayerRow(i, name, t.cls, in_shape, res.shape, res.params, res.flops,
                             t.call(layer, chan, num_classes)))
        total_p += res.params
        total_f += res.flops
        cap = None
        out_bytes = 4 * _numel(res.shape)
        if total_p > MAX_PARAMS:
            cap = f"brings the total to {total_p:,} parameters; a design may have at most {MAX_PARAMS:,}"
        elif total_f > MAX_FLOPS:
            cap = f"brings the cost to {total_f:,} FLOPs per image; a design may cost at most {MAX_FLOPS:,}"
        elif 2 * out_bytes > server_budget_bytes():  # the feature-map view holds the output and a copy of it
            cap = (f"outputs {out_bytes / 2**20:,.0f} MB per image ({shape_text(res.shape)}); with its copy that "
                   f"is over this server's memory budget of {server_budget_bytes() / 2**20:,.0f} MB "
                   "(CNNVIZ_SERVER_BUDGET_MB): use fewer channels or a smaller input")
        if cap:
            msg = f"Layer {i + 1} ({t.cls}) {cap}."
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
        return Problem(None, f"The design ends with a {shape_text(out)} map; a classifier must end with a flat "
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


def require_ok(spec: Any, num_classes: int = 10, in_channels: int | None = None) -> Analysis:
    """`check`, or ValueError("Design 'NAME': <the problem>") when the design can't be built."""
    analysis = check(spec, num_classes, in_channels)
    if not analysis.ok:
        raise ValueError(f"Design {analysis.design.name!r}: {analysis.problem.message}")
    return analysis
