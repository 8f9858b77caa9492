"""Receptive fields, computed analytically through the network's real graph.

`trace(model, input_shape)` runs the model once on the `meta` device (no arithmetic, no
memory) under a dispatch mode that follows every tensor: a convolution or pooling updates
the receptive field size r, the jump j (input pixels between neighbouring output cells,
i.e. the total stride) and the centre of the first cell, with the usual recurrences

    r_out = r_in + (k - 1) * d * j_in,   j_out = j_in * s,   c_out = c_in + ((k - 1) * d / 2 - p) * j_in

and every other op (add, concat, ReLU, BN, ...) passes on the largest field among its
inputs, so branches (Inception) and shortcuts (ResNet) are handled exactly. Global pooling
and anything after a flatten see the whole input.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from PIL import Image, ImageDraw
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

aten = torch.ops.aten


@dataclass(frozen=True)
class RField:
    """Receptive field of one output cell, per axis (height, width), in input pixels."""

    size: tuple[float, float]     # side of the field
    jump: tuple[float, float]     # input pixels between neighbouring cells (total stride)
    start: tuple[float, float]    # centre of cell (0, 0) in input pixel coordinates
    whole: bool = False           # the cell sees the whole input (after global pooling / flatten)

    def box(self, row: int, col: int) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) in input pixels of cell (row, col), unclipped, edges inclusive."""
        cy = self.start[0] + row * self.jump[0]
        cx = self.start[1] + col * self.jump[1]
        hy, hx = (self.size[0] - 1) / 2, (self.size[1] - 1) / 2
        return (cx - hx, cy - hy, cx + hx, cy + hy)


WHOLE = RField((math.inf, math.inf), (math.inf, math.inf), (0.0, 0.0), whole=True)
IDENTITY = RField((1.0, 1.0), (1.0, 1.0), (0.0, 0.0))


@dataclass(frozen=True)
class LayerInfo:
    """One module call in forward order: `name` (":2" etc. for a module called again), type, output shape."""

    name: str
    type: str
    shape: tuple[int, ...]        # output shape, batch included
    rf: RField | None             # None when the output is not a tensor
    depth: int                    # nesting level (1 = a direct child of the model)
    params: int                   # parameters of this module and its children (on its first call only)


def _pair(v, default=None) -> tuple[int, int]:
    if v is None or (isinstance(v, (list, tuple)) and len(v) == 0):
        v = default
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[-1])) if len(v) else (1, 1)
    return (int(v), int(v))


def _step(rf: RField, k, s, p, d) -> RField:
    if rf.whole:
        return rf
    size = tuple(rf.size[i] + (k[i] - 1) * d[i] * rf.jump[i] for i in range(2))
    start = tuple(rf.start[i] + ((k[i] - 1) * d[i] / 2 - p[i]) * rf.jump[i] for i in range(2))
    jump = tuple(rf.jump[i] * s[i] for i in range(2))
    return RField(size, jump, start)  # type: ignore[arg-type]


def _adaptive(rf: RField, in_hw, out_hw) -> RField:
    if tuple(out_hw) == (1, 1):
        return WHOLE
    k, s = [], []
    for n, o in zip(in_hw, out_hw):
        s.append(max(1, n // o))
        k.append(math.ceil(n / o) + (0 if n % o == 0 else 1))
    return _step(rf, k, s, (0, 0), (1, 1))


class _Tracker(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[int, RField] = {}
        self.keep: list[torch.Tensor] = []   # ids stay unique while the tensors live

    def set(self, t: torch.Tensor, rf: RField) -> None:
        self.fields[id(t)] = rf
        self.keep.append(t)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        ins = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor) and id(t) in self.fields]
        if not ins:
            return out
        rf_in = max((self.fields[id(t)] for t in ins), key=lambda f: (f.whole, f.size))
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        packet = func.overloadpacket
        if packet is aten.convolution and not args[6]:
            w = args[1]
            rf = _step(rf_in, tuple(w.shape[2:]), _pair(args[3]), _pair(args[4]), _pair(args[5]))
        elif packet in (aten.max_pool2d_with_indices, aten.max_pool2d):
            k = _pair(args[1])
            rf = _step(rf_in, k, _pair(args[2] if len(args) > 2 else None, k),
                       _pair(args[3] if len(args) > 3 else 0), _pair(args[4] if len(args) > 4 else 1))
        elif packet is aten.avg_pool2d:
            k = _pair(args[1])
            rf = _step(rf_in, k, _pair(args[2] if len(args) > 2 else None, k),
                       _pair(args[3] if len(args) > 3 else 0), (1, 1))
        elif packet in (aten._adaptive_avg_pool2d, aten.adaptive_avg_pool2d, aten.adaptive_max_pool2d) \
                and x is not None and x.dim() == 4:
            rf = _adaptive(rf_in, tuple(x.shape[-2:]), _pair(args[1]))
        elif packet in (aten.mean, aten.amax, aten.sum) and x is not None and x.dim() == 4:
            rf = rf_in if len(args) > 1 and set(int(a) % 4 for a in args[1]) <= {0, 1} else WHOLE
        else:
            rf = rf_in
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.set(t, rf if t.dim() == 4 else WHOLE)
        return out


def meta_copy(model: nn.Module) -> nn.Module:
    """A structural copy of `model` on the `meta` device; the real weights are never copied."""
    memo: dict[int, object] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(model, memo)


def trace(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerInfo]:
    """Every module call of `model` on an input of `input_shape` ((C,H,W) or (N,C,H,W)), in forward order.

    Runs on a copy of the model on the `meta` device, so it costs no arithmetic; hooks are
    removed even if the forward fails.
    """
    shape = tuple(input_shape) if len(input_shape) == 4 else (1, *input_shape)
    meta = meta_copy(model).eval()
    depth = {n: (0 if n == "" else n.count(".") + 1) for n, _ in meta.named_modules()}
    name_of = {id(m): n for n, m in meta.named_modules()}
    order: list[tuple[str, nn.Module]] = []
    outputs: dict[int, object] = {}
    calls: dict[str, int] = {}
    tracker = _Tracker()

    def pre(mod, _inp):
        n = name_of[id(mod)]
        calls[n] = calls.get(n, 0) + 1
        order.append((n if calls[n] == 1 else f"{n}:{calls[n]}", mod))
        mod._cnnviz_slots = getattr(mod, "_cnnviz_slots", []) + [len(order) - 1]  # type: ignore[attr-defined]

    def post(mod, _inp, out):
        outputs[mod._cnnviz_slots.pop()] = out

    handles = []
    try:
        for n, m in meta.named_modules():
            if n:
                handles.append(m.register_forward_pre_hook(pre))
                handles.append(m.register_forward_hook(post))
        x = torch.zeros(shape, device="meta")
        with torch.no_grad(), tracker:
            tracker.set(x, IDENTITY)
            meta(x)
    finally:
        for h in handles:
            h.remove()
    rows: list[LayerInfo] = []
    seen: set[str] = set()
    for i, (n, mod) in enumerate(order):
        out = outputs.get(i)
        if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
            out = out[0]
        base = n.split(":")[0]
        params = 0 if base in seen else sum(p.numel() for p in mod.parameters())
        seen.add(base)
        if isinstance(out, torch.Tensor):
            rows.append(LayerInfo(n, type(mod).__name__, tuple(out.shape), tracker.fields.get(id(out), WHOLE),
                                  depth[base], params))
        else:
            rows.append(LayerInfo(n, type(mod).__name__, (), None, depth[base], params))
    return rows


def draw_box(image: Image.Image, box: tuple[float, float, float, float], input_size: tuple[int, int],
             color: tuple[int, int, int] = (255, 40, 40), width: int = 3) -> Image.Image:
    """Draw `box` (given in model-input pixels of `input_size` = (H, W)) on `image`, scaled to its size.

    The box is clipped to the image; a field larger than the image shows as the whole frame.
    """
    im = image.convert("RGB").copy()
    sy, sx = im.height / input_size[0], im.width / input_size[1]
    l, t, r, b = box
    l, r = max(0.0, l) * sx, min(input_size[1], r + 1) * sx
    t, b = max(0.0, t) * sy, min(input_size[0], b + 1) * sy
    ImageDraw.Draw(im).rectangle([l, t, max(l, r - 1), max(t, b - 1)], outline=color, width=width)
    return im
