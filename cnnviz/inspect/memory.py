"""How much memory a forward pass will need, worked out on the `meta` device before running it.

`estimate(model, (C, H, W))` runs the model once on a shape-only copy (`receptive.meta_copy`: no
arithmetic, no memory, whatever the sizes) with a hook on every module and returns, per sample:

- `largest`: the largest single output (bytes);
- `inference`: the peak of a no-grad forward: the largest input + output of one layer, plus one more
  largest output for what stays alive beside it (a shortcut, a hooked copy);
- `training`: what autograd keeps: every layer's output, twice (activations and their gradients);
- `output`: the model's output (the logits) per sample.

Callers turn these into a refusal (`cnnviz.limits.check_budget`) or a batch size that fits
(`cnnviz.limits.fit_batch`). Estimates are cached per model object and input shape.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import nn

from .receptive import meta_copy


@dataclass(frozen=True)
class Estimate:
    """Bytes per sample of one forward pass (see the module docstring)."""

    largest: int
    inference: int
    training: int
    output: int
    input: int


_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, Estimate]]" = weakref.WeakKeyDictionary()


def _nbytes(obj: object) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(_nbytes(o) for o in obj.values())
    return 0


def _dtype(model: nn.Module) -> torch.dtype:
    p = next((t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()), None)
    return p.dtype if p is not None else torch.float32


def estimate(model: nn.Module, input_shape: tuple[int, ...]) -> Estimate:
    """Per-sample bytes of a forward pass of `model` on one (C, H, W) input (see the module docstring)."""
    shape = tuple(int(v) for v in input_shape)
    per = _CACHE.setdefault(model, {}) if _weakable(model) else {}
    hit = per.get(shape)
    if hit is not None:
        return hit
    meta = meta_copy(model).eval()
    dtype = _dtype(meta)
    largest = layer_peak = total = 0

    def hook(mod, inp, out):
        nonlocal largest, layer_peak, total
        o = _nbytes(out)
        largest = max(largest, o)
        if not any(True for _ in mod.children()):  # a leaf: its input and output live at once
            layer_peak = max(layer_peak, _nbytes(inp) + o)
            total += o

    handles = [m.register_forward_hook(hook) for m in meta.modules()]
    try:
        x = torch.zeros((1, *shape), device="meta", dtype=dtype)
        with torch.no_grad():
            out = meta(x)
    finally:
        for h in handles:
            h.remove()
    inp = _nbytes(x)
    largest = max(largest, inp)
    est = Estimate(largest=largest, inference=max(layer_peak, inp) + largest, training=2 * (total + inp),
                   output=_nbytes(out), input=inp)
    per[shape] = est
    return est


def _weakable(model: nn.Module) -> bool:
    try:
        weakref.ref(model)
    except TypeError:
        return False
    return True
