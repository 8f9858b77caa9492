"""What a network learned, read off its weights: filter grids, weight distributions and norms per epoch.

- `conv_layers(model)`: the Conv2d layers, in definition order, with their kernel shapes.
- `filter_grid(weight)`: a conv layer's kernels as one picture. A layer that reads 3 channels
  (the first layer of an RGB model) is drawn in colour: every kernel an RGB tile, all normalised
  together (0 is mid grey, +-`scale` full colour), so colour and edge detectors look like
  themselves. Deeper layers (and 1-channel models) are drawn per output channel: a row per output
  channel, a tile per input channel, blue-white-red with one symmetric scale for the whole grid.
- `shared_scale(weights)`: one scale for the same layer across several epochs, so a scrubber
  compares like with like.
- `epoch_states(paths)`: the state dicts of a run's saved epochs; `weight_histograms` and
  `checkpoint_norms` summarise a layer (or every layer) across them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..images.display import _RDBU, _ramp

MAX_TILES = 4096        # kernels drawn in one grid at most (rows x columns)
GRID_PX = 1400          # a grid is laid out to fit about this many pixels across


@dataclass(frozen=True)
class ConvLayer:
    name: str
    out_channels: int
    in_channels: int
    kernel: tuple[int, int]
    groups: int

    @property
    def label(self) -> str:
        return (f"{self.name} · {self.out_channels}x{self.in_channels}x{self.kernel[0]}x{self.kernel[1]}"
                + (f" (groups {self.groups})" if self.groups > 1 else ""))


def conv_layers(model: nn.Module) -> list[ConvLayer]:
    """Every nn.Conv2d of `model` (definition order)."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            o, i, kh, kw = m.weight.shape
            out.append(ConvLayer(name, int(o), int(i), (int(kh), int(kw)), int(m.groups)))
    return out


@dataclass
class FilterGrid:
    """A picture of a conv layer's kernels and what it shows."""

    image: Image.Image
    mode: str                 # "rgb" (3-channel kernels in colour) or "signed" (per input channel)
    scale: float              # |w| drawn at full colour; 0 is grey (rgb) or white (signed)
    shape: tuple[int, int, int, int]
    out_shown: int
    in_shown: int
    tile: int                 # px of one kernel tile
    columns: int              # tiles per row (rgb and 1-channel layouts)

    def describe(self) -> str:
        o, i, kh, kw = self.shape
        if self.mode == "rgb":
            what = (f"{self.out_shown} of {o} kernels ({kh}x{kw}x3) as RGB tiles, {self.columns} per row, "
                    f"all normalised together: mid grey is 0, full colour is ±{self.scale:.3g}")
        elif i == 1:
            what = (f"{self.out_shown} of {o} kernels ({kh}x{kw}, one input channel), {self.columns} per row; "
                    f"blue negative, white 0, red positive, one scale ±{self.scale:.3g}")
        else:
            what = (f"a row per output channel ({self.out_shown} of {o}), a tile per input channel "
                    f"({self.in_shown} of {i}), each {kh}x{kw}; blue negative, white 0, red positive, one "
                    f"scale ±{self.scale:.3g}")
        return what + f"; each weight drawn {self.tile // max(kh, kw)} px wide."


def shared_scale(weights: list[torch.Tensor]) -> float:
    """The largest |w| over several tensors (e.g. one layer at every saved epoch); 1.0 if all are 0."""
    m = max((float(w.detach().abs().max()) for w in weights if w.numel()), default=0.0)
    return m if m > 0 and math.isfinite(m) else 1.0


def _tile_px(k: int, n_across: int, n_down: int) -> int:
    """Pixels per kernel tile: the grid at most about GRID_PX wide and tall, a tile at most 96 px,
    each weight at least 2 px."""
    per = max(2, min(96 // max(k, 1), GRID_PX // max(1, n_across * k), GRID_PX // max(1, n_down * k)))
    return per * k


def _paste(tiles: np.ndarray, rows: int, cols: int, gap: int, fill: int) -> np.ndarray:
    """(n, h, w, 3) uint8 tiles into a (rows x cols) grid with `gap` px between tiles."""
    n, h, w, _ = tiles.shape
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), fill, np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = tiles[k]
    return out


def _upscale(a: np.ndarray, f: int) -> np.ndarray:
    return a.repeat(f, axis=-3).repeat(f, axis=-2)


def filter_grid(weight: torch.Tensor, *, scale: float | None = None, mode: str = "auto", max_out: int = 64,
                max_in: int = 32) -> FilterGrid:
    """Draw a conv weight (out, in, kh, kw) as a grid (see the module doc). `scale` fixes the colour
    range (e.g. `shared_scale` over epochs); `mode` "auto" picks rgb for 3 input channels."""
    if weight.dim() != 4:
        raise ValueError(f"A conv weight has 4 dimensions (out, in, kh, kw); this one has shape "
                         f"{tuple(weight.shape)}.")
    w = weight.detach().float().cpu()
    if not torch.isfinite(w).all():
        raise ValueError("These weights hold NaN or infinity (the run diverged): there is nothing to draw.")
    o, i, kh, kw = (int(s) for s in w.shape)
    if mode == "auto":
        mode = "rgb" if i == 3 else "signed"
    if mode == "rgb" and i != 3:
        raise ValueError(f"RGB tiles need kernels over 3 input channels; this layer reads {i}.")
    scale = float(scale) if scale else shared_scale([w])
    k = max(kh, kw)
    if mode == "rgb" or i == 1:
        n = min(o, MAX_TILES, max_out)
        cols = max(1, min(n, math.ceil(math.sqrt(n * 1.6))))
        rows = math.ceil(n / cols)
        tile = _tile_px(k, cols, rows)
        if mode == "rgb":
            rgb = (w[:n].permute(0, 2, 3, 1).numpy() / (2 * scale) + 0.5).clip(0, 1)
            tiles = (rgb * 255).round().astype(np.uint8)
        else:
            tiles = _ramp(w[:n, 0].numpy() / (2 * scale) + 0.5, _RDBU)
        tiles = _upscale(tiles, tile // k)
        img = _paste(tiles, rows, cols, gap=2, fill=255)
        return FilterGrid(Image.fromarray(img), mode, scale, (o, i, kh, kw), n, i, tile, cols)
    n_out = min(o, max_out, max(1, MAX_TILES // max(1, min(i, max_in))))
    n_in = min(i, max_in)
    tile = _tile_px(k, n_in, n_out)
    tiles = _ramp(w[:n_out, :n_in].reshape(n_out * n_in, kh, kw).numpy() / (2 * scale) + 0.5, _RDBU)
    tiles = _upscale(tiles, tile // k)
    img = _paste(tiles, n_out, n_in, gap=2, fill=200)
    return FilterGrid(Image.fromarray(img), "signed", scale, (o, i, kh, kw), n_out, n_in, tile, n_in)


def kernel_norms(weight: torch.Tensor) -> torch.Tensor:
    """L2 norm of each output channel's kernel (out,)."""
    return weight.detach().float().flatten(1).norm(dim=1)


# ---------------------------------------------------------------------------------------------
# Across a run's saved epochs

def epoch_states(paths: dict[int, Path]) -> dict[int, dict[str, torch.Tensor]]:
    """{epoch: state dict} of saved checkpoints (safetensors or weights_only torch files)."""
    from ..models.checkpoints import load_checkpoint

    return {int(e): load_checkpoint(Path(p)).state_dict for e, p in sorted(paths.items())}


@dataclass
class Histograms:
    """One layer's weight distribution at each epoch, over shared bins."""

    epochs: list[int]
    edges: np.ndarray          # (bins + 1,)
    density: np.ndarray        # (epochs, bins): share of the layer's weights in each bin
    std: list[float]
    mean: list[float]

    def describe(self) -> str:
        if not self.epochs:
            return "no epochs"
        return (f"{len(self.epochs)} epoch(s), {len(self.edges) - 1} bins from {self.edges[0]:.3g} to "
                f"{self.edges[-1]:.3g}; std {self.std[0]:.3g} at epoch {self.epochs[0]} → {self.std[-1]:.3g} "
                f"at epoch {self.epochs[-1]}")


def weight_histograms(weights: dict[int, torch.Tensor], bins: int = 60) -> Histograms:
    """Histograms of one tensor at each epoch, binned over one symmetric range for all epochs."""
    eps = sorted(weights)
    vals = [weights[e].detach().float().flatten().cpu() for e in eps]
    vals = [v[torch.isfinite(v)] for v in vals]
    lim = max((float(v.abs().max()) for v in vals if v.numel()), default=1.0) or 1.0
    edges = np.linspace(-lim, lim, bins + 1)
    dens = np.zeros((len(eps), bins))
    for k, v in enumerate(vals):
        if v.numel():
            dens[k] = torch.histc(v, bins=bins, min=-lim, max=lim).numpy() / v.numel()
    return Histograms(eps, edges, dens, [float(v.std()) if v.numel() > 1 else 0.0 for v in vals],
                      [float(v.mean()) if v.numel() else 0.0 for v in vals])


def layer_weight_keys(model: nn.Module) -> dict[str, str]:
    """{layer: its weight's state-dict key} for every layer with a weight (conv, linear, norm)."""
    from .layerstats import weighted_layers

    return {n: f"{n}.weight" for n, _ in weighted_layers(model)}


def checkpoint_norms(states: dict[int, dict[str, torch.Tensor]], keys: dict[str, str]
                     ) -> tuple[list[int], dict[str, list[float]], dict[str, list[float | None]]]:
    """(epochs, {layer: weight norm per epoch}, {layer: ||W_e - W_prev saved|| / ||W_prev saved||}) from
    saved checkpoints alone: works for any run, also one trained before the engine logged layer stats."""
    eps = sorted(states)
    norms: dict[str, list[float]] = {n: [] for n in keys}
    ratios: dict[str, list[float | None]] = {n: [] for n in keys}
    for k, e in enumerate(eps):
        for n, key in keys.items():
            w = states[e].get(key)
            if w is None:
                norms[n].append(float("nan"))
                ratios[n].append(None)
                continue
            w = w.float()
            norms[n].append(float(w.norm()))
            prev = states[eps[k - 1]].get(key) if k else None
            if prev is None or prev.shape != w.shape or float(prev.float().norm()) == 0:
                ratios[n].append(None)
            else:
                ratios[n].append(float((w - prev.float()).norm() / prev.float().norm()))
    return eps, norms, ratios


HEALTH = {
    "grad": "Healthy: gradient norms of similar size from the first layer to the last (within ~10-100x). "
            "Vanishing: early layers get gradients orders of magnitude smaller than late ones, so they barely "
            "learn (a deep plain net without BatchNorm); exploding: norms grow towards the input and the loss "
            "jumps or turns NaN. BatchNorm and ResNet shortcuts are the cures (the tutorial's 梯度离散 point).",
    "ratio": "Update/weight ratio: how far each epoch moved a layer's weights relative to their size. Around "
             "1e-3 per step (so ~1e-2..1e-1 per epoch) is the usual healthy range; near 0 means a layer no "
             "longer learns (vanishing gradients, or a too-small learning rate), above 1 means every epoch "
             "rewrites it (too-large learning rate).",
    "dead": "Dead ReLU units output 0 for every probe image: they pass no gradient and can never recover. A few "
            "percent is normal; a large share points to a too-large learning rate or a bad initialisation.",
    "hist": "Weights start as a narrow uniform/normal band (the initialisation); healthy training widens it "
            "smoothly. A distribution collapsing onto 0 (too much weight decay) or spreading without bound "
            "(divergence) is the unhealthy picture.",
}
