"""Feature visualisation: the input that drives a channel (or a class logit) hardest, by gradient ascent.

`visualise(model, target, ...)` starts from seeded noise and climbs the target's mean activation
with Adam, with the usual regularisers (Olah et al., "Feature Visualization", Distill 2017; the
Lucid library's defaults, written here in plain torch):

- the image is parameterised in a **decorrelated Fourier space**: a spectrum scaled by 1/frequency
  (so low frequencies move first; high-frequency noise is not free), then, for 3 channels, a
  colour decorrelation matrix (the square root of ImageNet's colour covariance, as Lucid uses), then
  a sigmoid to [0, 1]. A 1-channel model gets the same without the colour step. `param="pixel"`
  optimises raw pixels instead (for comparison);
- every step sees a randomly **jittered, scaled and rotated** copy (one affine warp, reflection
  padding), so the result must work at slightly different positions and sizes;
- a **total-variation** penalty keeps neighbouring pixels close.

Targets: `("channel", layer, c)` maximises the mean of channel c of `layer` (its only value on a
1x1 map or a vector layer); `("class", k)` maximises logit k ("what the network thinks a cat is").
Everything is seeded by `seed` (a torch.Generator), so a run is reproducible on the same machine.
The model's parameters are never changed (gradients are taken with respect to the image only).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from . import features

# Lucid's colour decorrelation (square root of the ImageNet colour covariance, from its SVD).
COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_SQRT = COLOR_SQRT / COLOR_SQRT.norm(dim=0).max()
MAX_STEPS = 4096
MAX_SIDE = 512
Progress = Callable[[int, int, float], None]


@dataclass
class Settings:
    steps: int = 256
    lr: float = 0.05
    param: str = "fourier"        # "fourier" (decorrelated) or "pixel"
    jitter: int = 2               # px of random translation, each way
    scale: float = 0.05           # random scale in [1 - scale, 1 + scale]
    rotate: float = 5.0           # degrees, each way
    tv: float = 0.05              # weight of the total-variation penalty
    seed: int = 0


@dataclass
class Visualisation:
    """The result: the picture, and how far the objective rose from the starting noise."""

    image: Image.Image
    pixels: torch.Tensor           # (C, H, W) in [0, 1]
    start: float                   # objective on the starting image (no transforms)
    final: float                   # objective on the result (no transforms)
    history: list[float] = field(default_factory=list)   # objective (with transforms) per step
    seconds: float = 0.0
    target: str = ""
    settings: Settings = field(default_factory=Settings)

    @property
    def gain(self) -> float:
        """final / start when the start is positive, else final - start (a difference, not a ratio)."""
        return self.final / self.start if self.start > 1e-8 else self.final - self.start


class _Stop(Exception):
    pass


class _Image(nn.Module):
    """The parameterised image: a Fourier spectrum (or pixels) -> colour decorrelation -> sigmoid."""

    def __init__(self, channels: int, size: int, param: str, gen: torch.Generator) -> None:
        super().__init__()
        self.c, self.size, self.param = channels, size, param
        if param == "fourier":
            fy = torch.fft.fftfreq(size)[:, None]
            fx = torch.fft.rfftfreq(size)[None, :]
            freq = torch.sqrt(fx * fx + fy * fy)
            self.register_buffer("scale", 1.0 / torch.clamp(freq, min=1.0 / size))
            self.spec = nn.Parameter(0.01 * torch.randn(channels, size, size // 2 + 1, 2, generator=gen))
        elif param == "pixel":
            self.pix = nn.Parameter(0.01 * torch.randn(channels, size, size, generator=gen))
        else:
            raise ValueError(f"Unknown parameterisation {param!r}: use 'fourier' or 'pixel'.")

    def forward(self) -> torch.Tensor:
        if self.param == "fourier":
            spec = torch.view_as_complex(self.spec) * self.scale
            x = torch.fft.irfft2(spec, s=(self.size, self.size), norm="ortho") / 4.0
        else:
            x = self.pix
        if self.c == 3:
            x = torch.einsum("ij,jhw->ihw", COLOR_SQRT.to(x.dtype), x)
        return torch.sigmoid(x)


def _warp(x: torch.Tensor, s: Settings, gen: torch.Generator) -> torch.Tensor:
    """One random jitter + scale + rotation of (1, C, H, W), reflection-padded, same size."""
    if not (s.jitter or s.scale or s.rotate):
        return x
    u = torch.rand(4, generator=gen) * 2 - 1
    ang = math.radians(s.rotate) * float(u[0])
    sc = 1.0 + s.scale * float(u[1])
    h = x.shape[-1]
    tx, ty = 2 * s.jitter * float(u[2]) / h, 2 * s.jitter * float(u[3]) / h
    theta = torch.tensor([[math.cos(ang) / sc, -math.sin(ang) / sc, tx],
                          [math.sin(ang) / sc, math.cos(ang) / sc, ty]], dtype=x.dtype)[None]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _tv(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def check_target(model: nn.Module, target: tuple, input_shape: tuple[int, int, int], num_classes: int | None = None
                 ) -> str:
    """A one-line description of `target`, or ValueError (one line) when it can't be visualised."""
    kind = target[0] if target else None
    c, size, _ = input_shape
    if c not in (1, 3):
        raise ValueError(f"Feature visualisation draws 1- or 3-channel images; this model reads {c} channels.")
    if size > MAX_SIDE:
        raise ValueError(f"The input is {size}x{size}; feature visualisation here stops at {MAX_SIDE}x{MAX_SIDE}.")
    if kind == "class":
        k = int(target[1])
        if num_classes is not None and not 0 <= k < num_classes:
            raise ValueError(f"Class {k} does not exist: the model has {num_classes} outputs.")
        return f"logit of class {k}"
    if kind != "channel":
        raise ValueError(f"Unknown target {target!r}: use ('channel', layer, c) or ('class', k).")
    _, layer, ch = target
    infos = {li.name: li for li in features.list_layers(model, input_shape)}
    if layer not in infos:
        raise ValueError(f"No layer named {layer!r} in {type(model).__name__}.")
    shape = infos[layer].shape
    if len(shape) not in (2, 4):
        raise ValueError(f"{layer} outputs shape {shape}: it has no channels to maximise.")
    if not 0 <= int(ch) < shape[1]:
        raise ValueError(f"Channel {ch} does not exist: {layer} has {shape[1]} (0-{shape[1] - 1}).")
    where = f"{shape[2]}x{shape[3]} map" if len(shape) == 4 else "vector"
    return f"mean of channel {ch} of {layer} ({where})"


def _objective(model: nn.Module, target: tuple, x: torch.Tensor) -> torch.Tensor:
    if target[0] == "class":
        return model(x)[0, int(target[1])]
    _, layer, ch = target
    got: dict[str, torch.Tensor] = {}
    base, _, call = layer.partition(":")
    want, seen = int(call) if call else 1, [0]

    def hook(_m, _i, out):
        seen[0] += 1
        if seen[0] == want:
            got["a"] = features._first_tensor(out)
            raise _Stop

    with features.hooks(model, {base: hook}):
        try:
            model(x)
        except _Stop:  # the target layer has run: the rest of the forward is not needed
            pass
    a = got["a"][0, int(ch)]
    return a.mean()


def visualise(model: nn.Module, target: tuple, *, input_size: int, in_channels: int, mean: Sequence[float],
              std: Sequence[float], settings: Settings | None = None, num_classes: int | None = None,
              progress: Progress | None = None) -> Visualisation:
    """Gradient ascent on the input for `target` (see the module doc); `progress(step, steps, value)`."""
    s = settings or Settings()
    if not 1 <= s.steps <= MAX_STEPS:
        raise ValueError(f"steps must be between 1 and {MAX_STEPS}, not {s.steps}.")
    what = check_target(model, target, (in_channels, input_size, input_size), num_classes)
    gen = torch.Generator().manual_seed(int(s.seed))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    img = _Image(in_channels, input_size, s.param, gen)
    m = torch.tensor(list(mean)[:in_channels]).view(1, -1, 1, 1)
    sd = torch.tensor(list(std)[:in_channels]).view(1, -1, 1, 1)
    opt = torch.optim.Adam(img.parameters(), lr=s.lr)
    leaves = list(img.parameters())

    def score(x01: torch.Tensor) -> torch.Tensor:
        return _objective(model, target, ((x01 - m) / sd).to(device))

    was = model.training
    model.eval()
    history: list[float] = []
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # one small image: threads only wait on each other (30x slower on a busy CPU)
    try:
        with torch.no_grad():
            start = float(score(img()[None]))
        for step in range(s.steps):
            x = img()[None]
            obj = score(_warp(x, s, gen))
            loss = -obj + s.tv * _tv(x) * (abs(float(obj.detach())) + 1.0)
            grads = torch.autograd.grad(loss, leaves)  # the image only: the model's .grad stays as it was
            for p, g in zip(leaves, grads):
                p.grad = g
            opt.step()
            history.append(float(obj.detach()))
            if progress is not None:
                progress(step + 1, s.steps, history[-1])
        with torch.no_grad():
            final_x = img()
            final = float(score(final_x[None]))
    finally:
        model.train(was)
        torch.set_num_threads(threads)
    pix = final_x.detach().cpu()
    pil = Image.fromarray((pix.permute(1, 2, 0).squeeze(-1).numpy() * 255).round().clip(0, 255).astype("uint8"))
    return Visualisation(pil, pix, start, final, history, time.perf_counter() - t0, what, s)
