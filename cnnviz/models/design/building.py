"""A design as a module: `DesignNet` (its layers named conv1, pool1, ..., fc2, called in order) and
`from_design`. Each layer is the `Call` the shape check worked out, so the module is what was checked.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .shapes import require_ok

__all__ = ["DesignNet", "from_design"]


class DesignNet(nn.Module):
    """A design as a module: its layers as named children (conv1, pool1, ...), called in order."""

    def __init__(self, spec: Any, num_classes: int = 10, in_channels: int | None = None) -> None:
        super().__init__()
        analysis = require_ok(spec, num_classes, in_channels)
        for row in analysis.rows:
            self.add_module(row.name, row.call.build())
        self.design = analysis.design
        self.design_hash = analysis.design.hash

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = layer(x)
        return x


def from_design(spec: Any, num_classes: int = 10, in_channels: int | None = None) -> nn.Module:
    """Build a design (JSON text, dict or Design) as a `DesignNet`; ValueError with a one-line reason if it can't be."""
    return DesignNet(spec, num_classes, in_channels)
