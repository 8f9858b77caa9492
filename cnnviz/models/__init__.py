"""Model registry: `create(name, num_classes, in_channels)`, `names()`, `info(name)`.

Registered: the tutorial's `lenet5`, ResNets built from its ResBlk (`resnet_small`,
`resnet18_cifar`) and torchvision's classics (`alexnet`, `vgg11`, `vgg16`, `googlenet`,
`resnet18`, `resnet50`; random weights, cached ImageNet weights via `classics`).
"""

from . import lenet, resnet  # noqa: F401, I001  (registration side effects; this order is names() order)
from . import classics  # noqa: F401, E402
from . import airbench  # noqa: F401, E402  (speedrun net; owned by the training engine)
from .classics import PretrainedStatus, create_pretrained, imagenet_categories, pretrained_status
from .registry import ModelInfo, build_count, create, info, names, register

__all__ = ["ModelInfo", "PretrainedStatus", "build_count", "create", "create_pretrained", "imagenet_categories",
           "info", "names", "pretrained_status", "register"]
