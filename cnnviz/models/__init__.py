"""Model registry: `create(name, num_classes, in_channels)`, `names()`, `info(name)`."""

from . import lenet, resnet  # noqa: F401  (registration side effects)
from . import airbench  # noqa: F401, E402  (speedrun net; owned by the training engine)
from .registry import ModelInfo, create, info, names, register

__all__ = ["ModelInfo", "create", "info", "names", "register"]
