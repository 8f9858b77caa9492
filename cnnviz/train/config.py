"""Training configuration: `TrainConfig` (validated, JSON round-trip), named presets, lr schedules.

Kept apart from the engine (`cnnviz.train.engine`; `cnnviz.train` exports the public names) so pages and the
CLI can build and check configs without the training loop.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")
DEVICES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class TrainConfig:
    """Everything that defines a training run (JSON-serialisable; saved as the run's config.json)."""

    model: str = "lenet5"
    dataset: str = "shapes"
    augment: str = "none"  # preset name or pipeline JSON
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    schedule: str = "constant"  # constant | cosine | onecycle (per step)
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    batch_size: int = 128
    epochs: int = 1
    seed: int = 0
    device: str = "auto"  # auto | cuda | mps | cpu
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 elsewhere) | bf16 | fp32
    channels_last: bool = True  # NHWC: faster convs on CUDA and, measured here, on CPU too
    compile: bool = False
    limit_train: int | None = None
    limit_test: int | None = None

    def to_dict(self) -> dict:
        """A plain dict (config.json)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Build from a dict; unknown keys raise ValueError naming them."""
        if not isinstance(d, dict):
            raise ValueError("A training config must be a JSON object.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Unknown config keys: {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        return cls(**d)

    def validate(self) -> None:
        """Raise ValueError with a clear message if anything is out of range."""
        from .. import models

        models.info(self.model)  # ValueError naming the known models
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ValueError("Choose a dataset.")
        for kind in ("folder:", "zip:"):
            if self.dataset.startswith(kind):
                p = Path(self.dataset[len(kind):]).expanduser()
                if not p.exists():
                    raise ValueError(f"Dataset {self.dataset!r}: {p} does not exist.")
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (_num(self.lr) and 0 < self.lr <= 100, "lr must be a number in (0, 100]"),
            (_num(self.momentum) and 0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (not (self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0)),
             "nesterov needs optimizer sgd with momentum > 0"),
            (_num(self.weight_decay) and 0 <= self.weight_decay <= 1, "weight_decay must be in [0, 1]"),
            (_num(self.label_smoothing) and 0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (_int(self.batch_size) and 1 <= self.batch_size <= 65536, "batch_size must be an integer in 1..65536"),
            (_int(self.epochs) and 1 <= self.epochs <= 10000, "epochs must be an integer in 1..10000"),
            (_int(self.seed) and self.seed >= 0, "seed must be a non-negative integer"),
            (self.limit_train is None or (_int(self.limit_train) and self.limit_train >= 2),
             "limit_train must be empty or an integer >= 2"),
            (self.limit_test is None or (_int(self.limit_test) and self.limit_test >= 1),
             "limit_test must be empty or an integer >= 1"),
            (isinstance(self.augment, str), "augment must be a preset name or pipeline JSON"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg + ".")
        if self.augment.strip() not in ("", "none"):
            try:
                from ..augment.pipeline import resolve
            except ImportError:
                raise ValueError("Augmentation is not available in this install; use augment='none'.") from None
            resolve(self.augment)  # ValueError with a clear message


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


# Named configurations (the Training page and the CLI offer them).
PRESETS: dict[str, dict[str, Any]] = {
    # In the spirit of airbench (Keller Jordan): a small VGG-like net, big batches, Nesterov SGD,
    # one-cycle lr, label smoothing, flip + crop, bf16 + channels_last. For a CUDA GPU.
    "speedrun": dict(model="airbench", augment="cifar-standard", optimizer="sgd", lr=0.4, momentum=0.9,
                     nesterov=True, schedule="onecycle", weight_decay=5e-4, label_smoothing=0.2,
                     batch_size=512, epochs=16, precision="auto", channels_last=True),
    # The tutorial's own hyper-parameters (Adam 1e-3, batch 128).
    "tutorial": dict(model="lenet5", optimizer="adam", lr=1e-3, batch_size=128, schedule="constant"),
}


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """A TrainConfig from a named preset (see PRESETS), with `overrides` applied."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; known: {', '.join(PRESETS)}.")
    return TrainConfig.from_dict({**PRESETS[name], **overrides})


def lr_at(schedule: str, base_lr: float, step: int, total_steps: int) -> float:
    """Learning rate for 0-based `step` of `total_steps` (one-cycle as torch's OneCycleLR defaults)."""
    total = max(1, total_steps)
    t = min(max(step, 0), total)
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * t / total))
    if schedule == "onecycle":
        start, final = base_lr / 25.0, base_lr / 25.0 / 1e4
        warm = max(1.0, 0.3 * total - 1)

        def cos_anneal(a: float, b: float, pct: float) -> float:
            return b + (a - b) / 2.0 * (math.cos(math.pi * min(1.0, pct)) + 1.0)

        if t <= warm:
            return cos_anneal(start, base_lr, t / warm)
        return cos_anneal(base_lr, final, (t - warm) / max(1.0, total - 1 - warm))
    raise ValueError(f"unknown schedule {schedule!r}")
