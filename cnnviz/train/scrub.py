"""Checkpoint scrubber: one layer's feature maps for one image, at each saved epoch of a run.

`scrub_layers(run)` lists the layers with spatial outputs (as the Feature maps page names
them, via `cnnviz.inspect.features.list_layers`); `maps_at(run, epoch, layer, image)` loads that
epoch's weights, feeds the image (prepared like the Feature maps page does: made MNIST-style by
`cnnviz.images.prepare_digit` for a run on handwritten digits) and returns the layer's output and
the model's prediction at that epoch. Pictures come from
`cnnviz.inspect.features.channel_grid`, so both pages draw maps the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
import torch
from PIL import Image

from ..inspect import features
from ..inspect.receptive import LayerInfo


@dataclass
class EpochMaps:
    """A layer's output for one image at one saved epoch, and the model's prediction then."""

    epoch: int
    layer: str
    maps: torch.Tensor          # (C, H, W) float32 on CPU
    top: list[tuple[int, str, float]]  # top-k (class index, name, probability)
    digit: bool = False         # the image was made MNIST-style (a run on handwritten digits)


def _meta_shape(meta: dict) -> tuple[int, int, int, int]:
    size = int(meta.get("input_size") or 32)
    return (1, int(meta.get("in_channels") or 3), size, size)


def scrub_layers(run) -> list[LayerInfo]:
    """`run`'s layers whose output is a spatial map (N, C, H, W) with H, W > 1, in forward order
    (containers such as nn.Sequential left out: their output is their last child's)."""
    from ..runs.model import load_model

    model, meta = load_model(run)
    return [li for li in features.list_layers(model, _meta_shape(meta))
            if len(li.shape) == 4 and li.shape[2] * li.shape[3] > 1 and li.type != "Sequential"]


def maps_at(run, epoch: int | None, layer: str, image: Image.Image) -> EpochMaps:
    """`layer`'s output for `image` with the weights saved at `epoch` of `run` (default: latest)."""
    from ..runs.model import load_model

    from ..augment.labels import is_digit_dataset
    from ..images.drawing import prepare_digit

    model, meta = load_model(run, epoch)
    _, c, size, _ = _meta_shape(meta)
    mean, std = meta.get("mean") or [0.5] * c, meta.get("std") or [0.5] * c
    digit = is_digit_dataset(str(meta.get("dataset") or ""), meta.get("classes"))
    if digit:
        x, _ = features.digit_input(prepare_digit(image).pixels, size, mean, std, c)
    else:
        x, _ = features.preprocess(image, size, mean, std, c)
    maps = features.feature_maps(model, x, [layer])[layer][0].float().cpu()
    top = features.predict(model, x, meta.get("classes"), k=3)
    return EpochMaps(epoch=int(epoch if epoch is not None else meta.get("epoch", 0)), layer=layer, maps=maps, top=top,
                     digit=digit)
