"""What the Datasets page shows about a loaded dataset: sample rows per class, class counts,
and how the computed mean/std compare with the Normalize values tutorials hard-code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image

from .datasets import ImageDataset


@dataclass(frozen=True)
class NormalizeReference:
    """A Normalize(mean, std) seen in tutorials, with where it comes from."""

    label: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    remark: str = ""


REFERENCES: list[NormalizeReference] = [
    NormalizeReference("CIFAR-10, as tutorials hard-code it", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                       "mean and std over all training pixels"),
    NormalizeReference("CIFAR-10, the other common std", (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010),
                       "the average of per-image stds: smaller than the std over all pixels, so it "
                       "over-scales the inputs a little"),
    NormalizeReference("the tutorial notes' training loop", (0.485, 0.456, 0.456), (0.229, 0.224, 0.225),
                       "ImageNet's values with a slip: the third mean should be 0.406"),
    NormalizeReference("ImageNet (for pretrained torchvision models)", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                       "right for ImageNet-pretrained weights, not the statistics of this dataset"),
    NormalizeReference("MNIST, as tutorials hard-code it", (0.1307,), (0.3081,),
                       "the notes' commented-out Normalize((0.1307,), (0.3081,))"),
    NormalizeReference("Fashion-MNIST, as tutorials hard-code it", (0.2860,), (0.3530,)),
]
MATCH_TOLERANCE = 0.005  # largest per-channel difference still called "matches"


@dataclass(frozen=True)
class NormalizeNote:
    reference: NormalizeReference
    max_mean_diff: float
    max_std_diff: float

    @property
    def matches(self) -> bool:
        return max(self.max_mean_diff, self.max_std_diff) <= MATCH_TOLERANCE


def normalize_notes(mean: tuple[float, ...], std: tuple[float, ...]) -> list[NormalizeNote]:
    """Each reference with the same channel count, and how far it is from the computed values."""
    out = []
    for ref in REFERENCES:
        if len(ref.mean) != len(mean):
            continue
        dm = max(abs(a - b) for a, b in zip(ref.mean, mean))
        ds = max(abs(a - b) for a, b in zip(ref.std, std))
        out.append(NormalizeNote(ref, round(dm, 4), round(ds, 4)))
    return out


def normalize_code(mean: tuple[float, ...], std: tuple[float, ...]) -> str:
    """The torchvision line that normalises with the computed statistics."""
    def fmt(v: tuple[float, ...]) -> str:
        return "[" + ", ".join(f"{x:.4f}" for x in v) + "]"
    return f"v2.Normalize(mean={fmt(mean)}, std={fmt(std)})"


@dataclass
class SampleRow:
    """A strip of sample images of one class."""

    label: int
    name: str
    count: int                 # images of this class in the split
    indices: list[int]         # which images are shown
    image: Image.Image | None  # the strip (None when the class has no images in this split)


def _strip(images: torch.Tensor, gap: int, scale: int) -> Image.Image:
    """uint8 (k, C, H, W) -> one PIL image: the k images side by side, nearest-upscaled."""
    k, c, h, w = images.shape
    arr = images.permute(0, 2, 3, 1).numpy()
    if scale > 1:
        arr = arr.repeat(scale, axis=1).repeat(scale, axis=2)
    hh, ww = h * scale, w * scale
    canvas = np.full((hh, k * ww + (k - 1) * gap, c), 255, dtype=np.uint8)
    for i in range(k):
        canvas[:, i * (ww + gap):i * (ww + gap) + ww] = arr[i]
    return Image.fromarray(canvas[..., 0] if c == 1 else canvas, "L" if c == 1 else "RGB")


def sample_rows(ds: ImageDataset, per_class: int = 8, seed: int = 0, max_classes: int = 20,
                min_height: int = 64) -> list[SampleRow]:
    """Up to `per_class` random images (fixed seed) of each of the first `max_classes` classes."""
    counts = ds.class_counts()
    g = torch.Generator().manual_seed(seed)
    h = ds.size[0]
    scale = max(1, min(4, math.ceil(min_height / max(h, 1))))
    rows = []
    for label, name in enumerate(ds.classes[:max_classes]):
        members = torch.nonzero(ds.labels == label).flatten()
        if len(members) == 0:
            rows.append(SampleRow(label, name, 0, [], None))
            continue
        pick = members[torch.randperm(len(members), generator=g)[:per_class]].sort().values
        rows.append(SampleRow(label, name, counts[label], pick.tolist(), _strip(ds.images[pick], 2, scale)))
    return rows


def class_count_figure(classes: list[str], counts: list[int], split: str) -> go.Figure:
    """Bar chart of images per class."""
    fig = go.Figure(go.Bar(x=list(classes), y=list(counts), marker_color="#4C78A8",
                           hovertemplate="%{x}: %{y:,} images<extra></extra>"))
    fig.update_layout(title=f"Images per class ({split} split, {sum(counts):,} in all)",
                      xaxis_title="class", yaxis_title="images", height=320,
                      margin=dict(l=10, r=10, t=40, b=10), yaxis=dict(rangemode="tozero"))
    return fig


def channel_names(channels: int) -> list[str]:
    return ["grey"] if channels == 1 else ["red", "green", "blue"][:channels] + \
        [f"channel {i}" for i in range(3, channels)]
