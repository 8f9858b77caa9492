"""Per-layer health of a network: weight norms, gradient norms, update/weight ratios, dead ReLUs.

- `epoch_layer_stats(model)`: what the training engine logs at each epoch end (one call, into the
  epoch record of metrics.jsonl as `"layers": {name: {...}}`): for every module that owns a
  `weight` (conv, linear, norm layers), the L2 norm of its parameters, of their gradients (the
  gradient of the epoch's last step, still in `.grad`), and the update/weight ratio
  ||W_now - W_previous epoch|| / ||W_previous epoch||. The previous epoch's weights are kept (on
  the CPU) per model object, so the first epoch a process trains has no ratio (None).
- `layer_series(epochs)`: those records, read back from a run's epoch list, as {stat: {layer: [...]}}.
- `dead_relu_fraction(model, x)`: the share of ReLU units that never fire on a probe batch, for
  `nn.ReLU` modules and functional `F.relu` / `torch.relu` calls alike.
- `gradient_lesson(depth, shortcuts)`: the vanishing-gradient picture: per-layer gradient norms of
  a deep plain net without BatchNorm, and of the same net with shortcuts.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

STATS = ("weight_norm", "grad_norm", "update_ratio")
_PREVIOUS: "weakref.WeakKeyDictionary[nn.Module, dict[str, torch.Tensor]]" = weakref.WeakKeyDictionary()


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every module that owns a `weight` parameter, in definition order."""
    return [(n, m) for n, m in model.named_modules()
            if n and isinstance(getattr(m, "weight", None), nn.Parameter)]


def _own_params(m: nn.Module) -> list[nn.Parameter]:
    return [p for p in m.parameters(recurse=False)]


def _norm(tensors: list[torch.Tensor]) -> float:
    if not tensors:
        return 0.0
    return float(torch.sqrt(sum(t.detach().float().pow(2).sum() for t in tensors)))


@torch.no_grad()
def epoch_layer_stats(model: nn.Module) -> dict[str, dict[str, float | None]]:
    """{layer: {"weight_norm", "grad_norm", "update_ratio"}} for `model` now (see the module doc).

    grad_norm is None for a layer whose parameters hold no gradient; update_ratio is None the first
    time this model object is seen. Cheap: one pass over the parameters, a CPU copy of them kept.
    """
    model = getattr(model, "module", model)  # DDP / compiled wrappers: the plain model's names
    prev = _PREVIOUS.get(model)
    now: dict[str, torch.Tensor] = {}
    out: dict[str, dict[str, float | None]] = {}
    for name, m in weighted_layers(model):
        params = _own_params(m)
        flat = torch.cat([p.detach().float().flatten() for p in params]).cpu()
        now[name] = flat
        grads = [p.grad for p in params if p.grad is not None]
        ratio = None
        if prev is not None and name in prev and prev[name].shape == flat.shape:
            base = float(prev[name].norm())
            ratio = float((flat - prev[name]).norm()) / base if base > 0 else None
        out[name] = {"weight_norm": float(flat.norm()), "grad_norm": _norm(grads) if grads else None,
                     "update_ratio": ratio}
    _PREVIOUS[model] = now
    return out


def layer_series(epochs: list[dict]) -> tuple[list[int], dict[str, dict[str, list[float | None]]]]:
    """(epoch numbers, {stat: {layer: values per epoch}}) from a run's epoch records (those that carry
    `layers`); a layer missing at an epoch gets None there."""
    recs = [e for e in epochs if isinstance(e.get("layers"), dict)]
    nums = [int(e.get("epoch", i + 1)) for i, e in enumerate(recs)]
    names: list[str] = []
    for e in recs:
        names += [n for n in e["layers"] if n not in names]
    series = {s: {n: [] for n in names} for s in STATS}
    for e in recs:
        for n in names:
            rec = e["layers"].get(n) or {}
            for s in STATS:
                v = rec.get(s)
                series[s][n].append(float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None)
    return nums, series


# ---------------------------------------------------------------------------------------------
# Dead ReLUs on a probe batch

class _ReluWatch(TorchFunctionMode):
    """Sees every relu call (module or functional) and records, per call site, which units fired."""

    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.fired: dict[str, torch.Tensor] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.count: dict[str, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (F.relu, torch.relu, torch.relu_, torch.nn.functional.relu_) and isinstance(out, torch.Tensor):
            where = self.stack[-1] if self.stack else "(model)"
            self.count[where] = self.count.get(where, 0) + 1
            key = where if self.count[where] == 1 else f"{where}:{self.count[where]}"
            unit = (out.detach() > 0).any(dim=0)  # per unit (channel x position, or feature)
            self.fired[key] = unit if key not in self.fired else (self.fired[key] | unit)
            self.shapes[key] = tuple(out.shape[1:])
        return out


@dataclass
class DeadRelu:
    """One ReLU call site: how many of its units never fired on the probe batch."""

    layer: str
    units: int
    dead: int
    dead_channels: int   # channels dead at every position (spatial outputs), else = dead
    channels: int

    @property
    def fraction(self) -> float:
        return self.dead / max(1, self.units)


def _push(stack: list[str], name: str) -> None:
    stack.append(name)  # (a hook that returns something would replace the module's input)


def _pop(stack: list[str]) -> None:
    if stack:
        stack.pop()  # (likewise: returning the name would replace the module's output)


@torch.no_grad()
def dead_relu_fraction(model: nn.Module, x: torch.Tensor) -> list[DeadRelu]:
    """For each ReLU call in `model`'s forward on the probe batch `x` (eval mode): units (and
    channels) whose output is 0 for every image of the batch. Named by the module that calls it."""
    stack: list[str] = []
    handles = []
    for name, m in model.named_modules():
        if not name:
            continue
        handles.append(m.register_forward_pre_hook(lambda _m, _i, n=name: _push(stack, n)))
        handles.append(m.register_forward_hook(lambda _m, _i, _o: _pop(stack)))
    was = model.training
    model.eval()
    watch = _ReluWatch(stack)
    try:
        param = next(model.parameters(), None)
        with watch:
            model(x.to(param.device) if param is not None else x)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    out = []
    for key, fired in watch.fired.items():
        dead = int((~fired).sum())
        if fired.dim() == 3:
            chans, dead_ch = fired.shape[0], int((~fired.flatten(1).any(1)).sum())
        else:
            chans, dead_ch = fired.numel(), dead
        out.append(DeadRelu(key, fired.numel(), dead, dead_ch, chans))
    return out


# ---------------------------------------------------------------------------------------------
# The lesson: vanishing gradients in a deep plain net, and what shortcuts change

class DeepNet(nn.Module):
    """`depth` 3x3 conv + ReLU layers of `width` channels (no BatchNorm), global pooling, a linear head;
    with `shortcuts`, every layer after the first adds its input back: x + relu(conv(x))."""

    def __init__(self, depth: int = 20, width: int = 16, shortcuts: bool = False, in_channels: int = 3,
                 num_classes: int = 10) -> None:
        super().__init__()
        self.shortcuts = shortcuts
        self.convs = nn.ModuleList([nn.Conv2d(in_channels if i == 0 else width, width, 3, padding=1)
                                    for i in range(depth)])
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            y = F.relu(conv(x))
            x = x + y if (self.shortcuts and i > 0) else y
        return self.fc(x.mean(dim=(2, 3)))


def grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """{layer: gradient norm of its parameters} after one cross-entropy backward pass on (x, y)."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    out = {}
    for name, m in weighted_layers(model):
        grads = [p.grad for p in _own_params(m) if p.grad is not None]
        out[name] = _norm(grads) if grads else 0.0
    model.zero_grad(set_to_none=True)
    return out


def gradient_lesson(depth: int = 20, shortcuts: bool = False, seed: int = 0, batch: int = 32,
                    size: int = 16) -> dict[str, float]:
    """Per-layer gradient norms (conv layers in depth order, then the head) of a freshly initialised
    `DeepNet` (PyTorch's default init) on a seeded random batch: the plain net's early layers get
    gradients orders of magnitude smaller than its last ones; with shortcuts they do not."""
    if not 2 <= depth <= 200:
        raise ValueError(f"depth must be between 2 and 200, not {depth}.")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DeepNet(depth, shortcuts=shortcuts)
    x = torch.randn(batch, 3, size, size, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    return grad_norms(model, x, y)
