"""Models: the registry, the architectures, and their checkpoints.

`create(name, num_classes, in_channels)`, `names()`, `info(name)`. Modules:
- `registry`: one decorator, no if-chains; `lenet`, `resnet`, `airbench`, `classics`: the
  architectures.
- `checkpoints`: safetensors weights with cnnviz metadata, written atomically, loaded safely
  (`load_checkpoint`, `load_into`, `save_checkpoint`).
- `design/`: your own CNN as validated JSON, checked shape by shape (`check`), built (`from_design`) and
  written as plain PyTorch (`to_code`); saved designs are models named `design:NAME.json`. A package:
  the layer table, parsing, shapes, building, code generation, presets, storage (its docstring lists them).

Registered: the tutorial's `lenet5`, ResNets built from its ResBlk (`resnet_small`,
`resnet18_cifar`) and torchvision's classics (`alexnet`, `vgg11`, `vgg16`, `googlenet`,
`resnet18`, `resnet50`; random weights, cached ImageNet weights via `classics`).
"""

from . import lenet, resnet  # noqa: F401, I001  (registration side effects; this order is names() order)
from . import classics  # noqa: F401, E402
from . import airbench  # noqa: F401, E402  (speedrun net; owned by the training engine)
from .classics import PretrainedStatus, create_pretrained, imagenet_categories, pretrained_status
from .checkpoints import Checkpoint, CheckpointError, load_checkpoint, load_into, save_checkpoint
from .registry import ModelInfo, build_count, create, info, names, register
from . import design  # noqa: E402  (registers the "design:" prefix)
from .design import design_names, from_design, to_code

__all__ = ["Checkpoint", "CheckpointError", "load_checkpoint", "load_into", "save_checkpoint", "ModelInfo", "PretrainedStatus", "build_count", "create", "create_pretrained", "imagenet_categories",
           "design", "design_names", "from_design", "info", "names", "pretrained_status", "register", "to_code"]
