"""Training configuration: `TrainConfig` (validated, JSON round-trip), named presets, lr schedules.

Kept apart from the engine (`cnnviz.train.engine`; `cnnviz.train` exports the public names) so pages and the
CLI can build and check configs without the training loop.
"""

from __future__ import annotations

import math
from dataclasses import Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")
DEVICES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("auto", "bf16", "fp32")


def setting(default: Any, help: str, *, label: str = "", choices: tuple | None = None, low: float | None = None,
            high: float | None = None, sweep: bool = True, cli: bool = True) -> Any:
    """A TrainConfig field with what the CLI flags, the Train page form and sweeps derive from it:
    `help`, a form `label`, `choices`, bounds `low`..`high`, and whether it can be swept and set from the CLI."""
    return field(default=default, metadata={"help": help, "label": label, "choices": choices, "low": low,
                                            "high": high, "sweep": sweep, "cli": cli})


@dataclass
class TrainConfig:
    """Everything that defines a training run (JSON-serialisable; saved as the run's config.json).

    The single list of training settings: `settings()` gives each field with its type, default and
    metadata, and the CLI, the Train page, sweeps and presets are built from it."""

    model: str = setting("lenet5", "a registered model or design:NAME.json")
    dataset: str = setting("shapes", "shapes, digits, cifar10, mnist, fashion-mnist, folder:PATH or zip:PATH")
    augment: str = setting("none", "an augmentation preset name, pipeline JSON, or a .json file (CLI)")
    optimizer: str = setting("adam", "the optimizer", choices=OPTIMIZERS)
    lr: float = setting(1e-3, "learning rate (peak, for a schedule)", label="Learning rate", low=1e-8, high=100.0)
    momentum: float = setting(0.9, "SGD momentum", label="Momentum (SGD)", low=0.0, high=0.999)
    nesterov: bool = setting(False, "Nesterov momentum (SGD)", label="Nesterov (SGD)")
    schedule: str = setting("constant", "lr per step: constant, cosine decay to 0, or one-cycle", choices=SCHEDULES)
    weight_decay: float = setting(0.0, "weight decay", label="Weight decay", low=0.0, high=1.0)
    label_smoothing: float = setting(0.0, "label smoothing", label="Label smoothing", low=0.0, high=0.9)
    batch_size: int = setting(128, "images per step (the global batch under several processes)", label="Batch size",
                              low=1, high=65536)
    epochs: int = setting(1, "passes over the training set", low=1, high=10000)
    seed: int = setting(0, "seed of the model's initialisation, the batch order and augmentation", low=0,
                        high=2**31 - 1)
    device: str = setting("auto", "auto takes CUDA, then Apple MPS, then CPU", choices=DEVICES, sweep=False)
    precision: str = setting("auto", "auto: bf16 autocast on CUDA GPUs that support it, fp32 elsewhere",
                             choices=PRECISIONS)
    channels_last: bool = setting(True, "NHWC memory layout (faster convolutions on many GPUs and on CPU)",
                                  label="channels_last")
    compile: bool = setting(False, "torch.compile the model")
    limit_train: int | None = setting(None, "train on a random subset of this many images",
                                      label="Train images (0 = all)", low=2, high=10_000_000)
    limit_test: int | None = setting(None, "test on a random subset of this many images",
                                     label="Test images (0 = all)", low=1, high=10_000_000)

    @classmethod
    def settings(cls) -> list[Field]:
        """The fields, in order, each with .name, .type (a string), .default and .metadata."""
        return list(fields(cls))

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
        for f in self.settings():
            problem = _field_problem(f, getattr(self, f.name))
            if problem:
                raise ValueError(problem)
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise ValueError("nesterov needs optimizer sgd with momentum > 0.")
        if self.augment.strip() not in ("", "none"):
            from ..augment.pipeline import resolve

            resolve(self.augment)  # ValueError with a clear message


def _field_problem(f: Field, v: Any) -> str | None:
    """Why value `v` does not fit setting `f` (its type, choices and bounds), in one line, or None."""
    md, kind = f.metadata, str(f.type)
    if v is None and "None" in kind:
        return None
    if kind.startswith("int") and not _int(v):
        return f"{f.name} must be a whole number, not {v!r}."
    if kind == "float" and not _num(v):
        return f"{f.name} must be a number, not {v!r}."
    if kind == "bool" and not isinstance(v, bool):
        return f"{f.name} must be true or false, not {v!r}."
    if kind == "str" and not isinstance(v, str):
        return f"{f.name} must be text, not {v!r}."
    if md.get("choices") and v not in md["choices"]:
        return f"{f.name} must be one of {', '.join(md['choices'])}, not {v!r}."
    low, high = md.get("low"), md.get("high")
    if (low is not None and v < low) or (high is not None and v > high):
        return f"{f.name} must be in {low:g}..{high:g}, not {v!r}."
    return None


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
                     batch_size=512, epochs=16, precision="auto", channels_last=True, dataset="cifar10"),
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
