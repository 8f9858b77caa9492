"""Fool the network: FGSM and PGD in pixel space, with ε in pixel levels out of 255.

The attacks work on the image as the eye sees it: pixels in [0, 1], perturbed by at most ε per
pixel and channel (the L∞ ball), clipped to [0, 1], and only then normalised with the model's
mean/std (`Normalised` wraps the model so). ε = 8 means 8/255.

- `fgsm` (Goodfellow et al. 2015): one step of ε · sign(∇ loss). The gradient does not depend on
  ε, so `fgsm_sweep` takes it once and evaluates every ε from 0 to a maximum in one batch: the
  smallest ε that flips the prediction comes for the price of one forward pass.
- `pgd` (Madry et al. 2018): `steps` signed-gradient steps of size α, each projected back into the
  ε-ball; batched over several ε at once (`pgd_sweep`).

Untargeted: the loss is the cross-entropy of the class the model predicts for the clean image
(or a given label), pushed up. Tests check `fgsm` against Captum's `captum.robust.FGSM`.
Batches are sized against the per-request budget. No streamlit here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..limits import fit_batch


class Normalised(nn.Module):
    """`model` fed with (x - mean) / std: takes pixels in [0, 1]."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float], channels: int) -> None:
        super().__init__()
        self.model = model
        m = list(mean)[:channels] if len(mean) >= channels else [float(mean[0])] * channels
        s = list(std)[:channels] if len(std) >= channels else [float(std[0])] * channels
        p = next(model.parameters(), None)
        dev = p.device if p is not None else torch.device("cpu")
        self.register_buffer("mean", torch.tensor(m, dtype=torch.float32, device=dev).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(s, dtype=torch.float32, device=dev).view(1, -1, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model((pixels - self.mean) / self.std)
        return out[0] if isinstance(out, (tuple, list)) else out


def _pixels(pixels: torch.Tensor, net: Normalised) -> torch.Tensor:
    if pixels.dim() == 3:
        pixels = pixels.unsqueeze(0)
    if pixels.dim() != 4 or pixels.shape[0] != 1:
        raise ValueError(f"expected one image (C,H,W) or (1,C,H,W) in [0, 1], got {tuple(pixels.shape)}")
    if float(pixels.min()) < 0 or float(pixels.max()) > 1:
        raise ValueError("pixels must lie in [0, 1] (the image before normalisation)")
    return pixels.detach().float().to(net.mean.device)


def _per_image_bytes(pixels: torch.Tensor) -> float:
    # activations of a small CNN are tens of times the image; 64x the image's floats is generous for
    # the 32 px models and caps the batch for large inputs
    return 64.0 * 4 * pixels[0].numel() * 3


@dataclass
class Attack:
    """One attack on one image."""

    method: str
    epsilon: int                 # pixel levels out of 255
    clean: torch.Tensor          # (C,H,W) in [0, 1]
    adversarial: torch.Tensor    # (C,H,W) in [0, 1]
    probs_clean: torch.Tensor    # (K,)
    probs_adv: torch.Tensor      # (K,)
    label: int                   # the class attacked (pushed away from)

    @property
    def delta(self) -> torch.Tensor:
        return self.adversarial - self.clean

    @property
    def pred_clean(self) -> int:
        return int(self.probs_clean.argmax())

    @property
    def pred_adv(self) -> int:
        return int(self.probs_adv.argmax())

    @property
    def flipped(self) -> bool:
        return self.pred_adv != self.pred_clean

    @property
    def linf_levels(self) -> float:
        """The largest change of any pixel, in levels out of 255."""
        return float(self.delta.abs().max()) * 255.0


def _probs(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return net(x).float().softmax(-1).cpu()


def _grad_sign(net: Normalised, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """sign(∇ₓ CE(net(x), label)) for a batch x."""
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(net(xg).float(), label, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xg)
    return grad.sign()


def _setup(model: nn.Module, pixels: torch.Tensor, mean, std, label: int | None):
    was = model.training
    model.eval()
    net = Normalised(model, mean, std, pixels.shape[-3])
    x = _pixels(pixels, net)
    probs = _probs(net, x)[0]
    lab = int(probs.argmax()) if label is None else int(label)
    return net, x, probs, lab, was


def fgsm(model: nn.Module, pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float], epsilon: int,
         label: int | None = None) -> Attack:
    """FGSM with ε = `epsilon`/255 on one image of pixels in [0, 1]; `label`: the class to push away
    from (default: the model's prediction)."""
    net, x, probs, lab, was = _setup(model, pixels, mean, std, label)
    try:
        sign = _grad_sign(net, x, torch.tensor([lab], device=x.device))
        adv = (x + float(epsilon) / 255.0 * sign).clamp(0, 1)
        return Attack("FGSM", int(epsilon), x[0].cpu(), adv[0].detach().cpu(), probs, _probs(net, adv)[0], lab)
    finally:
        model.train(was)


@dataclass
class Sweep:
    """An attack at every ε in `epsilons` (levels /255): the prediction and its probabilities at each."""

    method: str
    epsilons: np.ndarray         # (E,) ints
    preds: np.ndarray            # (E,) predicted class at each ε
    probs: np.ndarray            # (E, K)
    label: int
    pred_clean: int

    @property
    def smallest_flip(self) -> int | None:
        """The smallest ε (levels) whose prediction differs from the clean one, None if none does."""
        hit = np.nonzero(self.preds != self.pred_clean)[0]
        return int(self.epsilons[hit[0]]) if len(hit) else None


def fgsm_sweep(model: nn.Module, pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float],
               max_epsilon: int = 32, label: int | None = None) -> Sweep:
    """FGSM at ε = 0, 1, ..., `max_epsilon` levels: one gradient, one batched forward pass."""
    net, x, probs, lab, was = _setup(model, pixels, mean, std, label)
    try:
        sign = _grad_sign(net, x, torch.tensor([lab], device=x.device))
        eps = torch.arange(0, int(max_epsilon) + 1, device=x.device, dtype=torch.float32)
        batch = fit_batch(_per_image_bytes(x), cap=256, what="the FGSM sweep")
        out = []
        for i in range(0, len(eps), batch):
            e = eps[i:i + batch].view(-1, 1, 1, 1) / 255.0
            out.append(_probs(net, (x + e * sign).clamp(0, 1)))
        p = torch.cat(out).numpy()
        return Sweep("FGSM", eps.cpu().numpy().astype(int), p.argmax(1), p, lab, int(probs.argmax()))
    finally:
        model.train(was)


def _pgd_batch(net: Normalised, x: torch.Tensor, eps: torch.Tensor, lab: int, steps: int, alpha: torch.Tensor,
               random_start: bool, seed: int) -> torch.Tensor:
    """PGD for each ε in `eps` (B,) (in [0,1] units) at once: (B,C,H,W) adversarial pixels."""
    b = eps.numel()
    e = eps.view(-1, 1, 1, 1)
    a = alpha.view(-1, 1, 1, 1)
    x0 = x.expand(b, -1, -1, -1)
    adv = x0.clone()
    if random_start:
        g = torch.Generator().manual_seed(seed)
        adv = (x0 + (torch.rand(x0.shape, generator=g).to(x.device) * 2 - 1) * e).clamp(0, 1)
    labels = torch.full((b,), int(lab), device=x.device, dtype=torch.long)
    for _ in range(int(steps)):
        adv = adv + a * _grad_sign(net, adv, labels)
        adv = torch.min(torch.max(adv, x0 - e), x0 + e).clamp(0, 1).detach()
    return adv


def pgd(model: nn.Module, pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float], epsilon: int,
        steps: int = 10, step_size: float | None = None, random_start: bool = False, seed: int = 0,
        label: int | None = None) -> Attack:
    """PGD (L∞) with ε = `epsilon`/255, `steps` steps of `step_size` levels (default 2.5 ε / steps)."""
    net, x, probs, lab, was = _setup(model, pixels, mean, std, label)
    try:
        eps = torch.tensor([float(epsilon) / 255.0], device=x.device)
        alpha = torch.tensor([(step_size if step_size is not None else 2.5 * float(epsilon) / max(steps, 1))
                              / 255.0], device=x.device)
        adv = _pgd_batch(net, x, eps, lab, steps, alpha, random_start, seed)
        return Attack("PGD", int(epsilon), x[0].cpu(), adv[0].cpu(), probs, _probs(net, adv)[0], lab)
    finally:
        model.train(was)


def pgd_sweep(model: nn.Module, pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float],
              max_epsilon: int = 16, steps: int = 10, random_start: bool = False, seed: int = 0,
              label: int | None = None) -> Sweep:
    """PGD at ε = 0..`max_epsilon` levels (each with step 2.5 ε / steps), batched."""
    net, x, probs, lab, was = _setup(model, pixels, mean, std, label)
    try:
        eps_levels = torch.arange(0, int(max_epsilon) + 1, dtype=torch.float32, device=x.device)
        batch = fit_batch(_per_image_bytes(x), cap=64, what="the PGD sweep")
        out = []
        for i in range(0, len(eps_levels), batch):
            e = eps_levels[i:i + batch] / 255.0
            adv = _pgd_batch(net, x, e, lab, steps, 2.5 * e / max(steps, 1), random_start, seed)
            out.append(_probs(net, adv))
        p = torch.cat(out).numpy()
        return Sweep("PGD", eps_levels.cpu().numpy().astype(int), p.argmax(1), p, lab, int(probs.argmax()))
    finally:
        model.train(was)


def amplified(delta: torch.Tensor) -> torch.Tensor:
    """A perturbation (C,H,W) made visible: 0.5 + delta scaled so its largest |value| reaches 0.5."""
    top = float(delta.abs().max())
    return (0.5 + delta / (2 * top)).clamp(0, 1) if top > 0 else torch.full_like(delta, 0.5)


def denormalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised (1,C,H,W) or (C,H,W) input back to pixels in [0, 1]."""
    c = x.shape[-3]
    m = torch.tensor(list(mean)[:c] if len(mean) >= c else [float(mean[0])] * c).view(-1, 1, 1)
    s = torch.tensor(list(std)[:c] if len(std) >= c else [float(std[0])] * c).view(-1, 1, 1)
    return (x.detach().float().cpu() * s + m).clamp(0, 1)
