"""Evaluate a trained model on a dataset split: predictions, confusion matrix, mistakes.

`evaluate_run(run)` loads a run's checkpoint and its dataset's test split and returns an
`Evaluation` (small numpy arrays: labels, predictions, softmax probabilities), from which
`confusion_matrix`, `per_class_accuracy`, `confident_mistakes` and `cell_examples` derive the
Runs page's views. Inputs are prepared as at test time in training: uint8 -> [0, 1] floats,
resized to the model's input size when the dataset differs, normalised with the checkpoint's
mean/std.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Evaluation:
    """Predictions of one model on one dataset split (arrays aligned with `indices`)."""

    classes: list[str]
    labels: np.ndarray   # (N,) int64 true class
    preds: np.ndarray    # (N,) int64 predicted class (argmax)
    probs: np.ndarray    # (N, K) float32 softmax probabilities
    indices: np.ndarray  # (N,) int64 position of each example in the dataset split
    split: str = "test"
    dataset: str = ""
    checkpoint: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def accuracy(self) -> float:
        """Fraction of examples predicted correctly (0..1); NaN for an empty evaluation."""
        return float((self.preds == self.labels).mean()) if len(self.labels) else float("nan")

    @property
    def confidence(self) -> np.ndarray:
        """(N,) probability the model gave its own prediction."""
        return self.probs[np.arange(len(self.preds)), self.preds] if len(self.preds) else np.zeros(0, np.float32)


@dataclass(frozen=True)
class Mistake:
    """One misclassified example: its dataset index, true and predicted class, and confidence."""

    index: int
    true: int
    pred: int
    confidence: float


def prepare_inputs(images: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                   input_size: int | None = None) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 normalised (B, C, S, S): /255, bilinear resize to `input_size`
    when it differs from H, W (antialiased), then (x - mean) / std per channel."""
    x = images.float().div_(255.0)
    if input_size and tuple(x.shape[-2:]) != (input_size, input_size):
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False, antialias=True)
    c = x.shape[1]
    m = torch.tensor(list(mean)[:c] if len(mean) >= c else [float(mean[0])] * c, dtype=x.dtype, device=x.device)
    s = torch.tensor(list(std)[:c] if len(std) >= c else [float(std[0])] * c, dtype=x.dtype, device=x.device)
    return (x - m.view(1, c, 1, 1)) / s.view(1, c, 1, 1)


MAX_BATCH = 500


def fit_batch_size(model: nn.Module, image_shape: Sequence[int], n: int, input_size: int | None = None,
                   cap: int = MAX_BATCH) -> int:
    """The evaluation batch that fits the server's memory budget (`cnnviz.limits`): from the per-image
    activation estimate (`cnnviz.inspect.memory`, worked out on the `meta` device) plus the float copy
    of each input; the (n, K) probabilities kept for all `n` images count as fixed. BudgetError when not
    even one image fits."""
    from .. import limits
    from ..inspect import memory

    c, h, w = (int(v) for v in image_shape[-3:])
    size = (int(input_size), int(input_size)) if input_size else (h, w)
    est = memory.estimate(model, (c, *size))
    per_image = est.inference + 4 * c * (h * w + 2 * size[0] * size[1])  # float copy, resized, normalised
    fixed = n * 2 * max(est.output, 4)  # the probabilities on the CPU, and their concatenation
    return limits.fit_batch(per_image, fixed, cap,
                            what=f"evaluating {type(model).__name__} on {n:,} image(s) of {c}x{size[0]}x{size[1]}")


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, mean: Sequence[float], std: Sequence[float],
            input_size: int | None = None, batch_size: int | None = None, device: torch.device | str | None = None,
            progress: Callable[[float], None] | None = None) -> torch.Tensor:
    """Softmax probabilities (N, K) on CPU of `model` (put in eval mode) for uint8 `images` (N, C, H, W).

    `batch_size` None: the largest (at most 500) that fits the memory budget (`fit_batch_size`)."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(dev).eval()
    out = []
    n = len(images)
    if batch_size is None:
        batch_size = fit_batch_size(model, tuple(images.shape[1:]), n, input_size) if n else 1
    for i in range(0, n, batch_size):
        x = prepare_inputs(images[i:i + batch_size].to(dev), mean, std, input_size)
        out.append(torch.softmax(model(x).float(), dim=1).cpu())
        if progress is not None:
            progress(min(1.0, (i + batch_size) / max(n, 1)))
    if not out:
        return torch.zeros(0, 0)
    return torch.cat(out)


def evaluate_model(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str],
                   mean: Sequence[float], std: Sequence[float], input_size: int | None = None,
                   limit: int | None = None, batch_size: int | None = None, device: torch.device | str | None = None,
                   progress: Callable[[float], None] | None = None) -> Evaluation:
    """Predict on the first `limit` (default all) `images` and bundle the results."""
    n = len(images) if limit is None else min(int(limit), len(images))
    probs = predict(model, images[:n], mean, std, input_size, batch_size, device, progress)
    probs_np = probs.numpy().astype(np.float32) if n else np.zeros((0, len(classes)), np.float32)
    return Evaluation(classes=[str(c) for c in classes], labels=labels[:n].cpu().numpy().astype(np.int64),
                      preds=probs_np.argmax(axis=1).astype(np.int64) if n else np.zeros(0, np.int64),
                      probs=probs_np, indices=np.arange(n, dtype=np.int64))


def run_test_indices(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Positions of the test images a run was scored on: all of them, or the seeded subset that
    cnnviz.train.device_data.subsample(..., limit, seed + 1) draws for `limit_test` (sorted)."""
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randperm(n, generator=g)[:limit].sort().values.numpy().astype(np.int64)


def evaluate_run(run, epoch: int | None = None, split: str = "test", limit: int | None = None,
                 device: str = "auto", progress: Callable[[float], None] | None = None) -> Evaluation:
    """Evaluate `run` (a cnnviz.runs.RunSnapshot) at `epoch` (default: latest weights) on `split` of its dataset.

    On the test split it scores the same images the run reported its test accuracy on (its
    `limit_test` subset, if any), prepared as the trainer prepares them; `limit` caps the count
    further. Raises DatasetError (a ValueError) when the dataset can't be loaded and CheckpointError
    when the run has no usable checkpoint; both carry user-facing messages.
    """
    from .. import data
    from ..runs.model import load_model
    from ..device import pick_device
    from .device_data import resize_uint8

    model, meta = load_model(run, epoch)
    spec = meta.get("dataset") or run.config.get("dataset", "shapes")
    ds = data.load_dataset(spec, split)
    cfg = run.config
    idx = run_test_indices(len(ds.labels), cfg.get("limit_test") if split == "test" else None,
                           int(cfg.get("seed", 0) or 0))
    if limit is not None:
        idx = idx[: int(limit)]
    t = torch.from_numpy(idx)
    images, labels = ds.images.index_select(0, t), ds.labels.index_select(0, t)
    size = meta.get("input_size")
    if size and tuple(images.shape[-2:]) != (int(size), int(size)):
        images = resize_uint8(images, (int(size), int(size)))
    mean = meta.get("mean") or ds.mean
    std = meta.get("std") or ds.std
    classes = meta.get("classes") or ds.classes
    ev = evaluate_model(model, images, labels, classes, mean, std, None, None,
                        device=pick_device(device), progress=progress)
    ev.indices = idx
    ev.split, ev.dataset = split, spec
    ckpt = run.checkpoints.get(int(epoch)) if epoch is not None else run.last_checkpoint
    ev.checkpoint = str(ckpt or "")
    return ev


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts; entry [t, p] = number of examples of true class t predicted as p."""
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    if labels.shape != preds.shape:
        raise ValueError(f"labels {labels.shape} and preds {preds.shape} differ in shape")
    if len(labels) and (labels.min() < 0 or preds.min() < 0 or labels.max() >= num_classes
                        or preds.max() >= num_classes):
        raise ValueError(f"class ids must be in [0, {num_classes})")
    return np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """(K,) recall per true class: cm[k, k] / sum(cm[k, :]); NaN for classes with no examples."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, np.diag(cm) / np.where(rows > 0, rows, 1), np.nan)


def confident_mistakes(ev: Evaluation, k: int = 12) -> list[Mistake]:
    """The `k` wrong predictions the model was most sure of, most confident first."""
    wrong = np.flatnonzero(ev.preds != ev.labels)
    if not len(wrong):
        return []
    conf = ev.confidence[wrong]
    order = wrong[np.argsort(-conf, kind="stable")][:k]
    return [Mistake(int(ev.indices[i]), int(ev.labels[i]), int(ev.preds[i]), float(ev.confidence[i]))
            for i in order]


def cell_examples(ev: Evaluation, true: int, pred: int, limit: int = 24) -> list[Mistake]:
    """Examples of true class `true` predicted as `pred` (one confusion-matrix cell), most confident first."""
    hit = np.flatnonzero((ev.labels == true) & (ev.preds == pred))
    if not len(hit):
        return []
    order = hit[np.argsort(-ev.confidence[hit], kind="stable")][:limit]
    return [Mistake(int(ev.indices[i]), int(ev.labels[i]), int(ev.preds[i]), float(ev.confidence[i]))
            for i in order]


def top_confusions(cm: np.ndarray, k: int = 5) -> list[tuple[int, int, int]]:
    """The `k` largest off-diagonal cells as (true, pred, count), largest first (count > 0 only)."""
    cm = np.asarray(cm)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:k]
    out = []
    for f in flat:
        t, p = divmod(int(f), cm.shape[1])
        if off[t, p] > 0:
            out.append((t, p, int(off[t, p])))
    return out
