"""BatchNorm2d made visible: a batch of images through a seeded conv into nn.BatchNorm2d.

`make_batch` builds the batch (images + seeded augmented crops, one size), `conv_features`
runs a fixed random conv, `BNSettings.build` makes the layer, `train_then_eval` runs k forward
passes in train mode recording running_mean/var and then the same input in eval mode,
`worked_pixel` recomputes one output by hand, `layer_state` lists the layer like vars(layer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from . import OpError


def _resize(t: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(t[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def make_batch(images: list[Image.Image], size: int = 64, crops_per_image: int = 1, seed: int = 0) -> torch.Tensor:
    """(N, 3, size, size) float in [0, 1]: each image resized to size×size, then `crops_per_image`
    seeded random-resized crops (area 25-100 %, aspect 3/4-4/3, random horizontal flip) of each."""
    if not images:
        raise OpError("the batch needs at least one image")
    if size < 1:
        raise OpError("the batch image size must be at least 1")
    g = torch.Generator().manual_seed(seed)
    out = []
    for im in images:
        im = im.convert("RGB")
        if max(im.size) > 4 * size:  # crops cover >= 1/4 of the area, so 4x the batch size is detail enough
            f = 4 * size / max(im.size)
            im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.Resampling.BOX)
        arr = np.asarray(im, dtype=np.float32) / 255.0
        t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        out.append(_resize(t, size))
        big_h, big_w = t.shape[1:]
        for _ in range(crops_per_image):
            area = float(torch.empty(1).uniform_(0.25, 1.0, generator=g)) * big_h * big_w
            ratio = math.exp(float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3), generator=g)))
            h = max(1, min(big_h, round(math.sqrt(area / ratio))))
            w = max(1, min(big_w, round(math.sqrt(area * ratio))))
            top = int(torch.randint(0, big_h - h + 1, (1,), generator=g))
            left = int(torch.randint(0, big_w - w + 1, (1,), generator=g))
            c = t[:, top:top + h, left:left + w]
            if float(torch.rand(1, generator=g)) < 0.5:
                c = c.flip(-1)
            out.append(_resize(c, size))
    return torch.stack(out).clamp_(0, 1)


def make_conv(channels: int, seed: int = 0, kernel: int = 3) -> nn.Conv2d:
    """nn.Conv2d(3, channels, kernel, padding=kernel//2) with seeded default (Kaiming-uniform) init."""
    if not 1 <= channels <= 64:
        raise OpError("pick between 1 and 64 conv channels")
    g_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        conv = nn.Conv2d(3, channels, kernel, padding=kernel // 2)
    finally:
        torch.random.set_rng_state(g_state)  # don't disturb anyone else's random stream
    return conv.eval()


@torch.no_grad()
def conv_features(batch: torch.Tensor, channels: int = 4, seed: int = 0) -> torch.Tensor:
    """The batch through `make_conv(channels, seed)`: (N, C, H, W) features, BatchNorm's input."""
    return make_conv(channels, seed)(batch)


@dataclass
class BNSettings:
    """The nn.BatchNorm2d constructor arguments plus the affine parameters to load."""

    eps: float = 1e-5
    momentum: float | None = 0.1      # None: cumulative moving average
    affine: bool = True
    track_running_stats: bool = True
    gamma: list[float] | None = None  # per channel; default 1
    beta: list[float] | None = None   # per channel; default 0

    def build(self, channels: int) -> nn.BatchNorm2d:
        """A fresh nn.BatchNorm2d(channels, ...) with gamma/beta loaded (when affine)."""
        if self.eps <= 0:
            raise OpError("eps must be positive (it keeps the division away from zero)")
        if self.momentum is not None and not 0 <= self.momentum <= 1:
            raise OpError("momentum must be between 0 and 1 (or None for a cumulative average)")
        layer = nn.BatchNorm2d(channels, eps=self.eps, momentum=self.momentum, affine=self.affine,
                               track_running_stats=self.track_running_stats)
        if self.affine:
            with torch.no_grad():
                if self.gamma is not None:
                    layer.weight.copy_(torch.tensor(_fit(self.gamma, channels, 1.0)))
                if self.beta is not None:
                    layer.bias.copy_(torch.tensor(_fit(self.beta, channels, 0.0)))
        return layer


def _fit(values: list[float], n: int, default: float) -> list[float]:
    return [float(values[i]) if i < len(values) else default for i in range(n)]


@dataclass
class ChannelStats:
    """Per-channel statistics over (N, H, W)."""

    mean: torch.Tensor         # (C,)
    var: torch.Tensor          # (C,) biased (divide by n): what train-mode BN normalises with
    var_unbiased: torch.Tensor  # (C,) divide by n-1: what it puts into running_var
    count: int                 # n = N·H·W values per channel


def channel_stats(x: torch.Tensor) -> ChannelStats:
    """Mean and variance of each channel of (N, C, H, W) over N, H and W."""
    n = x.shape[0] * x.shape[2] * x.shape[3]
    var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
    var_u = var * n / (n - 1) if n > 1 else torch.full_like(var, float("nan"))
    return ChannelStats(mean, var, var_u, n)


@dataclass
class Pass:
    """running_mean / running_var after one train-mode forward pass."""

    index: int                      # 1-based
    running_mean: torch.Tensor
    running_var: torch.Tensor
    num_batches_tracked: int
    factor: float                   # the momentum actually used (1/t for a cumulative average)


@dataclass
class TrainEval:
    """k train-mode passes on one batch, then eval mode on the same batch."""

    before: ChannelStats            # of the input x
    after_train: ChannelStats       # of the train-mode output
    after_eval: ChannelStats | None  # of the eval-mode output
    y_train: torch.Tensor
    y_eval: torch.Tensor | None     # None only if the layer had nothing to do in eval (not the case in torch)
    passes: list[Pass] = field(default_factory=list)
    initial_mean: torch.Tensor | None = None
    initial_var: torch.Tensor | None = None
    max_abs_diff: float = 0.0       # max |y_train - y_eval|
    mean_abs_diff: float = 0.0
    layer: nn.BatchNorm2d | None = None

    @property
    def eval_uses_batch_stats(self) -> bool:
        """Without running stats, eval mode also normalises with the batch statistics."""
        return self.layer is not None and not self.layer.track_running_stats


@torch.no_grad()
def train_then_eval(x: torch.Tensor, settings: BNSettings, passes: int = 5) -> TrainEval:
    """Run `passes` train-mode forward passes of x through a fresh layer, then one in eval mode."""
    if x.ndim != 4:
        raise OpError(f"BatchNorm2d takes (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[0] * x.shape[2] * x.shape[3] < 2:
        raise OpError("train-mode BatchNorm needs more than one value per channel (batch of 1×1 images)")
    layer = settings.build(x.shape[1]).to(x.device)
    init_m = None if layer.running_mean is None else layer.running_mean.clone()
    init_v = None if layer.running_var is None else layer.running_var.clone()
    layer.train()
    recs: list[Pass] = []
    y_train = x
    for i in range(max(1, passes)):
        y_train = layer(x)
        if layer.track_running_stats:
            t = int(layer.num_batches_tracked)
            factor = 1.0 / t if layer.momentum is None else float(layer.momentum)
            recs.append(Pass(i + 1, layer.running_mean.clone(), layer.running_var.clone(), t, factor))
    layer.eval()
    y_eval = layer(x)
    diff = (y_train - y_eval).abs()
    return TrainEval(channel_stats(x), channel_stats(y_train), channel_stats(y_eval), y_train, y_eval, recs,
                     init_m, init_v, float(diff.max()), float(diff.mean()), layer)


def momentum_text(prev: float, batch_value: float, new: float, factor: float, name: str = "running_mean") -> str:
    """'running_mean ← (1 − 0.1)·0.0000 + 0.1·0.4321 = 0.0432' with the numbers."""
    return (f"{name} ← (1 − {factor:.4g})·{prev:.4f} + {factor:.4g}·{batch_value:.4f} = {new:.4f}")


@dataclass
class WorkedPixel:
    """y = gamma·(x − mean)/sqrt(var + eps) + beta for one value, next to torch's output."""

    where: tuple[int, int, int, int]   # (n, c, h, w)
    x: float
    mean: float
    var: float
    eps: float
    gamma: float
    beta: float
    normalised: float                  # (x - mean)/sqrt(var + eps)
    y: float                           # by hand
    y_torch: float
    mode: str                          # "train" (batch stats) or "eval" (running stats)

    @property
    def text(self) -> str:
        """The formula with the numbers, one step per line (fits a narrow column)."""
        centred = self.x - self.mean
        root = math.sqrt(self.var + self.eps)
        return (f"x = {self.x:.6f}   μ = {self.mean:.6f}   σ² = {self.var:.6f}\n"
                f"ε = {self.eps:g}   γ = {self.gamma:.4f}   β = {self.beta:.4f}\n"
                f"(x − μ)/√(σ² + ε) = {centred:.6f} / {root:.6f} = {self.normalised:.6f}\n"
                f"y = γ·{self.normalised:.6f} + β = {self.y:.6f}")


def worked_pixel(x: torch.Tensor, result: TrainEval, n: int, c: int, h: int, w: int, mode: str = "train") -> WorkedPixel:
    """Recompute output (n, c, h, w) by hand with the statistics the layer used in `mode`."""
    layer = result.layer
    N, C, H, W = x.shape
    if not (0 <= n < N and 0 <= c < C and 0 <= h < H and 0 <= w < W):
        raise OpError(f"pixel (n={n}, c={c}, h={h}, w={w}) is outside the {N}×{C}×{H}×{W} batch")
    if mode == "train" or not layer.track_running_stats:
        mean = float(result.before.mean[c].double())
        var = float(result.before.var[c].double())
        y_t = float((result.y_train if mode == "train" else result.y_eval)[n, c, h, w])
    else:
        mean = float(layer.running_mean[c])
        var = float(layer.running_var[c])
        y_t = float(result.y_eval[n, c, h, w])
    gamma = float(layer.weight[c].detach()) if layer.affine else 1.0
    beta = float(layer.bias[c].detach()) if layer.affine else 0.0
    xv = float(x[n, c, h, w])
    norm = (xv - mean) / math.sqrt(var + layer.eps)
    return WorkedPixel((n, c, h, w), xv, mean, var, layer.eps, gamma, beta, norm, gamma * norm + beta, y_t, mode)


def layer_state(layer: nn.BatchNorm2d) -> dict:
    """The layer as vars(layer) lists it, made readable: hyper-parameters, parameters, buffers."""
    v = vars(layer)
    hyper = {k: val for k, val in v.items()
             if not k.startswith("_") and isinstance(val, (int, float, bool, str, type(None)))}

    def show(t: torch.Tensor | None):
        if t is None:
            return None
        return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""),
                "requires_grad": bool(t.requires_grad),
                "values": [round(float(a), 6) for a in t.detach().reshape(-1)] if t.ndim else t.item()}

    return {
        "hyper-parameters": hyper,
        "_parameters": {k: show(p) for k, p in v["_parameters"].items()},
        "_buffers": {k: show(b) for k, b in v["_buffers"].items()},
    }


def layer_state_rows(layer: nn.BatchNorm2d) -> list[dict]:
    """layer_state as table rows: name, kind, shape, dtype, requires_grad, value(s) as text."""
    st = layer_state(layer)
    rows = [{"name": k, "kind": "attribute", "shape": "", "dtype": type(v).__name__, "requires_grad": "",
             "value": str(v)} for k, v in st["hyper-parameters"].items()]
    for kind, key in (("parameter", "_parameters"), ("buffer", "_buffers")):
        for k, v in st[key].items():
            if v is None:
                rows.append({"name": k, "kind": kind, "shape": "", "dtype": "", "requires_grad": "", "value": "None"})
                continue
            vals = v["values"]
            text = ", ".join(f"{a:.4g}" for a in vals) if isinstance(vals, list) else str(vals)
            rows.append({"name": k, "kind": kind, "shape": str(tuple(v["shape"])), "dtype": v["dtype"],
                         "requires_grad": str(v["requires_grad"]), "value": text})
    return rows


def histogram(values: torch.Tensor, bins: int = 40, lo: float | None = None, hi: float | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) of a tensor's values: a compact histogram for plotting."""
    a = values.detach().float().reshape(-1).cpu().numpy()
    lo = float(a.min()) if lo is None else lo
    hi = float(a.max()) if hi is None else hi
    if hi <= lo:
        hi = lo + 1e-6
    counts, edges = np.histogram(a, bins=bins, range=(lo, hi))
    return counts, edges


def stats_rows(result: TrainEval) -> list[dict]:
    """One row per channel: statistics before, after (train mode), after (eval mode), and gamma/beta."""
    layer = result.layer
    rows = []
    for c in range(result.before.mean.numel()):
        row = {
            "channel": c,
            "mean before": float(result.before.mean[c]),
            "var before": float(result.before.var[c]),
            "mean after (train)": float(result.after_train.mean[c]),
            "var after (train)": float(result.after_train.var[c]),
        }
        if result.after_eval is not None:
            row["mean after (eval)"] = float(result.after_eval.mean[c])
            row["var after (eval)"] = float(result.after_eval.var[c])
        row["gamma"] = float(layer.weight[c].detach()) if layer.affine else 1.0
        row["beta"] = float(layer.bias[c].detach()) if layer.affine else 0.0
        rows.append(row)
    return rows
