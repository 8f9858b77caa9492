"""Which test images drive a channel hardest (and least): one batched pass, within a memory budget.

`channel_scores(model, images, layer, ...)` runs every image (uint8 (N, C, H, W), normalised with
the model's mean/std and resized to its input size) through the model up to `layer`, and keeps one
number per image and channel: the channel's largest activation anywhere in the image. That
(N, channels) table answers "top-k for any channel" at once; `Scores.top(c, k)` and `.bottom(c, k)`
read it, and `channel_maps` recomputes the activation maps of just those images for the overlays.

Memory: the batch size is chosen from the layer shapes (the largest activation up to `layer`,
times three for the input, the output and the one in flight) so that a batch stays under
`budget_mb` (env CNNVIZ_SERVER_BUDGET_MB, default 1024). A layer whose single image would not fit
is refused with one line. The model is switched to the channels_last layout (the same weights,
2-3x faster convolutions on a CPU), and on a CPU busier than its cores the pass runs on one
thread (`cpu_threads_for_load`). `cached_scores` keeps the table on disk under $CNNVIZ_CACHE/microscope,
keyed by the weights, the layer and the dataset, so a second look costs a file read.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from . import features

MAX_BATCH = 256  # larger batches are no faster on a CPU (cache), only bigger
Progress = Callable[[int, int], None]


@contextlib.contextmanager
def cpu_threads_for_load(device: torch.device) -> Iterator[int]:
    """On a CPU busier than its cores (load average over the core count), run torch on one thread for the
    duration: threads then mostly wait on each other (measured 3.3 s on 1 thread vs 11-15 s on 2 for
    LeNet5 over 10,000 images at load 8 on 2 cores). Yields the thread count used; restores it after."""
    before = torch.get_num_threads()
    busy = False
    if device.type == "cpu" and hasattr(os, "getloadavg"):
        busy = os.getloadavg()[0] > (os.cpu_count() or 1)
    if busy:
        torch.set_num_threads(1)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def budget_mb() -> float:
    """The server's memory budget for one batched pass, from CNNVIZ_SERVER_BUDGET_MB (default 1024)."""
    try:
        v = float(os.environ.get("CNNVIZ_SERVER_BUDGET_MB") or 1024)
    except ValueError:
        v = 1024.0
    return v if v > 0 else 1024.0


def _prod(shape: Sequence[int]) -> int:
    return int(math.prod(int(s) for s in shape))


def bytes_per_image(model: nn.Module, layer: str, input_shape: tuple[int, int, int]) -> int:
    """Estimated float32 bytes one image needs on the way to `layer`: 3x the largest activation up to
    and including it (input, output, one in flight), from the layer shapes (a meta-device trace)."""
    layers = features.list_layers(model, input_shape)
    names = [li.name for li in layers]
    if layer not in names:
        raise ValueError(f"No layer named {layer!r} in {type(model).__name__}.")
    upto = layers[: names.index(layer) + 1]
    biggest = max([_prod(input_shape)] + [_prod(li.shape[1:]) for li in upto if li.shape])
    return 3 * 4 * biggest


def batch_size_for(per_image: int, budget: float | None = None) -> int:
    """Images per batch under `budget` MB; ValueError (one line) when one image does not fit."""
    budget = budget_mb() if budget is None else budget
    limit = int(budget * 2**20)
    if per_image > limit:
        raise ValueError(f"One image needs about {per_image / 2**20:,.0f} MB of activations on the way to this "
                         f"layer, over the server's budget of {budget:,.0f} MB (CNNVIZ_SERVER_BUDGET_MB): "
                         "pick an earlier layer or a smaller input.")
    return max(1, min(MAX_BATCH, limit // max(1, per_image)))


def prepare(images_u8: torch.Tensor, mean: Sequence[float], std: Sequence[float], size: int,
            in_channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> the model's float input: channels matched, resized to `size`, normalised."""
    x = images_u8.float() / 255.0
    if x.shape[1] != in_channels:
        if in_channels == 1:
            x = x.mean(dim=1, keepdim=True)
        elif x.shape[1] == 1:
            x = x.expand(-1, in_channels, -1, -1)
        else:
            raise ValueError(f"The images have {x.shape[1]} channels; the model reads {in_channels}.")
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    m = torch.tensor(list(mean)[:in_channels], dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(list(std)[:in_channels], dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


@dataclass
class Scores:
    """The largest activation of each channel of `layer` in each image: (N, channels) float32."""

    layer: str
    values: torch.Tensor
    batch: int = 0
    seconds: float = 0.0
    cached: bool = False
    note: str = ""
    threads: int = 0          # torch CPU threads the pass ran on (see cpu_threads_for_load)

    @property
    def channels(self) -> int:
        return int(self.values.shape[1])

    def _check(self, channel: int) -> None:
        if not 0 <= channel < self.channels:
            raise ValueError(f"Channel {channel} does not exist: {self.layer} has {self.channels} (0-{self.channels - 1}).")

    def top(self, channel: int, k: int = 9) -> list[tuple[int, float]]:
        """(image index, score) of the k images that drive `channel` hardest, strongest first."""
        self._check(channel)
        v = self.values[:, channel]
        s, i = torch.topk(v, min(k, v.numel()))
        return [(int(a), float(b)) for a, b in zip(i, s)]

    def bottom(self, channel: int, k: int = 9) -> list[tuple[int, float]]:
        """(image index, score) of the k images that drive `channel` least, weakest first."""
        self._check(channel)
        v = self.values[:, channel]
        s, i = torch.topk(v, min(k, v.numel()), largest=False)
        return [(int(a), float(b)) for a, b in zip(i, s)]


def channel_scores(model: nn.Module, images_u8: torch.Tensor, layer: str, *, mean: Sequence[float],
                   std: Sequence[float], size: int, in_channels: int, budget: float | None = None,
                   progress: Progress | None = None) -> Scores:
    """Max activation per (image, channel) of `layer` over all `images_u8`, in bounded batches."""
    if images_u8.dim() != 4 or images_u8.shape[0] == 0:
        raise ValueError(f"Expected a non-empty batch of images (N, C, H, W), got shape {tuple(images_u8.shape)}.")
    shape = (in_channels, size, size)
    per = bytes_per_image(model, layer, shape)
    bs = batch_size_for(per, budget)
    li = {x.name: x for x in features.list_layers(model, shape)}[layer]
    if len(li.shape) not in (2, 4):
        raise ValueError(f"{layer} outputs shape {li.shape}: no channels to rank images by.")
    n = int(images_u8.shape[0])
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    model.to(memory_format=torch.channels_last)  # 2-3x faster convolutions on CPU; same values
    out = torch.empty(n, int(li.shape[1]), dtype=torch.float32)
    t0 = time.perf_counter()
    with cpu_threads_for_load(device) as threads:
        for start in range(0, n, bs):
            x = prepare(images_u8[start:start + bs], mean, std, size, in_channels).to(device)
            x = x.contiguous(memory_format=torch.channels_last)
            a = features.feature_maps(model, x, [layer])[layer].float()
            out[start:start + bs] = (a.flatten(2).amax(dim=2) if a.dim() == 4 else a).cpu()
            if progress is not None:
                progress(min(n, start + bs), n)
    return Scores(layer, out, bs, time.perf_counter() - t0, threads=threads)


def channel_maps(model: nn.Module, images_u8: torch.Tensor, indices: Sequence[int], layer: str, channel: int, *,
                 mean: Sequence[float], std: Sequence[float], size: int, in_channels: int) -> torch.Tensor:
    """The (len(indices), H, W) activation maps of `channel` for a few images (for overlays)."""
    x = prepare(images_u8[list(indices)], mean, std, size, in_channels)
    a = features.feature_maps(model, x, [layer])[layer].float().cpu()
    if a.dim() != 4:
        return a[:, channel].view(-1, 1, 1)
    return a[:, channel]


def weights_digest(model: nn.Module) -> str:
    """A content hash of the model's weights and buffers (names, shapes, bytes)."""
    h = hashlib.blake2b(digest_size=12)
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_dir() -> Path:
    """$CNNVIZ_CACHE/microscope (CNNVIZ_CACHE defaults to $CNNVIZ_DATA/.cache, CNNVIZ_DATA to ./data)."""
    base = os.environ.get("CNNVIZ_CACHE") or os.path.join(os.environ.get("CNNVIZ_DATA") or "data", ".cache")
    return Path(base) / "microscope"


def cached_scores(model: nn.Module, images_u8: torch.Tensor, layer: str, *, dataset_key: str,
                  mean: Sequence[float], std: Sequence[float], size: int, in_channels: int,
                  weights_key: str | None = None, budget: float | None = None,
                  progress: Progress | None = None) -> Scores:
    """`channel_scores`, kept on disk (safetensors, written atomically) per weights, layer and dataset."""
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    from ..models.checkpoints import atomic_write_bytes

    wk = weights_key or weights_digest(model)
    ident = f"{wk}|{layer}|{dataset_key}|{int(images_u8.shape[0])}|{size}|{in_channels}|{tuple(mean)}|{tuple(std)}"
    path = cache_dir() / (hashlib.blake2b(ident.encode(), digest_size=16).hexdigest() + ".safetensors")
    t0 = time.perf_counter()
    if path.is_file():
        try:
            values = st_load(path.read_bytes())["scores"]
            if values.shape[0] == images_u8.shape[0]:
                return Scores(layer, values, 0, time.perf_counter() - t0, cached=True)
        except (OSError, KeyError, RuntimeError, ValueError):
            path.unlink(missing_ok=True)  # a damaged cache file: recompute it
    sc = channel_scores(model, images_u8, layer, mean=mean, std=std, size=size, in_channels=in_channels,
                        budget=budget, progress=progress)
    try:
        atomic_write_bytes(path, st_save({"scores": sc.values.contiguous()}))
    except OSError as exc:  # a read-only or full cache folder: the result is still good, just not kept
        sc.note = f"not cached ({exc.strerror or exc})"
    return sc
