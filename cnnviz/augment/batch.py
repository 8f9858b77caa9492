"""The training-time augmentation path: a Pipeline applied to a whole uint8 batch on its device.

`BatchAugmenter(pipeline, device, num_classes)(x, y, generator)` takes x uint8 (B, C, H, W) and
labels y int64 (B,) and returns float32 images and labels (soft (B, K) after MixUp/CutMix).

It follows `Pipeline.build()` step by step with the same dtype plan (uint8 until the first step
that needs floats, then float32 in [0, 1]), but draws one random number per sample per step from
the given torch.Generator and applies the step to the whole batch at once:

- RandomCrop and flips: consecutive crops/flips become per-sample row/column index vectors
  (a flip reverses them, a crop slices them at per-sample offsets, after one pad of the batch:
  constant / edge / reflect) and are applied with ONE gather (no Python loop over samples).
- RandomGrayscale: per-sample mask + torch.where.
- Resize, CenterCrop, Normalize: torchvision.transforms.v2.functional on the whole batch.
- ColorJitter with only brightness and/or contrast: per-sample factors and per-sample order, same
  blend formulas as torchvision.
- RandomErasing: per-sample boxes (10 vectorised tries like torchvision) written with a mask.
- RandomRotation, RandomAffine, RandomDiscreteRotation: per-sample matrices and ONE grid_sample over
  the batch, with torchvision's own matrix, grid and fill formulas (quarter turns: torch.rot90).
- MixUp / CutMix: torchvision's own batch transforms (one of them per batch when both are present).

Anything else (RandomResizedCrop, blur, full ColorJitter, the policies, symmetric
padding) runs per sample through the torchvision v2 transform; those steps are listed in
`fallback_steps`. Randomness in torchvision calls comes from the global CPU generator, which is
temporarily re-seeded from `generator` (and restored), so results are deterministic per generator.
Random draws are made on the generator's device and moved to the data's device, so the same code
runs on CPU and CUDA.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .pipeline import Pipeline, Step, _instantiate
from .specs import SPECS

_GREY = (0.2989, 0.587, 0.114)


class BatchAugmenter:
    """Apply a Pipeline to uint8 batches on `device` (see module docstring)."""

    def __init__(self, pipeline: Pipeline, device: torch.device | str, num_classes: int) -> None:
        self.pipeline = pipeline
        self.device = torch.device(device)
        self.num_classes = int(num_classes)
        self.normalizes: bool = pipeline.normalizes
        self.fallback_steps: list[str] = []
        self._ops: list[tuple[str, bool, Callable]] = []   # (name, needs_float, fn(x, g) -> x)
        group: list[Step] = []   # consecutive crops/flips: fused into one gather
        for step in pipeline.image_steps + [None]:
            if step is not None and _is_index_step(step):
                group.append(step)
                continue
            if group:
                steps = list(group)
                self._ops.append(("+".join(s.name for s in steps), False,
                                  lambda x, g, steps=steps: _index_group(x, g, steps)))
                group = []
            if step is None:
                break
            fn = self._batched(step)
            if fn is None:
                self.fallback_steps.append(step.name)
                fn = self._fallback(step)
            self._ops.append((step.name, SPECS[step.name].needs_float, fn))
        self._batch_tf = pipeline.build_batch(self.num_classes) if pipeline.batch_steps else None
        self.batch_steps: list[str] = [s.name for s in pipeline.batch_steps]

    def __repr__(self) -> str:
        return (f"BatchAugmenter(steps={[n for n, _, _ in self._ops] + self.batch_steps}, "
                f"fallback={self.fallback_steps}, device={self.device})")

    # ---- public ------------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """x uint8 (B, C, H, W) -> float32 (B, C, H', W') in [0, 1] (or normalised); y -> y or soft (B, K)."""
        if x.ndim != 4:
            raise ValueError(f"BatchAugmenter expects a (B, C, H, W) batch, got shape {tuple(x.shape)}.")
        for step in self.pipeline.image_steps:
            if step.name == "Normalize" and len(step.params["mean"]) not in (1, x.shape[1]):
                raise ValueError(f"Normalize has {len(step.params['mean'])} mean values but the images have "
                                 f"{x.shape[1]} channel(s): give 1 or {x.shape[1]} values.")
        g = generator if generator is not None else torch.default_generator
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        floated = x.is_floating_point()
        for _name, needs_float, fn in self._ops:
            if needs_float and not floated:
                x, floated = _to_float(x), True
            x = fn(x, g)
        if not floated:
            x = _to_float(x)
        if self._batch_tf is not None and x.shape[0] > 1:
            with _seeded_cpu_rng(g):
                x, y = self._batch_tf(x, y)
            x = x.as_subclass(torch.Tensor)
        return x.contiguous(), y

    def output_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of the output for inputs of size hw (runs the pipeline once on a blank image)."""
        t = self.pipeline.build()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            out = t(torch.zeros(3, int(hw[0]), int(hw[1]), dtype=torch.uint8))
        return int(out.shape[-2]), int(out.shape[-1])

    # ---- step builders ---------------------------------------------------------------------------
    def _batched(self, step: Step) -> Callable | None:
        p, n = step.params, step.name
        if n == "RandomGrayscale":
            return lambda x, g: _where(_rand(x.shape[0], g, x.device) < p["p"], _grey(x), x)
        if n == "Resize":
            return lambda x, g: F.resize(x, _size_list(p["size"]) if isinstance(p["size"], list) else [p["size"]],
                                         interpolation=v2.InterpolationMode(p["interpolation"]),
                                         antialias=p["antialias"])
        if n == "CenterCrop":
            return lambda x, g: F.center_crop(x, _size_list(p["size"]))
        if n == "Normalize":
            return lambda x, g: F.normalize(x, p["mean"], p["std"])
        if n == "RandomErasing":
            return lambda x, g: _random_erasing(x, g, p)
        if n == "ColorJitter" and not p["saturation"] and not p["hue"]:
            return lambda x, g: _jitter_bc(x, g, p["brightness"], p["contrast"])
        if n == "RandomRotation":
            lo, hi = (-p["degrees"], p["degrees"]) if not isinstance(p["degrees"], list) else p["degrees"]
            return lambda x, g: _affine(x, -_uniform(x.shape[0], g, lo, hi), None, None, None, p)
        if n == "RandomDiscreteRotation":
            return lambda x, g: _discrete_rotation(x, g, p)
        if n == "RandomAffine":
            return lambda x, g: _random_affine(x, g, p)
        return None

    def _fallback(self, step: Step) -> Callable:
        t = _instantiate(SPECS[step.name].calls(step.params))

        def run(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            with _seeded_cpu_rng(g):
                return torch.stack([t(xi).as_subclass(torch.Tensor) for xi in x])
        return run


# ---- helpers --------------------------------------------------------------------------------------
class _seeded_cpu_rng:
    """Re-seed the global CPU RNG from `g` for a torchvision call, restoring it afterwards."""

    def __init__(self, g: torch.Generator) -> None:
        self.seed = int(torch.randint(0, 2**62, (1,), generator=g, device=g.device))

    def __enter__(self) -> None:
        self.state = torch.random.get_rng_state()
        torch.default_generator.manual_seed(self.seed)

    def __exit__(self, *exc) -> None:
        torch.random.set_rng_state(self.state)


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return F.to_dtype(x, torch.float32, scale=True)


def _rand(n: int, g: torch.Generator, device: torch.device, *shape: int) -> torch.Tensor:
    return torch.rand((n, *shape), generator=g, device=g.device).to(device)


def _randint(high: torch.Tensor | int, g: torch.Generator, n: int, device: torch.device) -> torch.Tensor:
    """Per-sample integers in [0, high) (high may be a per-sample tensor)."""
    u = torch.rand(n, generator=g, device=g.device, dtype=torch.float64).to(device)
    high_t = torch.as_tensor(high, device=device)
    return torch.minimum((u * high_t).long(), high_t - 1).clamp_min(0)


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.view(-1, 1, 1, 1), a, b)


def _size_list(size: int | list[int]) -> list[int]:
    return [size, size] if isinstance(size, int) else list(size)


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    return F.rgb_to_grayscale(x, num_output_channels=x.shape[1])


def _is_index_step(step: Step) -> bool:
    return step.name in ("RandomHorizontalFlip", "RandomVerticalFlip") or (
        step.name == "RandomCrop" and step.params["padding_mode"] != "symmetric")


def _crop_padding(p: dict, h: int, w: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) like torchvision's RandomCrop.make_params (incl. pad_if_needed)."""
    ch, cw = _size_list(p["size"])
    left = right = top = bottom = p["padding"]
    if p["pad_if_needed"]:
        if h + top + bottom < ch:
            d = ch - (h + top + bottom)
            top, bottom = top + d, bottom + d
        if w + left + right < cw:
            d = cw - (w + left + right)
            left, right = left + d, right + d
    return left, right, top, bottom


def _index_group(x: torch.Tensor, g: torch.Generator, steps: list[Step]) -> torch.Tensor:
    """Consecutive RandomCrop / flips as per-sample row and column index vectors, applied by ONE gather.

    Flips reverse a sample's index vector; a crop slices it at per-sample offsets; a crop with
    padding first materialises the current result and pads it once for the whole batch.
    """
    b, c = x.shape[:2]
    dev = x.device
    base = x
    rows: torch.Tensor | None = None          # (B, H') indices into base rows; None = identity
    cols: torch.Tensor | None = None

    def materialise() -> torch.Tensor:
        if rows is None:
            return base
        hb, wb = base.shape[-2:]
        idx = (rows[:, :, None] * wb + cols[:, None, :]).view(b, 1, -1).expand(b, c, -1)
        return base.flatten(2).gather(2, idx).view(b, c, rows.shape[1], cols.shape[1])

    for step in steps:
        p = step.params
        if rows is None:
            hb, wb = base.shape[-2:]
            rows = torch.arange(hb, device=dev).expand(b, hb)
            cols = torch.arange(wb, device=dev).expand(b, wb)
        if step.name == "RandomCrop":
            pads = _crop_padding(p, rows.shape[1], cols.shape[1])
            if any(pads):
                base = materialise()
                mode = {"constant": "constant", "edge": "replicate", "reflect": "reflect"}[p["padding_mode"]]
                if mode == "constant":
                    base = torch.nn.functional.pad(base, pads, value=p["fill"])
                else:  # replicate/reflect need float on some backends
                    base = torch.nn.functional.pad(base.float(), pads, mode=mode).to(x.dtype)
                hb, wb = base.shape[-2:]
                rows = torch.arange(hb, device=dev).expand(b, hb)
                cols = torch.arange(wb, device=dev).expand(b, wb)
            ch, cw = _size_list(p["size"])
            hp, wp = rows.shape[1], cols.shape[1]
            if hp < ch or wp < cw:
                raise ValueError(f"RandomCrop size {(ch, cw)} is larger than the padded image {(hp, wp)}.")
            tops = _randint(hp - ch + 1, g, b, dev)
            lefts = _randint(wp - cw + 1, g, b, dev)
            rows = rows.gather(1, tops[:, None] + torch.arange(ch, device=dev))
            cols = cols.gather(1, lefts[:, None] + torch.arange(cw, device=dev))
        else:
            flip = (_rand(b, g, dev) < p["p"])[:, None]
            if step.name == "RandomHorizontalFlip":
                cols = torch.where(flip, cols.flip(1), cols)
            else:
                rows = torch.where(flip, rows.flip(1), rows)
    return materialise()


def _uniform(n: int, g: torch.Generator, lo: float, hi: float) -> torch.Tensor:
    """Per-sample float64 uniforms in [lo, hi] on the generator's device (CPU for the matrices)."""
    return (lo + (hi - lo) * torch.rand(n, generator=g, device=g.device, dtype=torch.float64)).cpu()


def _affine(x: torch.Tensor, angle: torch.Tensor, translate: torch.Tensor | None, scale: torch.Tensor | None,
            shear: torch.Tensor | None, p: dict) -> torch.Tensor:
    """torchvision's affine_image (centre 0, per-sample angle/translate/scale/x-shear) on the whole batch.

    Same inverse matrix (_get_inverse_affine_matrix), grid (_affine_grid) and fill handling
    (_apply_grid_transform), vectorised over the batch with one grid_sample call.
    """
    b, c, h, w = x.shape
    dev = x.device
    ft = x.dtype if x.is_floating_point() else torch.float32
    zeros = torch.zeros(b, dtype=torch.float64)
    rot = torch.deg2rad(angle)
    sx = torch.deg2rad(shear) if shear is not None else zeros
    tx, ty = (translate[:, 0], translate[:, 1]) if translate is not None else (zeros, zeros)
    s = scale if scale is not None else torch.ones(b, dtype=torch.float64)
    a_ = torch.cos(rot)                      # shear_y = 0, so cos(rot - sy) / cos(sy) = cos(rot)
    b_ = -(a_ * torch.tan(sx) + torch.sin(rot))
    c_ = torch.sin(rot)
    d_ = torch.cos(rot) - c_ * torch.tan(sx)
    m = torch.stack([d_ / s, -b_ / s, zeros, -c_ / s, a_ / s, zeros], 1)
    m[:, 2] += -m[:, 0] * tx - m[:, 1] * ty
    m[:, 5] += -m[:, 3] * tx - m[:, 4] * ty
    theta = m.to(device=dev, dtype=ft).view(b, 2, 3)
    base = torch.empty(1, h, w, 3, dtype=ft, device=dev)
    base[..., 0].copy_(torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w, device=dev))
    base[..., 1].copy_(torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h, device=dev).unsqueeze_(-1))
    base[..., 2].fill_(1)
    rescaled = theta.transpose(1, 2).div_(torch.tensor([0.5 * w, 0.5 * h], dtype=ft, device=dev))
    grid = base.view(1, h * w, 3).expand(b, -1, -1).bmm(rescaled).view(b, h, w, 2)
    img = x if x.is_floating_point() else x.to(ft)
    img = torch.cat([img, torch.ones(b, 1, h, w, dtype=ft, device=dev)], 1)
    mode = p["interpolation"]
    out = torch.nn.functional.grid_sample(img, grid, mode=mode, padding_mode="zeros", align_corners=False)
    out, mask = out[:, :c], out[:, c:].expand(-1, c, -1, -1)
    fill = torch.tensor(float(p["fill"]), dtype=ft, device=dev)
    out = torch.where(mask < 0.5, fill, out) if mode == "nearest" else (out - fill) * mask + fill
    return out if x.is_floating_point() else out.round_().to(x.dtype)


def _random_affine(x: torch.Tensor, g: torch.Generator, p: dict) -> torch.Tensor:
    b, _, h, w = x.shape
    deg = p["degrees"]
    lo, hi = (-deg, deg) if not isinstance(deg, list) else deg
    angle = _uniform(b, g, lo, hi)
    translate = scale = shear = None
    if p["translate"] is not None:
        mx, my = float(p["translate"][0] * w), float(p["translate"][1] * h)
        translate = torch.stack([_uniform(b, g, -mx, mx), _uniform(b, g, -my, my)], 1).round()
    if p["scale"] is not None:
        scale = _uniform(b, g, *p["scale"])
    if p["shear"] is not None:
        sh = p["shear"]
        shear = _uniform(b, g, *((-sh, sh) if not isinstance(sh, list) else sh))
    return _affine(x, angle, translate, scale, shear, p)


def _discrete_rotation(x: torch.Tensor, g: torch.Generator, p: dict) -> torch.Tensor:
    """One of the listed angles per sample; quarter turns use torch.rot90 exactly like torchvision."""
    angles = p["angles"]
    b, _, h, w = x.shape
    idx = _randint(len(angles), g, b, torch.device("cpu"))
    chosen = torch.tensor(angles, dtype=torch.float64)[idx]
    quarter = all(a % 90 == 0 and (h == w or a % 180 == 0) for a in angles)
    if not quarter:
        return _affine(x, -chosen, None, None, None, p)
    k = ((chosen % 360) // 90).long().to(x.device)
    out = x.clone()
    for q in (1, 2, 3):
        sel = k == q
        if bool(sel.any()):
            out[sel] = torch.rot90(x[sel], q, dims=(-2, -1))
    return out


def _blend(a: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """torchvision's _blend with a per-sample ratio: ratio*a + (1-ratio)*other, clamped, cast back."""
    bound = 1.0 if a.is_floating_point() else 255.0
    r = ratio.view(-1, 1, 1, 1)
    out = (a.float() * r + other * (1.0 - r)).clamp_(0, bound)
    return out if a.is_floating_point() else out.to(a.dtype)


def _jitter_bc(x: torch.Tensor, g: torch.Generator, brightness: float, contrast: float) -> torch.Tensor:
    b = x.shape[0]
    dev = x.device
    order = _rand(b, g, dev) < 0.5          # True: brightness first
    bf = (1 - brightness + 2 * brightness * _rand(b, g, dev)).clamp_min(0) if brightness else None
    cf = (1 - contrast + 2 * contrast * _rand(b, g, dev)).clamp_min(0) if contrast else None

    def bright(z: torch.Tensor) -> torch.Tensor:
        return z if bf is None else _blend(z, torch.zeros((), device=dev), bf)

    def contr(z: torch.Tensor) -> torch.Tensor:
        if cf is None:
            return z
        grey = _grey(z)[:, :1] if z.shape[1] == 3 else z
        mean = grey.float().mean(dim=(-3, -2, -1), keepdim=True)
        return _blend(z, mean, cf)
    if bf is None or cf is None:
        return contr(bright(x))
    return _where(order, contr(bright(x)), bright(contr(x)))


def _random_erasing(x: torch.Tensor, g: torch.Generator, p: dict) -> torch.Tensor:
    """Per-sample erase boxes, drawn like torchvision (up to 10 tries of area and log-ratio)."""
    b, _, h, w = x.shape
    dev = x.device
    apply = _rand(b, g, dev) < p["p"]
    tries = 10
    area = h * w * (p["scale"][0] + (p["scale"][1] - p["scale"][0]) * _rand(b, g, dev, tries))
    lr0, lr1 = math.log(p["ratio"][0]), math.log(p["ratio"][1])
    ratio = torch.exp(lr0 + (lr1 - lr0) * _rand(b, g, dev, tries))
    eh = torch.sqrt(area * ratio).round().long()
    ew = torch.sqrt(area / ratio).round().long()
    ok = (eh < h) & (ew < w)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.zeros_like(ok[:, 0], dtype=torch.long))
    eh = eh.gather(1, first[:, None])[:, 0]
    ew = ew.gather(1, first[:, None])[:, 0]
    apply = apply & ok.any(1)
    top = _randint(h - eh + 1, g, b, dev)
    left = _randint(w - ew + 1, g, b, dev)
    r = torch.arange(h, device=dev)[None, :, None]
    c = torch.arange(w, device=dev)[None, None, :]
    box = ((r >= top[:, None, None]) & (r < (top + eh)[:, None, None])
           & (c >= left[:, None, None]) & (c < (left + ew)[:, None, None]) & apply[:, None, None])
    return torch.where(box[:, None], torch.as_tensor(p["value"], dtype=x.dtype, device=dev), x)
