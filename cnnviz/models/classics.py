"""The classic ImageNet networks, built by torchvision, for the side-by-side comparison.

Random weights by default (`weights=None`). torchvision's pretrained ImageNet weights are
offered only when the file is already in the local torch hub cache; nothing here ever
downloads. `pretrained_status(name)` says whether they are cached and, if not, exactly
which file to put where (or the one line of Python that fetches it, for a machine online).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torchvision
from torch import nn

from .registry import info, register

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _first_conv_path(model: nn.Module) -> str:
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            return name
    raise ValueError("model has no Conv2d")


def _replace_first_conv(model: nn.Module, in_channels: int) -> nn.Module:
    """Swap the first Conv2d for one with `in_channels` inputs (same kernel, stride, padding, width)."""
    if in_channels == 3:
        return model
    path = _first_conv_path(model)
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    old: nn.Conv2d = getattr(parent, attr)
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,  # type: ignore[arg-type]
                    old.dilation, old.groups, bias=old.bias is not None)  # type: ignore[arg-type]
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    setattr(parent, attr, new)
    return model


def _tv(tv_name: str, **kwargs: Any) -> Callable[..., nn.Module]:
    def build(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        model = torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes, **kwargs)
        return _replace_first_conv(model, in_channels)
    return build


_CLASSICS: list[tuple[str, int, int, str, str, dict[str, Any]]] = [
    # name, year, depth, family, the idea it introduced (from the tutorial), extra torchvision kwargs
    ("alexnet", 2012, 8, "AlexNet", "ReLU, max pooling and Dropout at scale (8 layers, trained on GPUs).", {}),
    ("vgg11", 2014, 11, "VGG", "Only small 3x3 kernels, stacked; 1x1 convs change the channel count.", {}),
    ("vgg16", 2014, 16, "VGG", "Only small 3x3 kernels, stacked; 1x1 convs change the channel count.", {}),
    ("googlenet", 2014, 22, "GoogLeNet",
     "Inception blocks: parallel 1x1/3x3/5x5/pool branches, concatenated along channels.",
     {"aux_logits": False, "init_weights": False}),
    ("resnet18", 2015, 18, "ResNet", "Shortcut connections: each block learns F(x) and adds x back.", {}),
    ("resnet50", 2015, 50, "ResNet",
     "Shortcuts with 1x1-3x3-1x1 bottleneck blocks, so 50 layers stay affordable.", {}),
]

for _name, _year, _depth, _family, _idea, _kw in _CLASSICS:
    _builder = _tv(_name, **_kw)
    _builder.__doc__ = f"torchvision's {_family} ({_name}), random weights; expects 3x224x224 input."
    register(_name, input_size=224, family=_family, year=_year, depth=_depth, idea=_idea,
             mean=IMAGENET_MEAN, std=IMAGENET_STD, torchvision_name=_name, tags=("torchvision", "imagenet"))(_builder)


@dataclass(frozen=True)
class PretrainedStatus:
    """Whether torchvision's ImageNet weights for a model are in the local cache, and how to get them."""

    name: str
    cached: bool
    path: Path            # where torchvision looks for (and would save) the file
    filename: str
    url: str
    how_to: str           # plain instructions when not cached

    @property
    def folder(self) -> Path:
        return self.path.parent


def _default_weights(name: str) -> Any:
    tv_name = info(name).torchvision_name
    if not tv_name:
        raise ValueError(f"{name} is not a torchvision model; it has no torchvision weights.")
    return torchvision.models.get_model_weights(tv_name).DEFAULT


def checkpoint_dir() -> Path:
    """The folder torchvision reads cached weights from: torch.hub.get_dir()/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def pretrained_status(name: str) -> PretrainedStatus:
    """Is the default ImageNet weights file for `name` already cached locally? Never downloads."""
    w = _default_weights(name)
    filename = w.url.rsplit("/", 1)[-1]
    path = checkpoint_dir() / filename
    how = (f"Not in the local cache. Put `{filename}` (from {w.url}) in `{path.parent}`, or on a machine "
           f"online run: `python -c \"import torchvision; torchvision.models.{info(name).torchvision_name}"
           f"(weights='DEFAULT')\"` and copy the file over.")
    return PretrainedStatus(name, path.is_file(), path, filename, w.url, "" if path.is_file() else how)


def imagenet_categories(name: str) -> list[str]:
    """The 1000 ImageNet class names that come with torchvision's weights (no download needed)."""
    return list(_default_weights(name).meta["categories"])


def create_pretrained(name: str) -> nn.Module:
    """The model with torchvision's cached ImageNet weights (1000 classes), in eval mode.

    Loads the cached file with `torch.load(weights_only=True)`; raises FileNotFoundError with
    instructions when it is not cached (nothing is downloaded).
    """
    from .checkpoints import load_checkpoint, load_into

    st = pretrained_status(name)
    if not st.cached:
        raise FileNotFoundError(st.how_to)
    tv_name = info(name).torchvision_name
    kwargs = dict(_PRETRAINED_KWARGS.get(name, {}))
    model = torchvision.models.get_model(tv_name, weights=None, num_classes=1000, **kwargs)
    ckpt = load_checkpoint(st.path)
    # GoogLeNet's file also holds the auxiliary classifiers used only in training: drop them.
    ckpt.state_dict = {k: v for k, v in ckpt.state_dict.items() if not k.startswith(("aux1.", "aux2."))}
    return load_into(model, ckpt, name).eval()


# torchvision builds GoogLeNet with transform_input=True when it loads its weights (they expect
# the original Caffe normalisation); do the same.
_PRETRAINED_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": False, "transform_input": True},
}
