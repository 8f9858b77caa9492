"""The model registry: one decorator, no if-chains."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model is and what input it expects."""

    name: str
    builder: Callable[..., nn.Module]
    input_size: int  # expected square input side in pixels
    in_channels: int = 3
    family: str = ""
    year: int | None = None
    idea: str = ""
    description: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


_REGISTRY: dict[str, ModelInfo] = {}


def register(name: str, *, input_size: int, in_channels: int = 3, family: str = "", year: int | None = None,
             idea: str = "", description: str = "", tags: tuple[str, ...] = ()):
    """Decorator: register `builder(num_classes, in_channels) -> nn.Module` under `name`."""

    def deco(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelInfo(name, builder, input_size, in_channels, family, year, idea,
                                    description or (builder.__doc__ or "").strip().splitlines()[0], tags)
        return builder

    return deco


def names() -> list[str]:
    """All registered model names, in registration order."""
    return list(_REGISTRY)


def info(name: str) -> ModelInfo:
    """The `ModelInfo` of `name`; ValueError naming the known models otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}; known: {', '.join(_REGISTRY)}.") from None


def create(name: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Build model `name` with random weights for `num_classes` outputs and `in_channels` inputs."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    return info(name).builder(num_classes=num_classes, in_channels=in_channels)
