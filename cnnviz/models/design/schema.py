"""The vocabulary of designs: limits, what a layer type declares (`Arg`, `LayerType`), and what a shape rule
works with (`Ctx` in, `Step` out, `Stop` / `Fix` when a layer can't take its input).

`layers.LAYERS` is the table built from these; nothing here knows a particular layer type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

from torch import nn

MAX_LAYERS = 200
MAX_JSON_CHARS = 200_000
MAX_PARAMS = 150_000_000           # VGG-16 (138 M) fits; more is refused
MAX_FLOPS = 50_000_000_000         # per image; VGG-16 at 224 px costs 31 GFLOPs
MAX_CHANNELS = 4096
MAX_FEATURES = 65_536
MAX_INPUT_CHANNELS = 16
MAX_INPUT_SIZE = 1024
CLASSES = "classes"
REQUIRED: Any = object()           # an Arg's default when the argument must be given


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def shape_text(shape: tuple[int, ...]) -> str:
    return " x ".join(str(s) for s in shape)


@dataclass(frozen=True)
class Arg:
    """One argument of a layer type.

    kind: "int" | "float" | "bool" | "choice" | "width" (an int or "classes") | "pin" (null = inferred,
    else an int that is checked) | "optint" (null or an int; maxpool's stride null = kernel_size).
    main: shown in the layer's row on the page (the others under "more").
    """

    name: str
    kind: str
    default: Any = REQUIRED
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""
    main: bool = True

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Sym:
    """A number with the code that computes it ('in_channels', 'num_classes', '32 * 5 * 5')."""

    value: int
    code: str

    @classmethod
    def of(cls, v: int) -> "Sym":
        return cls(v, str(v))


def width(v: Any, num_classes: int) -> Sym:
    """An out_channels / out_features value: a number, or "classes" (the constructor's num_classes)."""
    return Sym(num_classes, "num_classes") if v == CLASSES else Sym.of(v)


@dataclass(frozen=True)
class Call:
    """`nn.<Module>(*args, **kwargs)` (or `ResBlk(...)`): what `build` instantiates and `code` prints; args may be
    `Sym`s (their value is built, their code is printed)."""

    module: type[nn.Module]
    args: tuple = ()
    kwargs: tuple[tuple[str, Any], ...] = ()

    def build(self) -> nn.Module:
        return self.module(*[a.value if isinstance(a, Sym) else a for a in self.args], **dict(self.kwargs))

    def code(self) -> str:
        parts = [a.code if isinstance(a, Sym) else repr(a) for a in self.args]
        parts += [f"{k}={v!r}" for k, v in self.kwargs]
        ns = "nn." if getattr(nn, self.module.__name__, None) is self.module else ""
        return f"{ns}{self.module.__name__}({', '.join(parts)})"


@dataclass(frozen=True)
class Fix:
    """A one-click repair: its button label and the repaired design."""

    label: str
    design: Any  # parsing.Design


class Stop(Exception):
    """A layer can't take what arrives: the one-line reason and the fixes."""

    def __init__(self, message: str, fixes: tuple[Fix, ...] = ()) -> None:
        super().__init__(message)
        self.message, self.fixes = message, fixes


class Step(NamedTuple):
    """What one layer does to what arrives (a shape rule's result)."""

    shape: tuple[int, ...]                    # the output, per image: (C, H, W) or (features,)
    chan: Sym                                 # its leading size, with the code that computes it
    params: int = 0
    flops: int = 0                            # per image; 1 multiply-add = 2 FLOPs
    flat_from: tuple[int, ...] | None = None  # the map a flat output was flattened from (for messages)


@dataclass(frozen=True)
class Ctx:
    """What a shape rule sees: its layer (every argument filled), what arrives, and the design around it."""

    design: Any                               # parsing.Design (for the fixes)
    i: int                                    # the layer's index (0-based)
    type: "LayerType"
    layer: dict
    shape: tuple[int, ...]
    chan: Sym
    flat_from: tuple[int, ...] | None
    num_classes: int
    in_channels: int
    input_size_for: Callable[[int], int | None]  # the square input size at which this layer gets n values

    @property
    def label(self) -> str:
        return f"Layer {self.i + 1} ({self.type.cls})"

    @property
    def spatial(self) -> bool:
        return len(self.shape) == 3

    def width(self, v: Any) -> Sym:
        return width(v, self.num_classes)

    def same(self) -> Step:
        """The shape passes through (activations, dropout)."""
        return Step(self.shape, self.chan, flat_from=self.flat_from)

    def need_map(self) -> tuple[int, int, int]:
        """The arriving (C, H, W); Stop if a flat vector arrives."""
        if self.spatial:
            return self.shape  # type: ignore[return-value]
        after = ""
        fixes: tuple[Fix, ...] = ()
        if self.i > 0 and self.design.layers[self.i - 1]["type"] == "flatten":
            after = f" (the Flatten at layer {self.i} made it one)"
            fixes = (Fix(f"Remove the Flatten (layer {self.i})", self.design.remove(self.i - 1)),)
        raise Stop(f"{self.label} needs a C x H x W map but receives a flat vector of {self.shape[0]:,} values{after}; "
                   f"{self.type.cls} can't follow a Flatten or a Linear.", fixes)

    def pin(self, arg: str, arriving: int, what: str) -> None:
        """Stop if the layer gives `arg` (in_channels, ...) and it is not what arrives."""
        want = self.layer[arg]
        if want is not None and want != arriving:
            raise Stop(f"{self.label} expects {want:,} {what} but receives {arriving:,}.",
                       (Fix(f"Set {arg} to {arriving:,}", self.design.replace_layer(self.i, **{arg: arriving})),))


@dataclass(frozen=True)
class LayerType:
    """A layer type, declared once: its JSON name, module, arguments, shape rule and how it is called.

    `shape(ctx) -> Step` works out the output (or raises Stop). `positional` says which values the module
    takes positionally ("in": the arriving channels/features; an argument's name: its value); every other
    argument is a keyword, written when it is required or differs from its default (PyTorch's defaults are
    the design's). "pin" arguments (in_channels, ...) are checked, never passed: the arriving size is.
    """

    type: str
    module: type[nn.Module]
    prefix: str                               # module names: conv1, conv2, ...
    help: str
    shape: Callable[[Ctx], Step]
    args: tuple[Arg, ...] = ()
    positional: tuple[str, ...] = ()
    new: dict = field(default_factory=dict)   # values a freshly added layer starts with

    @property
    def cls(self) -> str:
        """The PyTorch class name (Conv2d, ..., ResBlk)."""
        return self.module.__name__

    def arg(self, name: str) -> Arg:
        return next(a for a in self.args if a.name == name)

    def call(self, layer: dict, chan: Sym, num_classes: int) -> Call:
        """How the layer is built and written, given what arrives."""
        args = []
        for p in self.positional:
            if p == "in":
                args.append(chan)
            else:
                args.append(width(layer[p], num_classes) if self.arg(p).kind == "width" else layer[p])
        kwargs = tuple((a.name, layer[a.name]) for a in self.args
                       if a.name not in self.positional and a.kind != "pin"
                       and (a.required or layer[a.name] != a.default))
        return Call(self.module, tuple(args), kwargs)
