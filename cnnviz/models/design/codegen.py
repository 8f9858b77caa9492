"""A design written as plain, readable PyTorch (`to_code`): a class with one attribute per layer, built from
the same `Call`s as `DesignNet`, so the two cannot drift and their state dicts are interchangeable.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from ..resnet import ResBlk
from .parsing import parse
from .schema import shape_text
from .shapes import require_ok

__all__ = ["class_name", "to_code"]


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
    analysis = require_ok(spec, num_classes, in_channels)
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
        lines.append(f"        {c.ljust(width)}  # -> {shape_text(r.out_shape)}")
    lines += ["", "    def forward(self, x: torch.Tensor) -> torch.Tensor:"]
    lines += [f"        x = self.{r.name}(x)" for r in analysis.rows]
    lines += ["        return x", ""]
    return "\n".join(lines)
