"""Feature maps of any layer, Grad-CAM, top-k predictions, and the pictures of them.

Layers are named as in `model.named_modules()`; a module called more than once in one
forward pass (torchvision's ResNet reuses one ReLU per block) gets `name:2`, `name:3` for
its later calls, as listed by `list_layers`. Hooks live only inside the `hooks` context
manager and are removed on the way out, also when the forward pass raises.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn
from torch.nn import functional as F

from .. import limits
from ..images import display
from . import memory
from .receptive import LayerInfo, trace

Hook = Callable[[nn.Module, tuple, object], object]


@contextlib.contextmanager
def hooks(model: nn.Module, fns: dict[str, Hook]) -> Iterator[None]:
    """Register forward hooks `{module name: fn(module, inputs, output)}`; always remove them."""
    modules = dict(model.named_modules())
    missing = [n for n in fns if n not in modules]
    if missing:
        raise ValueError(f"No layer named {', '.join(map(repr, missing))} in {type(model).__name__}.")
    handles = []
    try:
        for name, fn in fns.items():
            handles.append(modules[name].register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


def list_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerInfo]:
    """Every layer (module call) in forward order with its output shape and receptive field.

    Computed on a `meta` copy of the model: no arithmetic, whatever the model's size.
    """
    return trace(model, input_shape)


class _Done(Exception):
    """Raised inside a hook once every requested layer is captured, to skip the rest of the forward."""


def _split(layer: str) -> tuple[str, int]:
    base, _, call = layer.partition(":")
    return base, int(call) if call else 1


def _first_tensor(out: object) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"layer output is a {type(out).__name__}, not a tensor")


@contextlib.contextmanager
def _eval(model: nn.Module, on: bool) -> Iterator[None]:
    was = model.training
    if on:
        model.eval()
    try:
        yield
    finally:
        model.train(was)


def _batched(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if x.dim() == 3:
        return x.unsqueeze(0), True
    if x.dim() != 4:
        raise ValueError(f"expected an image tensor (C,H,W) or a batch (N,C,H,W), got shape {tuple(x.shape)}")
    return x, False


def check_memory(model: nn.Module, xb: torch.Tensor, what: str = "the forward pass", grad: bool = False) -> None:
    """BudgetError before running `model` on the batch `xb` when its activations (estimated on the
    `meta` device: `cnnviz.inspect.memory`) would exceed the server's budget."""
    est = memory.estimate(model, tuple(xb.shape[1:]))
    per = est.training if grad else est.inference
    c, h, w = (tuple(xb.shape[1:]) + (1, 1, 1))[:3]
    limits.check_budget(f"{what} of {type(model).__name__} on {xb.shape[0]} image(s) of {c}x{h}x{w}",
                        xb.shape[0] * per)


def feature_maps(model: nn.Module, x: torch.Tensor, layers: Sequence[str], *, eval_mode: bool = True,
                 stop_early: bool = True) -> dict[str, torch.Tensor]:
    """The outputs of `layers` for input `x` ((C,H,W) or (N,C,H,W)), as detached copies.

    The forward pass stops as soon as the last requested layer has run (`stop_early`), so
    early layers cost less than a full forward. Outputs keep the batch dimension of `x`.
    Model in eval mode during the call (`eval_mode`), restored afterwards.
    """
    xb, squeeze = _batched(x)
    want: dict[str, set[int]] = {}
    for layer in layers:
        base, call = _split(layer)
        want.setdefault(base, set()).add(call)
    got: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def make(base: str) -> Hook:
        def fn(_mod, _inp, out):
            counts[base] = counts.get(base, 0) + 1
            c = counts[base]
            if c in want[base]:
                # A copy: an in-place op later (ReLU(inplace=True)) must not change what we keep.
                got[base if c == 1 else f"{base}:{c}"] = _first_tensor(out).detach().clone()
                if stop_early and len(got) == len(layers):
                    raise _Done
        return fn

    check_memory(model, xb, "the feature maps")
    param = next(model.parameters(), None)
    if param is not None:
        xb = xb.to(param.device)
    with _eval(model, eval_mode), torch.inference_mode(), hooks(model, {b: make(b) for b in want}):
        try:
            model(xb)
        except _Done:
            pass
    missing = [layer for layer in layers if layer not in got]
    if missing:
        raise ValueError(f"Layer(s) {', '.join(missing)} did not run in the forward pass.")
    return {k: (v[0] if squeeze else v) for k, v in ((layer, got[layer]) for layer in layers)}


@dataclass
class GradCam:
    """Grad-CAM for one image: `cam` (H, W) in [0, 1] at the input's resolution."""

    cam: torch.Tensor
    target: int                  # the class explained
    probs: torch.Tensor          # softmax over classes (K,)
    layer: str
    weights: torch.Tensor        # per-channel weights (mean gradient), (C,)


def grad_cam(model: nn.Module, x: torch.Tensor, layer: str, target: int | None = None, *,
             eval_mode: bool = True) -> GradCam:
    """Grad-CAM (Selvaraju et al. 2017) of `layer` for class `target` (default: the top class).

    cam = ReLU(sum_c w_c A_c), w_c = mean over positions of d score_target / d A_c, upsampled
    bilinearly to the input size and scaled to [0, 1] (all zeros if nothing is positive).
    """
    xb, _ = _batched(x)
    if xb.shape[0] != 1:
        raise ValueError("grad_cam explains one image at a time")
    base, call = _split(layer)
    store: dict[str, torch.Tensor] = {}
    count = [0]

    def fn(_mod, _inp, out):
        count[0] += 1
        if count[0] == call:
            act = _first_tensor(out)
            if act.dim() != 4:
                raise ValueError(f"Grad-CAM needs a layer with a spatial output (N,C,H,W); {layer} gives "
                                 f"{tuple(act.shape)}.")
            store["act"] = act
            return act.clone() if isinstance(out, torch.Tensor) else None  # protect from in-place ops
        return None

    check_memory(model, xb, "Grad-CAM (a forward and a backward pass)", grad=True)
    param = next(model.parameters(), None)
    if param is not None:
        xb = xb.to(param.device)
    xb = xb.detach().requires_grad_(True)  # gradients flow even if the weights are frozen
    with _eval(model, eval_mode), torch.enable_grad(), hooks(model, {base: fn}):
        logits = _first_tensor(model(xb))
    if "act" not in store:
        raise ValueError(f"Layer {layer} did not run in the forward pass.")
    probs = logits.detach().float().softmax(-1)[0]
    k = int(probs.argmax()) if target is None else int(target)
    if not 0 <= k < logits.shape[-1]:
        raise ValueError(f"class {k} out of range 0..{logits.shape[-1] - 1}")
    act = store["act"]
    (grad,) = torch.autograd.grad(logits[0, k], act)
    w = grad[0].float().mean(dim=(1, 2))
    cam = F.relu((w[:, None, None] * act[0].detach().float()).sum(0))
    cam = F.interpolate(cam[None, None], size=xb.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    top = float(cam.max())
    cam = cam / top if top > 0 else torch.zeros_like(cam)
    return GradCam(cam.clamp(0, 1).cpu(), k, probs.cpu(), layer, w.cpu())


def last_spatial_layer(layers: Sequence[LayerInfo]) -> str | None:
    """Grad-CAM's usual pick: the module that outputs the network's final spatial feature maps.

    The last output in forward order that is still a map (N,C,H,W) with H*W > 1 fixes the final
    map size H x W; of the modules with outputs of that size, the outermost (smallest depth, then
    the last called) is chosen: a whole stage such as torchvision's `layer4` or VGG's `features`, rather than
    a layer inside a block (e.g. a shortcut's BatchNorm, which is not on the main path).
    """
    spatial = [li for li in layers if len(li.shape) == 4 and li.shape[2] * li.shape[3] > 1 and li.depth >= 1]
    if not spatial:
        return None
    final = spatial[-1].shape[2:]
    same = [li for li in spatial if li.shape[2:] == final]
    top = min(li.depth for li in same)
    return [li for li in same if li.depth == top][-1].name


def predict(model: nn.Module, x: torch.Tensor, classes: Sequence[str] | None = None, k: int = 5
            ) -> list[tuple[int, str, float]]:
    """Top-k (class index, class name, probability) for one image."""
    xb, _ = _batched(x)
    check_memory(model, xb, "the prediction")
    param = next(model.parameters(), None)
    if param is not None:
        xb = xb.to(param.device)
    with _eval(model, True), torch.inference_mode():
        probs = _first_tensor(model(xb)).float().softmax(-1)[0].cpu()
    p, idx = probs.topk(min(k, probs.numel()))
    names = list(classes or [])
    return [(int(i), names[int(i)] if int(i) < len(names) else f"class {int(i)}", float(v))
            for v, i in zip(p, idx)]


def preprocess(image: Image.Image, size: int, mean: Sequence[float], std: Sequence[float],
               in_channels: int = 3) -> tuple[torch.Tensor, Image.Image]:
    """Centre-crop `image` to a square, resize to `size`, normalise: returns ((1,C,size,size), the resized image)."""
    im = ImageOps.fit(image.convert("RGB"), (size, size), method=Image.Resampling.BICUBIC)
    src = im.convert("L") if in_channels == 1 else im
    x = display.pil_to_tensor(src)
    if x.shape[0] != in_channels:
        raise ValueError(f"the model expects {in_channels} channels; images give 1 or 3")
    m = torch.tensor(list(mean)[:in_channels], dtype=torch.float32)[:, None, None]
    s = torch.tensor(list(std)[:in_channels], dtype=torch.float32)[:, None, None]
    if m.shape[0] != in_channels or s.shape[0] != in_channels:
        m, s = m[:1].expand(in_channels, 1, 1), s[:1].expand(in_channels, 1, 1)
    return ((x - m) / s).unsqueeze(0), im


def digit_input(pixels: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float],
                in_channels: int = 1) -> tuple[torch.Tensor, Image.Image]:
    """An MNIST-style uint8 digit (H, W) (see `cnnviz.images.drawing`) -> ((1,C,size,size), the resized image).

    Resized the way training resizes 28x28 digits for a 32x32 model (bilinear, antialiased, rounded
    to uint8: `cnnviz.train.device_data.resize_uint8`), then normalised; grey copied to every channel."""
    x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.uint8)).float()[None, None]
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = x.round().clamp(0, 255)
    small = Image.fromarray(x[0, 0].to(torch.uint8).numpy(), "L")
    x = (x / 255.0).expand(1, in_channels, size, size)
    m = torch.tensor(list(mean)[:in_channels], dtype=torch.float32)
    s = torch.tensor(list(std)[:in_channels], dtype=torch.float32)
    if m.numel() != in_channels or s.numel() != in_channels:
        m, s = m[:1].expand(in_channels), s[:1].expand(in_channels)
    return ((x - m[:, None, None]) / s[:, None, None]).contiguous(), small.convert("RGB")


def channel_order(fmap: torch.Tensor, order: str = "mean", top_k: int | None = None) -> list[int]:
    """Channel indices of a (C,H,W) map: by mean activation, highest first ('mean'), or 'index' order."""
    c = fmap.shape[0]
    if order == "mean":
        idx = torch.argsort(fmap.float().mean(dim=(1, 2)), descending=True, stable=True).tolist()
    elif order == "index":
        idx = list(range(c))
    else:
        raise ValueError(f"order must be 'mean' or 'index', not {order!r}")
    return idx[: top_k or c]


@dataclass
class Grid:
    """A grid picture of channels and what it holds."""

    image: Image.Image
    channels: list[int]          # channel index of each tile, row-major
    columns: int
    vmin: float                  # the colour scale's range (shared) or the smallest per-channel range
    vmax: float
    shared: bool


def channel_grid(fmap: torch.Tensor, channels: Sequence[int], *, shared: bool = False, columns: int | None = None,
                 tile: int = 64, gap: int = 2) -> Grid:
    """Tile channels of a (C,H,W) map as viridis heat maps, nearest-upscaled to about `tile` px each.

    `shared`: one colour scale for all tiles (compare strengths) or one per tile (see each pattern).
    """
    if fmap.dim() != 3:
        raise ValueError(f"expected a (C,H,W) map, got {tuple(fmap.shape)}")
    a = fmap[list(channels)].detach().float().cpu().numpy()
    n, h, w = a.shape
    cols = columns or max(1, math.ceil(math.sqrt(n * 1.6)))
    rows = math.ceil(n / cols)
    if shared:
        lo, hi = float(a.min()), float(a.max())
        scaled = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    else:
        lo_c = a.min(axis=(1, 2), keepdims=True)
        hi_c = a.max(axis=(1, 2), keepdims=True)
        span = np.where(hi_c > lo_c, hi_c - lo_c, 1.0)
        scaled = np.where(hi_c > lo_c, (a - lo_c) / span, 0.0)
        lo, hi = float(lo_c.min()), float(hi_c.max())
    f = max(1, round(tile / max(h, w)))
    limits.check_budget(f"drawing {n} channels of {h}x{w} at {f}x", n * h * w * f * f * 24)  # float64 x2, rgb, mask
    scaled = scaled.repeat(f, axis=1).repeat(f, axis=2)
    th, tw = h * f, w * f
    canvas = np.zeros((rows * (th + gap) - gap, cols * (tw + gap) - gap), dtype=np.float64)
    mask = np.zeros_like(canvas, dtype=bool)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = r * (th + gap), c * (tw + gap)
        canvas[y:y + th, x:x + tw] = scaled[i]
        mask[y:y + th, x:x + tw] = True
    rgb = np.asarray(display.heatmap(torch.from_numpy(canvas), vmin=0.0, vmax=1.0)).copy()
    rgb[~mask] = 255
    return Grid(Image.fromarray(rgb), list(channels), cols, lo, hi, shared)


def channel_picture(fmap2d: torch.Tensor, min_side: int = 256) -> Image.Image:
    """One channel (H,W) as a viridis picture, nearest-upscaled so cells stay visible."""
    return display.upscale_nearest(display.heatmap(fmap2d), min_side)


def cam_overlay(image: Image.Image, cam: torch.Tensor, alpha: float = 0.5) -> Image.Image:
    """A [0,1] map (H,W) in viridis over `image` (resized bilinearly to it)."""
    return display.overlay(image, display.heatmap(cam, vmin=0.0, vmax=1.0), alpha)
