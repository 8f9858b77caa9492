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
    depth: int | None = None  # weight layers on the longest path, as the papers count them
    mean: tuple[float, ...] = (0.4914, 0.4822, 0.4465)  # default normalisation (CIFAR-10's own)
    std: tuple[float, ...] = (0.2470, 0.2435, 0.2616)
    torchvision_name: str | None = None  # set for models built by torchvision (pretrained weights)


_REGISTRY: dict[str, ModelInfo] = {}
_PREFIXES: dict[str, Callable[[str], ModelInfo]] = {}  # "design:" -> resolver (cnnviz.models.design)


def register(name: str, *, input_size: int, in_channels: int = 3, family: str = "", year: int | None = None,
             idea: str = "", description: str = "", tags: tuple[str, ...] = (), depth: int | None = None,
             mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
             torchvision_name: str | None = None):
    """Decorator: register `builder(num_classes, in_channels) -> nn.Module` under `name`."""

    def deco(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        extra = {k: v for k, v in (("mean", mean), ("std", std)) if v is not None}
        _REGISTRY[name] = ModelInfo(name, builder, input_size, in_channels, family, year, idea,
                                    description or (builder.__doc__ or "").strip().splitlines()[0], tags,
                                    depth=depth, torchvision_name=torchvision_name, **extra)
        return builder

    return deco


def register_prefix(prefix: str, resolve: Callable[[str], ModelInfo]) -> None:
    """Let `info`/`create` accept names starting with `prefix` (e.g. "design:x.json"): `resolve(name)`
    returns their ModelInfo or raises ValueError with a one-line reason."""
    _PREFIXES[prefix] = resolve


def names() -> list[str]:
    """All registered model names, in registration order."""
    return list(_REGISTRY)


def info(name: str) -> ModelInfo:
    """The `ModelInfo` of `name` (or of a prefixed name such as "design:x.json"); ValueError naming the known
    models otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        for prefix, resolve in _PREFIXES.items():
            if isinstance(name, str) and name.startswith(prefix):
                return resolve(name)
        raise ValueError(f"Unknown model {name!r}; known: {', '.join(_REGISTRY)}.") from None


def create(name: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Build model `name` with random weights for `num_classes` outputs and `in_channels` inputs."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    model = info(name).builder(num_classes=num_classes, in_channels=in_channels)
    first = next(model.parameters(), None)
    if first is None or not first.is_meta:  # a `meta` build (shapes only, no weights) costs nothing
        _BUILDS[name] = _BUILDS.get(name, 0) + 1
    return model


_BUILDS: dict[str, int] = {}


def build_count(name: str) -> int:
    """How many times `create(name)` built real weights in this process (lets tests check nothing big was built).

    Builds on the `meta` device (shapes only, no memory, no arithmetic) are not counted.
    """
    return _BUILDS.get(name, 0)
