"""Get a model ready to look inside: random weights, a checkpoint (file, bytes, a run's), or torchvision's.

Every loader returns a `Loaded`: the model in eval mode plus what the pages need to feed it
(input size, channels, normalisation) and to name its outputs (class names). Checkpoints
go through `cnnviz.models.checkpoints` (safetensors or `torch.load(weights_only=True)`), so a
hostile file is refused before anything in it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import limits, models
from ..models.checkpoints import (Checkpoint, CheckpointError, build_bytes, load_checkpoint, load_into, meta_int,
                                  nonfinite_keys)

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "assets" / "checkpoints"


@dataclass
class Loaded:
    """A model ready for feature maps, predictions and Grad-CAM."""

    model: nn.Module
    name: str                      # registry name
    trained: bool                  # False for random weights (predictions then mean nothing)
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int
    in_channels: int
    source: str                    # one line for captions: where the weights came from
    meta: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


SHIPPED_DATASETS = {"cifar10": "CIFAR-10", "digits": "digits"}  # dataset tag in the file name -> label


def shipped_checkpoints(folder: Path | None = None, dataset: str = "cifar10") -> dict[str, Path]:
    """{model name: path} of the trained checkpoints shipped in assets/checkpoints for `dataset`
    (files named `<model>-<dataset>.safetensors`; may be empty)."""
    folder = folder or SHIPPED_DIR
    suffix = f"-{dataset}.safetensors"
    out: dict[str, Path] = {}
    for p in sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else []:
        name = p.name[: -len(suffix)]
        if name in models.names():
            out[name] = p
    return out


def shipped_for(name: str, folder: Path | None = None) -> dict[str, Path]:
    """{dataset: path} of every shipped checkpoint of model `name`, in SHIPPED_DATASETS order."""
    out = {}
    for dataset in SHIPPED_DATASETS:
        path = shipped_checkpoints(folder, dataset).get(name)
        if path is not None:
            out[dataset] = path
    return out


def reads_digits(loaded: "Loaded") -> bool:
    """True for trained weights whose classes are the ten digits (the `digits` set, MNIST): such a
    model should read an input made the way MNIST was made (`cnnviz.images.prepare_digit`)."""
    from ..augment.labels import is_digit_dataset

    return loaded.trained and is_digit_dataset(str(loaded.meta.get("dataset") or ""), loaded.classes)


def dataset_label(spec: str) -> str:
    """A short name for a dataset spec: 'folder:../data/cifar10-jpeg' -> 'cifar10-jpeg', 'cifar10' stays."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("folder", "zip"):
        return Path(rest.rstrip("/\\")).name or spec
    return spec


def random_model(name: str, seed: int = 0, num_classes: int = 10) -> Loaded:
    """`name` with seeded random weights (eval mode)."""
    info = models.info(name)
    need = build_bytes(lambda: models.create(name, num_classes=num_classes, in_channels=info.in_channels))
    limits.check_budget(f"building {name[:80]} with random weights", need)
    torch.manual_seed(seed)
    model = models.create(name, num_classes=num_classes, in_channels=info.in_channels).eval()
    return Loaded(model, name, False, [f"class {i}" for i in range(num_classes)], info.mean, info.std,
                  info.input_size, info.in_channels, f"random weights (seed {seed})")


def torchvision_model(name: str) -> Loaded:
    """`name` with torchvision's ImageNet weights from the local cache; FileNotFoundError (with how-to) if absent."""
    info = models.info(name)
    model = models.create_pretrained(name)
    return Loaded(model, name, True, models.imagenet_categories(name), info.mean, info.std, info.input_size, 3,
                  f"torchvision ImageNet weights ({models.pretrained_status(name).filename})",
                  {"model": name, "dataset": "ImageNet-1k"})


def _infer_shapes(name: str, ckpt: Checkpoint, num_classes: int, in_channels: int) -> tuple[int, int]:
    """Read the head's output count and the first conv's input channels off the state dict."""
    with torch.device("meta"):
        probe = models.create(name, num_classes=num_classes, in_channels=in_channels)
    own = probe.state_dict()
    weights4 = [k for k, v in own.items() if v.dim() == 4]
    weights2 = [k for k, v in own.items() if v.dim() == 2]
    sd = ckpt.state_dict
    if weights4 and weights4[0] in sd and sd[weights4[0]].dim() == 4:
        in_channels = int(sd[weights4[0]].shape[1])
    if weights2 and weights2[-1] in sd and sd[weights2[-1]].dim() == 2:
        num_classes = int(sd[weights2[-1]].shape[0])
    return num_classes, in_channels


def from_checkpoint(source: bytes | str | Path, fallback_model: str, label: str = "checkpoint") -> Loaded:
    """Load a checkpoint (path or bytes). The model is the one its metadata names, else `fallback_model`.

    Raises CheckpointError with a readable message (refused pickle, garbage, wrong architecture
    naming the mismatched keys and shapes).
    """
    ckpt = load_checkpoint(source)  # sizes in the metadata and zero-size tensors are bounded there
    meta = ckpt.meta or {}
    name = str(meta.get("model") or fallback_model)[:300]
    if name not in models.names() and not models.design.is_design_name(name) and meta.get("design") is None:
        raise CheckpointError(f"The checkpoint is for a model called {name[:80]!r}, which cnnviz does not know "
                              f"(known: {', '.join(models.names())}).")
    if models.design.is_design_name(name) and meta.get("design") is None:
        models.design.resolve_path(name, inside_only=True)  # a file named by a file: only in the designs folder
    info = models.design.info_for_checkpoint(name, meta)  # a design: the one the weights recorded
    classes = [str(c) for c in meta.get("classes") or []]
    num_classes = meta_int(meta, "num_classes") or len(classes) or 10
    in_channels = meta_int(meta, "in_channels") or info.in_channels
    if not meta.get("num_classes") or not meta.get("in_channels"):
        num_classes, in_channels = _infer_shapes(name, ckpt, num_classes, in_channels)
    size = meta_int(meta, "input_size") or info.input_size
    limits.check_bounds(num_classes, in_channels, size, "the checkpoint")
    need = build_bytes(lambda: models.design.create_for_checkpoint(name, meta, num_classes, in_channels))
    limits.check_budget(f"building {name[:80]} with {num_classes:,} classes and {in_channels} input channels", need)
    label_name = name if meta.get("model") else f"{name} (the file names no model, so it was tried as the chosen one)"
    model = load_into(models.design.create_for_checkpoint(name, meta, num_classes, in_channels), ckpt, label_name)
    model.eval()
    warnings = []
    bad = nonfinite_keys(ckpt.state_dict)
    if bad:
        warnings.append(f"{len(bad)} tensor(s) hold NaN or infinity (e.g. {bad[0]}): the run diverged; "
                        "the pictures will be meaningless.")
    if not classes:
        classes = [f"class {i}" for i in range(num_classes)]
        warnings.append("The file names no classes; showing class numbers.")
    mean = tuple(float(v) for v in meta.get("mean") or info.mean)[:in_channels]
    std = tuple(float(v) for v in meta.get("std") or info.std)[:in_channels]
    if not meta.get("mean") or not meta.get("std"):
        warnings.append(f"The file gives no normalisation; using {name}'s default mean/std.")
    epoch = f", epoch {meta['epoch']}" if meta.get("epoch") is not None else ""
    data = f" on {dataset_label(str(meta['dataset']))}" if meta.get("dataset") else ""
    return Loaded(model, name, True, classes, mean, std, size, in_channels, f"{label}{data}{epoch}", meta, warnings)
