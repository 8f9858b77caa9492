"""The layer table: every layer type a design offers, declared once (`LAYERS`).

Each entry gives the type's arguments (kinds, defaults, bounds, help), its module (built by
`Call.build`, written by `Call.code`), what it takes positionally, and its shape rule: a small function
of what arrives (`Ctx`) returning a `Step`, using the size formulas of `cnnviz.ops` (`conv.output_size`,
`pool.output_size`), or raising `Stop` with the numbers and the fixes.
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from ...ops import conv, pool
from ..resnet import ResBlk
from .schema import (CLASSES, MAX_CHANNELS, MAX_FEATURES, REQUIRED, Arg, Ctx, Fix, LayerType, Step, Stop, Sym,
                     shape_text)


# ---- shape rules ----------------------------------------------------------------------------------
def _same(x: Ctx) -> Step:
    return x.same()


def _conv2d(x: Ctx) -> Step:
    c, h, w = x.need_map()
    x.pin("in_channels", c, "input channels")
    out = x.width(x.layer["out_channels"])
    k, s, p, d, g = (x.layer[n] for n in ("kernel_size", "stride", "padding", "dilation", "groups"))
    if c % g or out.value % g:
        raise Stop(f"{x.label}: groups = {g} must divide both its input channels ({c:,}) and out_channels "
                   f"({out.value:,}).")
    span = d * (k - 1) + 1
    if h + 2 * p < span:
        dil = f" (dilation {d})" if d > 1 else ""
        raise Stop(f"{x.label}: the {k}x{k} kernel{dil} spans {span} px but its input is only {h}x{w}"
                   f"{f' ({h + 2 * p} px with padding {p})' if p else ''}: use a smaller kernel, more padding "
                   "or a larger input.")
    ho, wo = (conv.output_size(n, k, s, p, d) for n in (h, w))
    params = out.value * (c // g) * k * k + (out.value if x.layer["bias"] else 0)
    flops = 2 * out.value * (c // g) * k * k * ho * wo
    return Step((out.value, ho, wo), out, params, flops)


def _batchnorm2d(x: Ctx) -> Step:
    c, _, _ = x.need_map()
    x.pin("num_features", c, "channels")
    return Step(x.shape, x.chan, 2 * c if x.layer["affine"] else 0)


def _pool2d(x: Ctx) -> Step:
    c, h, w = x.need_map()
    k, p = x.layer["kernel_size"], x.layer["padding"]
    s = x.layer["stride"] or k
    d = x.layer.get("dilation", 1)
    if p > k // 2:
        raise Stop(f"{x.label}: padding {p} is more than half the {k}x{k} window (PyTorch allows at most {k // 2}).",
                   (Fix(f"Set padding to {k // 2}", x.design.replace_layer(x.i, padding=k // 2)),))
    ho, wo = (pool.output_size(n, k, s, p, d, x.layer["ceil_mode"]) for n in (h, w))
    if ho < 1 or wo < 1:
        span = d * (k - 1) + 1
        raise Stop(f"{x.label}: the {k}x{k} window{f' (dilation {d}, {span} px)' if d > 1 else ''} does not fit "
                   f"its {h}x{w} input{f' ({h + 2 * p} px with padding {p})' if p else ''}: use a smaller "
                   "window or a larger input.")
    return Step((c, ho, wo), x.chan)


def _adaptive(x: Ctx) -> Step:
    c, _, _ = x.need_map()
    o = x.layer["output_size"]
    return Step((c, o, o), x.chan)


def _flatten(x: Ctx) -> Step:
    if not x.spatial:
        return x.same()
    c, h, w = x.shape
    code = x.chan.code if h * w == 1 else f"{x.chan.code} * {h} * {w}"
    return Step((c * h * w,), Sym(c * h * w, code), flat_from=x.shape)


def _linear(x: Ctx) -> Step:
    if x.spatial:
        raise Stop(f"{x.label} needs a flat vector but receives a {shape_text(x.shape)} map: insert a Flatten "
                   "before it.",
                   (Fix(f"Insert a Flatten before layer {x.i + 1}", x.design.insert(x.i, new_layer("flatten"))),))
    n = x.shape[0]
    want = x.layer["in_features"]
    if want is not None and want != n:
        made = f" = {shape_text(x.flat_from)}" if x.flat_from else ""
        fixes = [Fix(f"Set in_features to {n:,}", x.design.replace_layer(x.i, in_features=n))]
        size = x.input_size_for(want)
        why = ""
        inp = x.design.input
        if size is not None and size != inp[1]:
            why = f": the input is {inp[1]}x{inp[2]}, not {size}x{size}"
            fixes.append(Fix(f"Set the input to {size}x{size}", replace(x.design, input=(inp[0], size, size))))
        raise Stop(f"{x.label} expects {want:,} inputs but receives {n:,}{made}{why}.", tuple(fixes))
    out = x.width(x.layer["out_features"])
    params = n * out.value + (out.value if x.layer["bias"] else 0)
    return Step((out.value,), out, params, 2 * n * out.value)


def _resblock(x: Ctx) -> Step:
    c, h, w = x.need_map()
    out = x.width(x.layer["out_channels"])
    s = x.layer["stride"]
    ho, wo = (conv.output_size(n, 3, s, 1) for n in (h, w))  # its first conv: 3x3, padding 1
    o = out.value
    shortcut = o != c or s != 1
    params = 9 * c * o + 9 * o * o + 4 * o + ((c * o + 2 * o) if shortcut else 0)
    flops = 2 * ho * wo * (9 * c * o + 9 * o * o + (c * o if shortcut else 0))
    return Step((o, ho, wo), out, params, flops)


# ---- the table ------------------------------------------------------------------------------------
def _size(name: str, default, lo: int, hi: int, help: str, main: bool = True) -> Arg:
    return Arg(name, "int", default, lo, hi, help=help, main=main)


_PIN_HELP = "Leave empty to infer it from what arrives; a number is checked against it."
_POOL_STRIDE = Arg("stride", "optint", None, 1, 64,
                   help="Step between windows; empty = kernel_size (PyTorch's default).")
_CEIL = Arg("ceil_mode", "bool", False, help="Round the output size up (a last, partial window).", main=False)

LAYERS: dict[str, LayerType] = {t.type: t for t in [
    LayerType("conv2d", nn.Conv2d, "conv", "A 2-D convolution: out_channels kernels of kernel_size x kernel_size, "
              "slid with stride over the zero-padded input.", _conv2d, (
                  Arg("in_channels", "pin", None, 1, MAX_CHANNELS, help=_PIN_HELP, main=False),
                  Arg("out_channels", "width", REQUIRED, 1, MAX_CHANNELS,
                      help="Output channels: a number, or 'classes' for the dataset's class count."),
                  _size("kernel_size", REQUIRED, 1, 64, "Kernel side in pixels."),
                  _size("stride", 1, 1, 64, "Step between kernel positions."),
                  _size("padding", 0, 0, 64, "Zeros added on every side."),
                  _size("dilation", 1, 1, 32, "Spacing between kernel taps.", main=False),
                  Arg("groups", "int", 1, 1, MAX_CHANNELS, help="Channel groups (must divide in and out channels).",
                      main=False),
                  Arg("bias", "bool", True, help="Add a learned bias per output channel.", main=False),
              ), ("in", "out_channels"), {"out_channels": 16, "kernel_size": 3, "padding": 1}),
    LayerType("batchnorm2d", nn.BatchNorm2d, "bn", "Normalises each channel over the batch, then scales and shifts.",
              _batchnorm2d, (
                  Arg("num_features", "pin", None, 1, MAX_CHANNELS, help=_PIN_HELP, main=False),
                  Arg("eps", "float", 1e-5, 1e-12, 1.0, help="Added to the variance.", main=False),
                  Arg("momentum", "float", 0.1, 0.0, 1.0, help="Running-statistics update rate.", main=False),
                  Arg("affine", "bool", True, help="Learn a scale (gamma) and shift (beta) per channel.", main=False),
              ), ("in",)),
    LayerType("relu", nn.ReLU, "relu", "max(0, x), element-wise.", _same),
    LayerType("leakyrelu", nn.LeakyReLU, "lrelu", "x for x > 0, negative_slope * x otherwise.", _same, (
        Arg("negative_slope", "float", 0.01, 0.0, 1.0, help="Slope for negative inputs."),)),
    LayerType("gelu", nn.GELU, "gelu", "x * Phi(x): a smooth ReLU.", _same, (
        Arg("approximate", "choice", "none", choices=("none", "tanh"), help="'tanh': the faster approximation."),)),
    LayerType("silu", nn.SiLU, "silu", "x * sigmoid(x) (Swish).", _same),
    LayerType("maxpool2d", nn.MaxPool2d, "pool", "The largest value of each kernel_size x kernel_size window.",
              _pool2d, (
                  _size("kernel_size", REQUIRED, 1, 64, "Window side in pixels."),
                  _POOL_STRIDE,
                  _size("padding", 0, 0, 32, "Padding on every side (at most half the kernel)."),
                  _size("dilation", 1, 1, 32, "Spacing between window taps.", main=False),
                  _CEIL,
              ), new={"kernel_size": 2}),
    LayerType("avgpool2d", nn.AvgPool2d, "avgpool", "The mean of each kernel_size x kernel_size window.", _pool2d, (
        _size("kernel_size", REQUIRED, 1, 64, "Window side in pixels."),
        _POOL_STRIDE,
        _size("padding", 0, 0, 32, "Padding on every side (at most half the kernel)."),
        _CEIL,
        Arg("count_include_pad", "bool", True, help="Count padded zeros in the mean.", main=False),
    ), new={"kernel_size": 2}),
    LayerType("adaptiveavgpool2d", nn.AdaptiveAvgPool2d, "gap", "Averages to a fixed output_size x output_size map, "
              "whatever the input size (1 = global average pooling).", _adaptive, (
                  _size("output_size", 1, 1, 64, "Output side in pixels."),), ("output_size",)),
    LayerType("dropout", nn.Dropout, "drop", "Zeroes each value with probability p while training.", _same, (
        Arg("p", "float", 0.5, 0.0, 1.0, help="Probability of zeroing a value."),)),
    LayerType("flatten", nn.Flatten, "flatten", "C x H x W -> one vector of C*H*W values.", _flatten),
    LayerType("linear", nn.Linear, "fc", "Fully connected: every output is a weighted sum of every input.", _linear, (
        Arg("in_features", "pin", None, 1, 10**8, help=_PIN_HELP),
        Arg("out_features", "width", REQUIRED, 1, MAX_FEATURES,
            help="Outputs: a number, or 'classes' for the dataset's class count."),
        Arg("bias", "bool", True, help="Add a learned bias per output.", main=False),
    ), ("in", "out_features"), {"out_features": CLASSES}),
    LayerType("resblock", ResBlk, "block", "The tutorial's residual block: conv3x3-BN-ReLU-conv3x3-BN plus the input "
              "(through a 1x1 conv + BN when the shape changes), then ReLU.", _resblock, (
                  Arg("out_channels", "width", REQUIRED, 1, MAX_CHANNELS, help="Output channels."),
                  _size("stride", 1, 1, 4, "Stride of the first conv (2 halves the size)."),
              ), ("in", "out_channels"), {"out_channels": 32}),
]}


def new_layer(type_: str) -> dict:
    """A fresh layer of `type_` with every argument filled (the page's 'Add' button)."""
    t = LAYERS[type_]
    return {"type": type_, **{a.name: t.new.get(a.name, None if a.required else a.default) for a in t.args}}
