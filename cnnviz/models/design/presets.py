"""Preset designs (`PRESETS`, `preset`) and registry models read back as designs (`from_registry`,
`plain_stack_models`): a registry model that is a plain stack of the table's layers becomes a design,
layer for layer, read through the layer table (a module's attributes are PyTorch's argument names).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import registry
from ..resnet import ResBlk
from .layers import LAYERS
from .parsing import Design, parse
from .schema import CLASSES, is_int

__all__ = ["PRESETS", "PRESET_HELP", "preset", "from_registry", "plain_stack_models"]

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


# ---- registry models read as designs --------------------------------------------------------------
def _square(v: Any, what: str) -> int:
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise ValueError(f"a non-square {what} {tuple(v)}")
        v = v[0]
    if not is_int(v):
        raise ValueError(f"a {what} of {v!r}")
    return v


# settings of a table module that a design can't express: what to call such a module
_REFUSED = {
    nn.Conv2d: lambda m: (isinstance(m.padding, str) or m.padding_mode != "zeros")
    and f"a Conv2d with padding {m.padding!r} / {m.padding_mode}",
    nn.BatchNorm2d: lambda m: (m.momentum is None or not m.track_running_stats)
    and "a BatchNorm2d without running statistics",
    nn.MaxPool2d: lambda m: m.return_indices and "a MaxPool2d returning indices",
    nn.AvgPool2d: lambda m: m.divisor_override is not None and "an AvgPool2d with divisor_override",
    nn.Flatten: lambda m: (m.start_dim, m.end_dim) != (1, -1) and f"a Flatten({m.start_dim}, {m.end_dim})",
}
_WHAT = {"kernel_size": "kernel", "output_size": "output size"}  # for "a non-square kernel (3, 5)"


def _layer_from_module(m: nn.Module) -> dict | None:
    """The design layer of a module (None: a no-op such as nn.Identity); ValueError naming what doesn't fit."""
    if isinstance(m, nn.Identity):
        return None
    block = _block_args(m)
    if block is not None:
        return {"type": "resblock", **block}
    t = next((t for t in LAYERS.values() if t.module is not ResBlk and isinstance(m, t.module)), None)
    if t is None:
        cls = type(m).__name__
        raise ValueError(f"{'an' if cls[0] in 'AEIOU' else 'a'} {cls} layer, which designs don't offer")
    refused = _REFUSED.get(t.module, lambda _m: None)(m)
    if refused:
        raise ValueError(refused)
    layer: dict[str, Any] = {"type": t.type}
    for a in t.args:
        v = getattr(m, a.name, None)
        if a.kind == "pin":
            v = None  # inferred from what arrives
        elif a.name == "bias":
            v = m.bias is not None
        elif a.kind in ("int", "optint"):
            v = _square(v, _WHAT.get(a.name, a.name))
        elif a.kind == "float":
            v = float(v)
        layer[a.name] = v
    return layer


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
    for n in registry.names():
        if n not in _PLAIN:
            try:
                _PLAIN[n] = (from_registry(n), "")
            except ValueError as exc:
                _PLAIN[n] = (None, str(exc))
    return {n: d for n, (d, _) in _PLAIN.items() if d is not None}
