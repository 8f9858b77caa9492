"""The declarative table of augmentation transforms the studio supports.

One `TransformSpec` per transform: its name (the torchvision.transforms.v2 class name, except
`RandomDiscreteRotation`, a documented composite), typed parameters with range, default and help,
and a `calls()` function that turns validated parameters into a `Call` tree. That single tree is
what `Pipeline.build()` instantiates and what `Pipeline.to_code()` prints, so the two can't drift.

This module has no torch import: validation and code generation work without torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
PADDING_MODES = ("constant", "edge", "reflect", "symmetric")
POLICIES = ("imagenet", "cifar10", "svhn")


@dataclass(frozen=True)
class Param:
    """One typed parameter.

    kind: "float" | "int" | "bool" | "choice" | "range" (a number d meaning [-d, d], or [lo, hi])
    | "pair" ([lo, hi], lo <= hi) | "floats" (list of 1-4 numbers) | "ints" (list of 1-16 ints)
    | "size" (an int, or [height, width]).  lo/hi bound every number.  optional: null allowed.
    """

    name: str
    kind: str
    default: Any
    lo: float | None = None
    hi: float | None = None
    help: str = ""
    choices: tuple[str, ...] = ()
    optional: bool = False
    step: float | None = None          # widget step hint


@dataclass(frozen=True)
class Call:
    """`v2.<fn>(*args, **kwargs)`; args/kwargs hold literals, lists or nested Calls."""

    fn: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TransformSpec:
    name: str
    group: str
    help: str
    params: tuple[Param, ...]
    calls: Callable[[dict], Call]
    batch_level: bool = False          # MixUp / CutMix: needs a batch and labels
    needs_float: bool = False          # a ToDtype(float32, scale=True) goes before it
    random: bool = True                # draws random numbers
    check: Callable[[dict], str | None] | None = None   # cross-parameter check -> message

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)


def _interp(default: str = "nearest", choices: tuple[str, ...] = INTERPOLATIONS[:2]) -> Param:
    """Rotations, affine and the policies resample tensors with nearest or bilinear only."""
    return Param("interpolation", "choice", default, choices=choices,
                 help="How new pixel values are computed: nearest keeps hard edges, bilinear smooths.")


def _fill() -> Param:
    return Param("fill", "int", 0, 0, 255, help="Grey level (0-255) for pixels that come from outside the image.")


def _size(default: int, help: str) -> Param:
    return Param("size", "size", default, 1, 1024, help=help)


def _kw(p: dict, *names: str) -> dict:
    return {n: p[n] for n in names}


def _rot(p: dict) -> Call:
    return Call("RandomRotation", kwargs=_kw(p, "degrees", "interpolation", "fill"))


def _discrete_rot(p: dict) -> Call:
    rots = [Call("RandomRotation", kwargs={"degrees": [a, a], "interpolation": p["interpolation"], "fill": p["fill"]})
            for a in p["angles"]]
    return Call("RandomChoice", args=(rots,))


def _crop(p: dict) -> Call:
    kw = {"size": p["size"], "padding": p["padding"] or None, "pad_if_needed": p["pad_if_needed"],
          "fill": p["fill"], "padding_mode": p["padding_mode"]}
    return Call("RandomCrop", kwargs=kw)


def _affine(p: dict) -> Call:
    return Call("RandomAffine", kwargs=_kw(p, "degrees", "translate", "scale", "shear", "interpolation", "fill"))


def _jitter(p: dict) -> Call:
    return Call("ColorJitter", kwargs={k: (p[k] or None) for k in ("brightness", "contrast", "saturation", "hue")})


def _odd_kernel(p: dict) -> str | None:
    return None if p["kernel_size"] % 2 == 1 else "GaussianBlur kernel_size must be odd (1, 3, 5, ...)."


def _randaug_check(p: dict) -> str | None:
    if p["magnitude"] >= p["num_magnitude_bins"]:
        return "RandAugment magnitude must be smaller than num_magnitude_bins."
    return None


def _norm_check(p: dict) -> str | None:
    if len(p["mean"]) != len(p["std"]):
        return "Normalize needs as many std values as mean values (1 or one per channel)."
    return None


def _simple(name: str) -> Callable[[dict], Call]:
    return lambda p: Call(name, kwargs=dict(p))


_P = Param("p", "float", 0.5, 0.0, 1.0, help="Probability that the step is applied to an image.", step=0.05)

SPECS: dict[str, TransformSpec] = {s.name: s for s in [
    TransformSpec("RandomHorizontalFlip", "Geometry", "Mirror left-right with probability p.", (_P,),
                  _simple("RandomHorizontalFlip")),
    TransformSpec("RandomVerticalFlip", "Geometry", "Mirror top-bottom with probability p.", (_P,),
                  _simple("RandomVerticalFlip")),
    TransformSpec("RandomRotation", "Geometry",
                  "Rotate by an angle drawn uniformly from a RANGE: 15 means [-15, 15] degrees. "
                  "(torchvision reads a 2-list as [min, max] and refuses longer lists: for a choice "
                  "among fixed angles use RandomDiscreteRotation.)",
                  (Param("degrees", "range", 15.0, -360.0, 360.0, help="d means [-d, d]; or [min, max].", step=1.0),
                   _interp(), _fill()), _rot),
    TransformSpec("RandomDiscreteRotation", "Geometry",
                  "Rotate by ONE of a few fixed angles, each equally likely (e.g. 90, 180, 270). Not a "
                  "torchvision class: it is built as v2.RandomChoice([v2.RandomRotation([a, a]), ...]), "
                  "which is what the tutorial's RandomRotation([90, 180, 270]) meant to do.",
                  (Param("angles", "ints", [90, 180, 270], -360, 360, help="Comma-separated angles in degrees."),
                   _interp(), _fill()), _discrete_rot),
    TransformSpec("RandomCrop", "Geometry",
                  "Pad each border by `padding` pixels, then cut a size x size window at a random place.",
                  (_size(32, "Output side (or [h, w])."),
                   Param("padding", "int", 4, 0, 128, help="Pixels added on every border before cropping (0 = none)."),
                   Param("pad_if_needed", "bool", False, help="Pad images smaller than size instead of failing."),
                   _fill(),
                   Param("padding_mode", "choice", "constant", choices=PADDING_MODES,
                         help="constant = fill colour; edge/reflect/symmetric copy border pixels.")), _crop),
    TransformSpec("Resize", "Geometry", "Scale so the shorter side becomes `size` (or to exactly [h, w]).",
                  (_size(32, "Shorter side after resizing (or [h, w])."), _interp("bilinear", INTERPOLATIONS),
                   Param("antialias", "bool", True, help="Low-pass filter when shrinking (avoids aliasing).")),
                  _simple("Resize"), random=False),
    TransformSpec("CenterCrop", "Geometry", "Cut the central size x size window.",
                  (_size(28, "Output side (or [h, w])."),), _simple("CenterCrop"), random=False),
    TransformSpec("RandomResizedCrop", "Geometry",
                  "Cut a random window covering a `scale` fraction of the area with aspect `ratio`, resize to size.",
                  (_size(32, "Output side (or [h, w])."),
                   Param("scale", "pair", [0.08, 1.0], 0.01, 1.0, help="Area fraction range.", step=0.01),
                   Param("ratio", "pair", [0.75, 1.3333333333333333], 0.1, 10.0, help="Aspect-ratio range.",
                         step=0.05),
                   _interp("bilinear", INTERPOLATIONS),
                   Param("antialias", "bool", True, help="Low-pass filter when shrinking.")),
                  _simple("RandomResizedCrop")),
    TransformSpec("RandomAffine", "Geometry",
                  "Rotate, randomly move (translate), scale and shear in one resampling.",
                  (Param("degrees", "range", 0.0, -360.0, 360.0, help="Rotation: d means [-d, d].", step=1.0),
                   Param("translate", "pair", [0.1, 0.1], 0.0, 1.0, optional=True, step=0.01,
                         help="Random move: [fx, fy] = largest shift as a fraction of width and height."),
                   Param("scale", "pair", [0.9, 1.1], 0.05, 4.0, optional=True, step=0.01,
                         help="Zoom factor range."),
                   Param("shear", "range", None, -90.0, 90.0, optional=True, step=1.0,
                         help="Shear angle: d means [-d, d] along x."),
                   _interp(), _fill()), _affine),
    TransformSpec("ColorJitter", "Colour",
                  "Random brightness, contrast, saturation and hue factors, applied in random order.",
                  (Param("brightness", "float", 0.4, 0.0, 2.0, help="Factor drawn from [1-b, 1+b] (0 = off).",
                         step=0.05),
                   Param("contrast", "float", 0.4, 0.0, 2.0, help="Factor drawn from [1-c, 1+c] (0 = off).",
                         step=0.05),
                   Param("saturation", "float", 0.4, 0.0, 2.0, help="Factor drawn from [1-s, 1+s] (0 = off; RGB only).",
                         step=0.05),
                   Param("hue", "float", 0.0, 0.0, 0.5, help="Hue shift drawn from [-h, h] (0 = off; RGB only).",
                         step=0.01)), _jitter),
    TransformSpec("RandomGrayscale", "Colour", "Turn the image grey with probability p.",
                  (Param("p", "float", 0.1, 0.0, 1.0, help="Probability.", step=0.05),), _simple("RandomGrayscale")),
    TransformSpec("GaussianBlur", "Colour", "Blur with a Gaussian whose sigma is drawn from a range.",
                  (Param("kernel_size", "int", 3, 1, 31, help="Odd kernel side in pixels.", step=2),
                   Param("sigma", "pair", [0.1, 2.0], 0.01, 20.0, help="Sigma range in pixels.", step=0.05)),
                  _simple("GaussianBlur"), check=_odd_kernel),
    TransformSpec("RandomErasing", "Erase & normalise",
                  "Blank a random rectangle (Cutout). Works on float tensors, so a ToDtype goes before it.",
                  (_P, Param("scale", "pair", [0.02, 0.33], 0.001, 1.0, help="Area fraction range.", step=0.01),
                   Param("ratio", "pair", [0.3, 3.3], 0.05, 20.0, help="Aspect-ratio range.", step=0.05),
                   Param("value", "float", 0.0, 0.0, 1.0, help="Value written into the box (0..1).", step=0.05)),
                  _simple("RandomErasing"), needs_float=True),
    TransformSpec("Normalize", "Erase & normalise",
                  "Subtract mean and divide by std per channel (values in 0..1 units). The output is no "
                  "longer an image in [0, 1]; the previews undo it for display.",
                  (Param("mean", "floats", [0.4914, 0.4822, 0.4465], -10.0, 10.0, help="Per-channel mean."),
                   Param("std", "floats", [0.247, 0.2435, 0.2616], 1e-6, 10.0, help="Per-channel std (> 0).")),
                  _simple("Normalize"), needs_float=True, random=False, check=_norm_check),
    TransformSpec("AutoAugment", "Policies", "Learned policy: a random pair of operations from the chosen policy.",
                  (Param("policy", "choice", "cifar10", choices=POLICIES, help="Policy learned on this dataset."),
                   _interp()),
                  lambda p: Call("AutoAugment", kwargs={"policy": Call("AutoAugmentPolicy", args=(p["policy"],)),
                                                        "interpolation": p["interpolation"]})),
    TransformSpec("RandAugment", "Policies", "num_ops random operations, all at one magnitude.",
                  (Param("num_ops", "int", 2, 0, 10, help="Operations per image."),
                   Param("magnitude", "int", 9, 0, 99, help="Strength bin (0 = weakest)."),
                   Param("num_magnitude_bins", "int", 31, 2, 100, help="Number of strength bins."), _interp()),
                  _simple("RandAugment"), check=_randaug_check),
    TransformSpec("TrivialAugmentWide", "Policies", "One random operation at a random magnitude.",
                  (Param("num_magnitude_bins", "int", 31, 2, 100, help="Number of strength bins."), _interp()),
                  _simple("TrivialAugmentWide")),
    TransformSpec("MixUp", "Batch", "Batch-level: blend each image with another of the batch, labels mixed too "
                  "(weight from Beta(alpha, alpha)). Runs after all per-image steps.",
                  (Param("alpha", "float", 1.0, 0.01, 10.0, help="Beta distribution parameter.", step=0.05),),
                  _simple("MixUp"), batch_level=True),
    TransformSpec("CutMix", "Batch", "Batch-level: paste a random box from another image of the batch, labels "
                  "mixed by area. Runs after all per-image steps (with MixUp: one of the two per batch).",
                  (Param("alpha", "float", 1.0, 0.01, 10.0, help="Beta distribution parameter.", step=0.05),),
                  _simple("CutMix"), batch_level=True),
]}


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _bound(where: str, v: float, p: Param) -> None:
    if (p.lo is not None and v < p.lo) or (p.hi is not None and v > p.hi):
        raise ValueError(f"{where}: {v!r} is out of range [{p.lo:g}, {p.hi:g}].")


def check_value(step: str, p: Param, v: Any) -> Any:
    """Validate one value against its Param; return the canonical (JSON-ready) value or raise ValueError."""
    where = f"{step}.{p.name}"
    if v is None:
        if p.optional:
            return None
        raise ValueError(f"{where} may not be null.")
    k = p.kind
    if k == "float":
        if not _num(v):
            raise ValueError(f"{where} must be a number, got {type(v).__name__} {v!r:.40}.")
        _bound(where, float(v), p)
        return float(v)
    if k == "int":
        if not (isinstance(v, int) and not isinstance(v, bool)):
            raise ValueError(f"{where} must be a whole number, got {type(v).__name__} {v!r:.40}.")
        _bound(where, v, p)
        return int(v)
    if k == "bool":
        if not isinstance(v, bool):
            raise ValueError(f"{where} must be true or false, got {v!r:.40}.")
        return v
    if k == "choice":
        if not isinstance(v, str) or v not in p.choices:
            raise ValueError(f"{where} must be one of {', '.join(p.choices)}; got {v!r:.40}.")
        return v
    if k == "range" and _num(v):
        if v < 0:
            raise ValueError(f"{where}: a single number d means [-d, d], so it must be >= 0; got {v!r}.")
        _bound(where, float(v), p)
        return float(v)
    if k in ("range", "pair"):
        if not (isinstance(v, list) and len(v) == 2 and all(_num(x) for x in v)):
            extra = (" For a choice among fixed angles use RandomDiscreteRotation."
                     if k == "range" and isinstance(v, list) and len(v) > 2 else "")
            raise ValueError(f"{where} must be " + ("a number or " if k == "range" else "")
                             + f"a list [low, high] of two numbers; got {v!r:.60}.{extra}")
        lo, hi = float(v[0]), float(v[1])
        _bound(where, lo, p)
        _bound(where, hi, p)
        if lo > hi:
            raise ValueError(f"{where}: low {lo:g} is larger than high {hi:g}.")
        return [lo, hi]
    if k in ("floats", "ints"):
        maxlen = 4 if k == "floats" else 16
        ok = isinstance(v, list) and 1 <= len(v) <= maxlen and all(
            _num(x) if k == "floats" else (isinstance(x, int) and not isinstance(x, bool)) for x in v)
        if not ok:
            what = "numbers" if k == "floats" else "whole numbers"
            raise ValueError(f"{where} must be a list of 1 to {maxlen} {what}; got {v!r:.60}.")
        for x in v:
            _bound(where, x, p)
        return [float(x) for x in v] if k == "floats" else [int(x) for x in v]
    if k == "size":
        if isinstance(v, int) and not isinstance(v, bool):
            _bound(where, v, p)
            return int(v)
        if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            for x in v:
                _bound(where, x, p)
            return [int(v[0]), int(v[1])]
        raise ValueError(f"{where} must be a whole number or [height, width]; got {v!r:.60}.")
    raise AssertionError(f"unknown kind {k}")  # pragma: no cover - table bug
