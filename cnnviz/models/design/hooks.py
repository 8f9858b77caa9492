"""Designs as models elsewhere in cnnviz: the registry resolves `design:NAME.json` here (`model_info`,
registered as the "design:" prefix on import), and checkpoints record the design they were trained on
(`checkpoint_meta`), so a run opens with that design even after the file changed (`info_for_checkpoint`,
`create_for_checkpoint`); `checkpoints.load_into` refuses weights saved from a different design.
"""

from __future__ import annotations

from torch import nn

from .. import registry
from ..registry import ModelInfo
from .building import DesignNet
from .layers import LAYERS
from .parsing import Design, parse
from .storage import PREFIX, load_file

__all__ = ["model_info", "checkpoint_meta", "info_for_checkpoint", "create_for_checkpoint"]


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


registry.register_prefix(PREFIX, _resolve)


def checkpoint_meta(model: nn.Module) -> dict:
    """What a checkpoint of `model` records about its design ({} for registry models)."""
    if isinstance(model, DesignNet):
        return {"design": model.design.to_dict(), "design_hash": model.design_hash}
    return {}


def info_for_checkpoint(name: str, meta: dict) -> ModelInfo:
    """The model a checkpoint describes: its recorded design (validated) if it has one, else registry `name`."""
    recorded = meta.get("design") if isinstance(meta, dict) else None
    if recorded is not None:
        try:
            return model_info(name, parse(recorded))
        except ValueError as exc:
            raise ValueError(f"The checkpoint's recorded design is not valid: {exc}") from None
    return registry.info(name)


def create_for_checkpoint(name: str, meta: dict, num_classes: int, in_channels: int) -> nn.Module:
    """Build the model a checkpoint's metadata describes: its recorded design, else `registry.create(name)`."""
    if isinstance(meta, dict) and meta.get("design") is not None:
        return info_for_checkpoint(name, meta).builder(num_classes=num_classes, in_channels=in_channels)
    return registry.create(name, num_classes, in_channels)
