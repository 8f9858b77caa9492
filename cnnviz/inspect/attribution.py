"""Where a classifier looks: eight attribution methods side by side, a sanity check, faithfulness.

Methods (`METHODS`), each from a maintained library except where cnnviz's own matches it:

- CAM family, on one spatial layer: **Grad-CAM** (`features.grad_cam`: tested equal to
  pytorch-grad-cam's `GradCAM`, so one implementation is kept), **Grad-CAM++**, **Score-CAM**,
  **Layer-CAM** (pytorch-grad-cam).
- Gradients at the input (Captum): **Saliency** (|gradient|, max over channels), **Integrated
  Gradients** (baseline, steps), **SmoothGrad** (`NoiseTunnel` over Saliency: samples, noise).
- Perturbation (Captum): **Occlusion** (window, stride, baseline): how much the class score
  drops when a window is covered.

Every method returns an `Attribution` whose `map` is (H, W) at the input's resolution,
non-negative, scaled so its maximum is 1 (all zeros if nothing is positive), so maps of all
methods can be compared, ranked and drawn alike.

`sanity_check` is Adebayo et al. 2018's cascading randomisation: the layers are re-initialised
from the top (logits) down, one more at a time, and each method's map is compared with the
trained model's by Spearman rank correlation; a map that stays the same does not depend on what
the network learned. `faithfulness` gives the deletion and insertion curves (Petsiuk et al.
2018): the class probability as the most important pixels are removed from the image, or added
to a blurred copy, with the areas under the curves.

Hooks on a shared model are taken under one lock (Streamlit serves sessions from threads).
Batched passes are sized from the layers' shapes against the per-request budget
(`cnnviz.limits.fit_batch`). No streamlit here.
"""

from __future__ import annotations

import copy
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import features
from ..limits import fit_batch

HOOK_LOCK = threading.RLock()   # hooks on a model shared between sessions: one method at a time
SANITY_THRESHOLD = 0.5           # Spearman rho to the trained map after full randomisation: at or above = fails


@dataclass(frozen=True)
class Param:
    """One parameter of a method, enough for a page to draw its widget."""

    key: str
    label: str
    default: Any
    options: tuple = ()          # a choice among these, else a number in [lo, hi]
    lo: float = 0
    hi: float = 0
    step: float = 1
    help: str = ""


@dataclass(frozen=True)
class Method:
    name: str
    family: str                  # "CAM", "gradient" or "perturbation"
    library: str
    about: str
    params: tuple[Param, ...] = ()
    slow: bool = False           # one forward pass per channel / window: progress shown
    stochastic: bool = False     # two runs differ (random noise)


BASELINES = ("mean colour", "black", "blurred", "uniform noise")
METHODS: dict[str, Method] = {m.name: m for m in [
    Method("Grad-CAM", "CAM", "cnnviz (equal to pytorch-grad-cam's GradCAM, tested)",
           "The layer's channels weighted by the mean gradient of the class score, summed, kept where positive."),
    Method("Grad-CAM++", "CAM", "pytorch-grad-cam",
           "Like Grad-CAM, but each channel's weight sums only the positive gradients, weighted per position "
           "(second and third derivatives): better when a class appears several times."),
    Method("Score-CAM", "CAM", "pytorch-grad-cam",
           "No gradients: each channel, scaled to [0, 1], masks the input; the class score of the masked "
           "image (softmax over channels) is that channel's weight. One forward pass per channel.",
           slow=True),
    Method("Layer-CAM", "CAM", "pytorch-grad-cam",
           "Each position of each channel weighted by its own positive gradient (not a channel mean): finer maps, "
           "also from early layers."),
    Method("Saliency", "gradient", "Captum",
           "|d class score / d pixel|, the largest over colour channels: which pixels the score is most "
           "sensitive to, right here."),
    Method("Integrated Gradients", "gradient", "Captum",
           "Gradients averaged along the straight path from a baseline image to this one, times the "
           "difference; the attributions add up to score(image) - score(baseline). Shown: |sum over channels|.",
           (Param("baseline", "Baseline", "black", BASELINES,
                  help="The image that means 'no evidence': black, the dataset's mean colour (zeros after "
                       "normalisation), a blurred copy, or uniform noise."),
            Param("steps", "Steps", 32, lo=4, hi=256, step=4, help="Points on the path (Riemann sum).")), ),
    Method("SmoothGrad", "gradient", "Captum",
           "Saliency averaged over noisy copies of the image: the noise washes out gradient jitter.",
           (Param("samples", "Samples", 25, lo=4, hi=100, step=1, help="Noisy copies averaged."),
            Param("noise", "Noise (σ, fraction of the input's range)", 0.15, lo=0.01, hi=0.5, step=0.01,
                  help="Smilkov et al. recommend 10-20%.")), stochastic=True),
    Method("Occlusion", "perturbation", "Captum",
           "A window slid over the image is covered with the baseline; the drop in the class score is "
           "the evidence there. One forward pass per window position.",
           (Param("window", "Window (px)", 0, lo=2, hi=64, step=1, help="0: a quarter of the input's side."),
            Param("stride", "Stride (px)", 0, lo=1, hi=32, step=1, help="0: half the window."),
            Param("baseline", "Cover with", "mean colour", BASELINES[:3])), slow=True),
]}
CAM_METHODS = [m for m, spec in METHODS.items() if spec.family == "CAM"]


@dataclass
class Attribution:
    """One method's map for one image and one class."""

    method: str
    map: torch.Tensor            # (H, W) float32 in [0, 1]
    target: int
    seconds: float
    raw: torch.Tensor | None = None   # the library's attribution before it became a map ((C,H,W) or (H,W))
    params: dict = field(default_factory=dict)


def defaults(method: str, size: int) -> dict:
    """The method's parameters with their defaults (window and stride from the input size)."""
    out = {p.key: p.default for p in METHODS[method].params}
    if method == "Occlusion":
        out["window"] = max(2, size // 4)
        out["stride"] = max(1, out["window"] // 2)
    return out


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


_SIZES: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _layer_facts(model: nn.Module, shape: Sequence[int]) -> tuple[float, str | None]:
    """(bytes of one image's activations, forward + gradient in float32; the last spatial layer),
    from the layers' shapes, traced once per model and input shape."""
    shape = tuple(int(v) for v in shape)
    known = _SIZES.setdefault(model, {})
    if shape not in known:
        layers = features.list_layers(model, shape)
        elems = sum(int(np.prod(li.shape[1:])) for li in layers)
        known[shape] = (3.0 * 4 * (elems + int(np.prod(shape))), features.last_spatial_layer(layers))
    return known[shape]


def _per_sample_bytes(model: nn.Module, shape: Sequence[int]) -> float:
    return _layer_facts(model, shape)[0]


def _normalise_map(m: torch.Tensor) -> torch.Tensor:
    m = torch.nan_to_num(m.detach().float().cpu(), nan=0.0, posinf=0.0, neginf=0.0).clamp(min=0)
    top = float(m.max()) if m.numel() else 0.0
    return m / top if top > 0 else torch.zeros_like(m)


def baseline_image(x: torch.Tensor, kind: str, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None, seed: int = 0) -> torch.Tensor:
    """A 'no evidence' image shaped like the normalised input `x` (1,C,H,W)."""
    c = x.shape[1]
    if kind == "mean colour":
        return torch.zeros_like(x)
    if kind == "black":
        if mean is None or std is None:
            return torch.zeros_like(x)
        m = torch.tensor(list(mean)[:c] or [0.0], dtype=x.dtype, device=x.device).expand(c)
        s = torch.tensor(list(std)[:c] or [1.0], dtype=x.dtype, device=x.device).expand(c)
        return ((0 - m) / s).view(1, c, 1, 1).expand_as(x).clone()
    if kind == "blurred":
        k = max(3, (min(x.shape[-2:]) // 4) | 1)
        from torchvision.transforms.functional import gaussian_blur

        return gaussian_blur(x, [k, k], [k / 3.0, k / 3.0])
    if kind == "uniform noise":
        g = torch.Generator().manual_seed(seed)
        lo, hi = float(x.min()), float(x.max())
        return (torch.rand(x.shape, generator=g) * (hi - lo) + lo).to(x.device, x.dtype)
    raise ValueError(f"Unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}.")


def _module(model: nn.Module, layer: str) -> nn.Module:
    base, _, call = layer.partition(":")
    if call and call != "1":
        raise ValueError(f"{layer} is a later call of a module used several times; pytorch-grad-cam hooks "
                         f"every call of it. Choose another layer.")
    modules = dict(model.named_modules())
    if base not in modules:
        raise ValueError(f"No layer named {layer!r} in {type(model).__name__}.")
    return modules[base]


def _library_cam(method: str, model: nn.Module, x: torch.Tensor, layer: str, target: int,
                 budget_batch: int) -> torch.Tensor:
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = {"Grad-CAM (pytorch-grad-cam)": GradCAM, "Grad-CAM++": GradCAMPlusPlus, "Score-CAM": ScoreCAM,
           "Layer-CAM": LayerCAM}[method]
    module = _module(model, layer)
    was = model.training
    try:
        with cls(model=model, target_layers=[module]) as cam:
            if method == "Score-CAM":
                cam.batch_size = budget_batch
            out = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(target))])
    finally:
        model.train(was)
        model.zero_grad(set_to_none=True)  # the library's backward() leaves .grad on the weights
    return torch.from_numpy(np.asarray(out[0], dtype=np.float32))


def attribute(model: nn.Module, x: torch.Tensor, method: str, target: int | None = None, *,
              layer: str | None = None, params: dict | None = None, mean: Sequence[float] | None = None,
              std: Sequence[float] | None = None, seed: int = 0) -> Attribution:
    """`method`'s map of class `target` (default: the predicted class) for one normalised image x (1,C,H,W).

    `layer`: the CAM methods' layer (default: the last spatial one). `params`: the method's
    parameters (see `METHODS`; missing ones take `defaults`). `mean`/`std`: the input's
    normalisation, for the black baseline. `seed`: SmoothGrad's noise, the noise baseline.
    """
    if method not in METHODS and method != "Grad-CAM (pytorch-grad-cam)":
        raise ValueError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    xb, _ = features._batched(x)
    if xb.shape[0] != 1:
        raise ValueError("attribution explains one image at a time")
    dev = _device(model)
    xb = xb.detach().float().to(dev)
    size = int(xb.shape[-1])
    p = {**defaults(method, size), **(params or {})} if method in METHODS else {}
    shape = tuple(xb.shape[1:])
    if method in METHODS and METHODS[method].library in ("Captum", "pytorch-grad-cam"):
        import captum.attr  # noqa: F401  (imports of seconds: not counted in the method's time)
        import pytorch_grad_cam  # noqa: F401
    t0 = time.perf_counter()
    with HOOK_LOCK, features._eval(model, True):
        if target is None:
            with torch.inference_mode():
                target = int(features._first_tensor(model(xb)).argmax(-1)[0])
        target = int(target)
        family = METHODS[method].family if method in METHODS else "CAM"
        if family == "CAM" and layer is None:
            layer = _layer_facts(model, shape)[1]
            if layer is None:
                raise ValueError(f"{type(model).__name__} has no spatial layer for {method}.")
        raw = None
        if method == "Grad-CAM":
            m = features.grad_cam(model, xb, layer, target).cam
        elif family == "CAM":
            batch = fit_batch(_per_sample_bytes(model, shape), cap=64, what=f"{method} on one image")
            m = _library_cam(method, model, xb, layer, target, batch)
        else:
            raw, m = _captum(method, model, xb, target, p, mean, std, seed, shape)
    return Attribution(method, _normalise_map(m), target, time.perf_counter() - t0, raw, p)


def _captum(method: str, model: nn.Module, xb: torch.Tensor, target: int, p: dict, mean, std, seed: int,
            shape: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    from captum.attr import IntegratedGradients, NoiseTunnel, Occlusion, Saliency

    per = _per_sample_bytes(model, shape)
    xg = xb.clone().requires_grad_(True)
    if method == "Saliency":
        raw = Saliency(model).attribute(xg, target=target, abs=True)[0]
        return raw.detach().cpu(), raw.max(0).values
    if method == "Integrated Gradients":
        steps = int(p["steps"])
        batch = fit_batch(per, cap=steps, what="Integrated Gradients on one image")
        base = baseline_image(xb, p["baseline"], mean, std, seed)
        raw = IntegratedGradients(model).attribute(xg, baselines=base, target=target, n_steps=steps,
                                                   internal_batch_size=batch)[0]
        return raw.detach().cpu(), raw.sum(0).abs()
    if method == "SmoothGrad":
        n = int(p["samples"])
        batch = fit_batch(per, cap=n, what="SmoothGrad on one image")
        sigma = float(p["noise"]) * float(xb.max() - xb.min())
        with torch.random.fork_rng(devices=[xb.device] if xb.device.type == "cuda" else []):
            torch.manual_seed(seed)
            raw = NoiseTunnel(Saliency(model)).attribute(xg, nt_type="smoothgrad", nt_samples=n,
                                                         nt_samples_batch_size=batch, stdevs=sigma,
                                                         target=target, abs=True)[0]
        return raw.detach().cpu(), raw.max(0).values
    if method == "Occlusion":
        c, h, w = shape
        win = int(p["window"]) or max(2, h // 4)
        win = max(1, min(win, h, w))
        stride = max(1, min(int(p["stride"]) or max(1, win // 2), win))
        base = baseline_image(xb, p["baseline"], mean, std, seed)
        batch = fit_batch(per, cap=64, what="Occlusion on one image")
        raw = Occlusion(model).attribute(xb, sliding_window_shapes=(c, win, win), strides=(c, stride, stride),
                                         baselines=base, target=target, perturbations_per_eval=batch)[0]
        return raw.detach().cpu(), raw.sum(0)
    raise ValueError(f"Unknown method {method!r}")


def attribute_all(model: nn.Module, x: torch.Tensor, methods: Sequence[str], target: int | None = None, *,
                  layer: str | None = None, params: dict[str, dict] | None = None, mean=None, std=None,
                  seed: int = 0, progress: Callable[[float, str], None] | None = None) -> dict[str, Attribution]:
    """`attribute` for each of `methods` (params per method name); progress(fraction, method name)."""
    out = {}
    for i, m in enumerate(methods):
        if progress is not None:
            progress(i / max(len(methods), 1), m)
        out[m] = attribute(model, x, m, target, layer=layer, params=(params or {}).get(m), mean=mean, std=std,
                           seed=seed)
    if progress is not None:
        progress(1.0, "done")
    return out


# ---------------------------------------------------------------- sanity check


def spearman(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Spearman rank correlation of two maps (ties get their average rank); 0 when one is constant."""
    from scipy.stats import rankdata

    ra = rankdata(np.asarray(a, dtype=np.float64).ravel())
    rb = rankdata(np.asarray(b, dtype=np.float64).ravel())
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


def cascade_layers(model: nn.Module, shape: Sequence[int]) -> list[tuple[str, ...]]:
    """The cascade's steps, from the top (the logits) down: each a layer with its own weights, a
    normalisation layer (BatchNorm, ...) going with the layer that feeds it."""
    modules = dict(model.named_modules())
    seen, order = set(), []
    for li in features.list_layers(model, tuple(shape)):
        base = li.name.partition(":")[0]
        mod = modules.get(base)
        if base in seen or mod is None or not list(mod.parameters(recurse=False)):
            continue
        seen.add(base)
        if isinstance(mod, _NORMS) and order:
            order[-1] = order[-1] + (base,)
        else:
            order.append((base,))
    return order[::-1]


def reinitialise(module: nn.Module, seed: int) -> None:
    """Fresh random weights for one layer (its own `reset_parameters`, else N(0, 0.05))."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        else:
            with torch.no_grad():
                for prm in module.parameters(recurse=False):
                    prm.normal_(0, 0.05)


@dataclass
class SanityCheck:
    """Cascading randomisation: maps[method][i] after re-initialising layers[:i] (0: the trained model)."""

    layers: list[tuple[str, ...]]              # top-down steps; step i has re-initialised layers[:i]
    maps: dict[str, list[torch.Tensor]]        # len(layers) + 1 maps per method
    rho: dict[str, list[float]]                # Spearman to the trained map, per step (step 0 = 1)
    rho_repeat: dict[str, float]               # trained map vs a second run of the same method (noise floor)
    target: int
    seconds: float

    def defined(self, method: str) -> bool:
        """False when the trained model's map is all zeros (nothing positive to compare)."""
        return float(self.maps[method][0].max()) > 0

    def passes(self, method: str) -> bool:
        """The method's map changes when the weights do: after full randomisation rho < SANITY_THRESHOLD
        and below the method's own repeat correlation."""
        final = self.rho[method][-1]
        return self.defined(method) and final < SANITY_THRESHOLD and final < self.rho_repeat[method]

    def verdict(self, method: str) -> str:
        final, rep = self.rho[method][-1], self.rho_repeat[method]
        if not self.defined(method):
            return "no verdict: its map of the trained model is all zeros (nothing positive at this layer)"
        if self.passes(method):
            return (f"passes: fully randomised, its map's rank correlation with the trained map falls to "
                    f"{final:.2f} (two runs on the trained model: {rep:.2f})")
        return (f"fails: with every layer randomised its map still correlates {final:.2f} with the trained map "
                f"(threshold {SANITY_THRESHOLD}): it shows the image more than what the network learned")


def sanity_check(model: nn.Module, x: torch.Tensor, methods: Sequence[str], target: int | None = None, *,
                 layer: str | None = None, params: dict[str, dict] | None = None, mean=None, std=None,
                 seed: int = 0, progress: Callable[[float, str], None] | None = None) -> SanityCheck:
    """Adebayo et al.'s cascading randomisation on a copy of `model` (the model itself is untouched)."""
    t0 = time.perf_counter()
    xb, _ = features._batched(x)
    work = copy.deepcopy(model).eval()
    shape = tuple(xb.shape[1:])
    if target is None:
        target = features.predict(work, xb, k=1)[0][0]
    layers = cascade_layers(work, shape)
    modules = dict(work.named_modules())
    params = params or {}
    total = (len(layers) + 1) * len(methods) + sum(METHODS[m].stochastic for m in methods)
    done = [0]

    def run(m: str, s: int) -> torch.Tensor:
        if progress is not None:
            progress(done[0] / max(total, 1), m)
        done[0] += 1
        return attribute(work, xb, m, target, layer=layer, params=params.get(m), mean=mean, std=std, seed=s).map

    maps = {m: [run(m, seed)] for m in methods}
    # a second run on the trained model: only a stochastic method's map can differ (a deterministic
    # one is compared with itself rather than computed again: same number, no cost)
    rho_repeat = {m: spearman(maps[m][0], run(m, seed + 1) if METHODS[m].stochastic else maps[m][0])
                  for m in methods}
    for i, group in enumerate(layers):
        for j, name in enumerate(group):
            reinitialise(modules[name], seed + 1000 + 10 * i + j)
        for m in methods:
            maps[m].append(run(m, seed))
    rho = {m: [spearman(maps[m][0], mm) for mm in maps[m]] for m in methods}
    if progress is not None:
        progress(1.0, "done")
    return SanityCheck(layers, maps, rho, rho_repeat, int(target), time.perf_counter() - t0)


# ---------------------------------------------------------------- faithfulness


@dataclass
class Faithfulness:
    """Deletion and insertion curves of one map: the class probability at each fraction of pixels."""

    fractions: np.ndarray        # (S+1,) from 0 to 1
    deletion: np.ndarray         # prob as the most important pixels are replaced by the baseline
    insertion: np.ndarray        # prob as they are put into a blurred copy, most important first
    deletion_random: np.ndarray  # the same with the pixels in a random order (the reference)
    insertion_random: np.ndarray

    @staticmethod
    def area(curve: np.ndarray, fractions: np.ndarray) -> float:
        return float(np.trapezoid(curve, fractions))

    @property
    def deletion_auc(self) -> float:
        """Lower is better: the probability falls fast when the top pixels go."""
        return self.area(self.deletion, self.fractions)

    @property
    def insertion_auc(self) -> float:
        """Higher is better: the probability comes back fast when the top pixels return."""
        return self.area(self.insertion, self.fractions)


def _order(heat: torch.Tensor, seed: int) -> torch.Tensor:
    """Pixel indices, most important first; ties in a seeded random order (not top-left first)."""
    flat = heat.detach().float().cpu().flatten()
    perm = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(seed))
    return perm[torch.argsort(flat[perm], descending=True, stable=True)]


def _curve(model: nn.Module, start: torch.Tensor, end: torch.Tensor, order: torch.Tensor, steps: int,
           target: int, batch: int) -> np.ndarray:
    """Probabilities of `target` as pixels in `order` go from `start` to `end`, in steps+1 images."""
    _, c, h, w = start.shape
    n = h * w
    counts = [round(n * k / steps) for k in range(steps + 1)]
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    rank = rank.view(1, 1, h, w).to(start.device)
    probs = []
    with torch.inference_mode():
        for i in range(0, len(counts), batch):
            k = torch.tensor(counts[i:i + batch], device=start.device).view(-1, 1, 1, 1)
            mask = (rank < k).float()                                      # (B,1,H,W): 1 = switched
            imgs = start * (1 - mask) + end * mask
            probs.append(features._first_tensor(model(imgs)).float().softmax(-1)[:, target].cpu())
    return torch.cat(probs).numpy()


def faithfulness(model: nn.Module, x: torch.Tensor, heat: torch.Tensor, target: int, *, steps: int = 32,
                 mean=None, std=None, deletion_baseline: str = "mean colour", insertion_baseline: str = "blurred",
                 seed: int = 0) -> Faithfulness:
    """Deletion (pixels replaced by `deletion_baseline`) and insertion (into `insertion_baseline`: a
    blurred copy, as in RISE) curves of the map `heat` (H, W) for class `target`, with a seeded
    random-order reference."""
    xb, _ = features._batched(x)
    dev = _device(model)
    xb = xb.detach().float().to(dev)
    if tuple(heat.shape) != tuple(xb.shape[-2:]):
        raise ValueError(f"the map is {tuple(heat.shape)}, the image {tuple(xb.shape[-2:])}")
    batch = fit_batch(_per_sample_bytes(model, tuple(xb.shape[1:])) / 3, cap=steps + 1,
                      what="the deletion curve")
    gone = baseline_image(xb, deletion_baseline, mean, std, seed)
    blur = baseline_image(xb, insertion_baseline, mean, std, seed)
    order, rand = _order(heat, seed), torch.randperm(heat.numel(), generator=torch.Generator().manual_seed(seed + 7))
    with HOOK_LOCK, features._eval(model, True):
        dele = _curve(model, xb, gone, order, steps, target, batch)
        ins = _curve(model, blur, xb, order, steps, target, batch)
        dele_r = _curve(model, xb, gone, rand, steps, target, batch)
        ins_r = _curve(model, blur, xb, rand, steps, target, batch)
    return Faithfulness(np.linspace(0, 1, steps + 1), dele, ins, dele_r, ins_r)


def quadrant_mass(heat: torch.Tensor, quadrant: int) -> float:
    """Share of a map's total in one quadrant (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right)."""
    h, w = heat.shape
    r, c = divmod(int(quadrant), 2)
    part = heat[r * h // 2:(r + 1) * h // 2 if r == 0 else h, c * w // 2:(c + 1) * w // 2 if c == 0 else w]
    total = float(heat.sum())
    return float(part.sum()) / total if total > 0 else 0.0
