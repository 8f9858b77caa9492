"""The training engine: `TrainConfig`, and `fit(config)` yielding `Event`s while it trains.

The hot loop never touches PIL: the dataset's uint8 tensors go to the device once
(`cnnviz.train.device_data`), batches are cut there by a per-epoch permutation, augmented there
(`cnnviz.augment.batch.BatchAugmenter`) and normalised there. Everything a run writes
goes to its run directory (see `cnnviz.train.runs`), so a run survives a closed browser tab,
a stop, or a kill -9, and can be resumed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch.nn import functional as F

from . import runs
from ..models.checkpoints import atomic_write_bytes, load_checkpoint, load_into, save_checkpoint
from .device_data import DeviceData, Normalizer, resize_uint8, subsample
from .config import TrainConfig, lr_at

MAX_EPOCH_CHECKPOINTS = 20
EVAL_BATCH = 1024
_INIT_LOCK = threading.Lock()  # model init seeds the global RNG: one run at a time

@dataclass
class Event:
    """One thing that happened during fit(): kind is start|step|epoch|checkpoint|done|error."""

    kind: str
    data: dict = field(default_factory=dict)


def memory_usage(device: torch.device) -> str:
    """A short line: CUDA memory allocated/peak, or this process's resident memory."""
    if device.type == "cuda":
        return (f"{torch.cuda.memory_allocated(device) / 2**20:.0f} MiB allocated "
                f"(peak {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB)")
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return f"{int(line.split()[1]) / 1024:.0f} MiB resident (process)"
    except OSError:
        pass
    import resource

    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB peak resident (process)"


def _load_data(spec: str, split: str):
    """The dataset (cnnviz.data.load_dataset); a module-level hook so tests can substitute it."""
    from ..data.datasets import load_dataset

    return load_dataset(spec, split)


def _advice_oom(cfg: TrainConfig) -> str:
    return (f"The device ran out of memory at batch size {cfg.batch_size}: try {max(1, cfg.batch_size // 2)} "
            "or smaller, a smaller model, or precision bf16. The app keeps running.")


def _advice_diverged(cfg: TrainConfig) -> str:
    tips = [f"lower the learning rate (now {cfg.lr:g}; try {cfg.lr / 10:g})"]
    if cfg.optimizer == "sgd":
        tips.append("or use adam")
    if cfg.schedule == "constant":
        tips.append("or a onecycle schedule (it warms up)")
    if cfg.precision == "bf16":
        tips.append("or precision fp32")
    return "The loss became NaN/inf: " + ", ".join(tips) + "."


def _make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


def _autocast(device: torch.device, precision: str):
    from ..device import supports_bf16

    use = precision == "bf16" or (precision == "auto" and supports_bf16(device))
    if not use:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _save_state(run_dir: Path, opt: torch.optim.Optimizer, state: dict, device: torch.device) -> None:
    rng = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    runs.write_state(run_dir, {"optimizer": opt.state_dict(), "rng": rng, **state})


def fit(config: TrainConfig, run_dir: Path | None = None, stop_event: threading.Event | None = None,
        resume: Path | None = None) -> Iterator[Event]:
    """Train `config`, yielding Events: start, step..., epoch, checkpoint, ..., then done or error.

    `run_dir` (default runs_root()/<new id>) receives config.json, metrics.jsonl and
    checkpoints. `stop_event` is checked every step: once set, the run saves a checkpoint
    and ends with status "stopped". `resume` (a run directory) continues that run from its
    last checkpoint: same directory, epoch count and curves continue.
    """
    stop_event = stop_event or threading.Event()
    try:
        yield from _fit(config, run_dir, stop_event, resume)
    except Exception as exc:  # last resort: the caller gets an error event, never a traceback
        yield Event("error", {"message": f"{type(exc).__name__}: {exc}",
                              "advice": "This looks like a bug in cnnviz; see the 'traceback' field.",
                              "traceback": traceback.format_exc()})


def _fit(cfg: TrainConfig, run_dir: Path | None, stop_event: threading.Event,
         resume: Path | None) -> Iterator[Event]:
    from .. import models
    from ..device import describe, pick_device

    # ---- validate and set up (errors here are reported before any training) ----
    try:
        cfg.validate()
        device = pick_device(cfg.device)
    except ValueError as exc:
        yield Event("error", {"message": str(exc), "advice": "Fix the setting and start again."})
        return
    prev_state: dict | None = None
    if resume is not None:
        run_dir = Path(resume)
        try:
            saved = runs.load_run(run_dir)
        except FileNotFoundError as exc:
            yield Event("error", {"message": str(exc), "advice": "Pick an existing run to resume."})
            return
        for key in ("model", "dataset"):
            if saved.config.get(key) not in (None, getattr(cfg, key)):
                yield Event("error", {"message": f"Cannot resume: the run used {key}={saved.config.get(key)!r}, "
                                                 f"not {getattr(cfg, key)!r}.", "advice": "Resume with the run's config."})
                return
        if saved.last_checkpoint is None or not (run_dir / runs.LAST_STATE).is_file():
            yield Event("error", {"message": f"Run {run_dir.name} has no checkpoint to resume from.",
                                  "advice": "Start a new run instead."})
            return
        try:
            prev_state = torch.load(run_dir / runs.LAST_STATE, map_location="cpu", weights_only=True)
        except Exception as exc:
            yield Event("error", {"message": f"Cannot read {runs.LAST_STATE}: {exc}", "advice": "Start a new run."})
            return
    run_dir = Path(run_dir) if run_dir is not None else runs.runs_root() / runs.new_run_id(cfg.model, cfg.dataset)
    run_dir.mkdir(parents=True, exist_ok=True)

    t_load = time.perf_counter()
    try:
        train_ds = _load_data(cfg.dataset, "train")
        test_ds = _load_data(cfg.dataset, "test")
    except (ValueError, FileNotFoundError, OSError) as exc:  # DatasetError is a ValueError
        yield Event("error", {"message": f"Dataset {cfg.dataset!r}: {exc}",
                              "advice": "Check the dataset on the Datasets page (download it or fix the path)."})
        return
    num_classes, in_ch = len(train_ds.classes), int(train_ds.images.shape[1])
    notes: list[str] = [n for n in (getattr(train_ds, "note", ""),) if n]

    x_tr, y_tr = subsample(train_ds.images, train_ds.labels, cfg.limit_train, cfg.seed)
    x_te, y_te = subsample(test_ds.images, test_ds.labels, cfg.limit_test, cfg.seed + 1)

    augmenter = None
    out_hw = tuple(x_tr.shape[-2:])
    if cfg.augment.strip() not in ("", "none"):
        from ..augment.pipeline import resolve
        from ..augment.batch import BatchAugmenter

        augmenter = BatchAugmenter(resolve(cfg.augment), device, num_classes)
        out_hw = tuple(augmenter.output_size(out_hw))
        if getattr(augmenter, "fallback_steps", None):
            notes.append(f"per-sample (slower) augmentation steps: {', '.join(map(str, augmenter.fallback_steps))}")

    with _INIT_LOCK:
        torch.manual_seed(cfg.seed)
        model = models.create(cfg.model, num_classes=num_classes, in_channels=in_ch)
    minfo = models.info(cfg.model)
    model_hw = out_hw
    model.eval()
    try:  # does the model take this size? (LeNet5's Linear(800) wants 32x32)
        with torch.no_grad():
            model(torch.zeros(2, in_ch, *out_hw))
    except RuntimeError:
        model_hw = (minfo.input_size, minfo.input_size)
        notes.append(f"images resized from {out_hw[0]}x{out_hw[1]} to the model's {model_hw[0]}x{model_hw[1]}")
    if tuple(x_te.shape[-2:]) != out_hw:
        x_te = resize_uint8(x_te, out_hw)
    if model_hw != out_hw:
        x_te = resize_uint8(x_te, model_hw)
        if augmenter is None:
            x_tr = resize_uint8(x_tr, model_hw)

    if prev_state is not None:
        try:
            load_into(model, load_checkpoint(run_dir / runs.LAST_WEIGHTS), cfg.model)
        except ValueError as exc:
            yield Event("error", {"message": str(exc), "advice": "Start a new run instead."})
            return

    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    try:
        model = model.to(device=device, memory_format=fmt)
        train = DeviceData(x_tr, y_tr, device)
        test = DeviceData(x_te, y_te, device)
    except torch.cuda.OutOfMemoryError:
        yield Event("error", {"message": "Out of memory moving the dataset/model to the device.",
                              "advice": _advice_oom(cfg)})
        return
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
    norm = Normalizer(tuple(train_ds.mean), tuple(train_ds.std), device, cfg.channels_last)
    opt = _make_optimizer(cfg, model.parameters())
    autocast = _autocast(device, cfg.precision)
    forward = model
    if cfg.compile:
        try:
            forward = torch.compile(model)
        except Exception as exc:  # noqa: BLE001 - any failure means: run eager
            notes.append(f"torch.compile unavailable ({type(exc).__name__}); running eager")
    steps_per_epoch = train.num_batches(cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    epochs_done, global_step, elapsed_prev = 0, 0, 0.0
    if prev_state is not None:
        opt.load_state_dict(prev_state["optimizer"])
        epochs_done = int(prev_state.get("epochs_done", 0))
        global_step = int(prev_state.get("global_step", 0))
        elapsed_prev = float(prev_state.get("elapsed_s", 0.0))
        with contextlib.suppress(Exception):
            torch.set_rng_state(prev_state["rng"]["torch"])
    load_s = time.perf_counter() - t_load

    # (on resume the run continues with this config, e.g. more epochs)
    atomic_write_bytes(run_dir / runs.CONFIG_FILE, json.dumps(cfg.to_dict(), indent=2).encode())
    atomic_write_bytes(run_dir / runs.PID_FILE, str(os.getpid()).encode())
    log = runs.MetricsLog(run_dir / runs.METRICS_FILE)
    meta_base = {"model": cfg.model, "num_classes": num_classes, "in_channels": in_ch,
                 "input_size": int(model_hw[0]), "classes": list(train_ds.classes),
                 "mean": list(train_ds.mean), "std": list(train_ds.std), "run_id": run_dir.name,
                 "dataset": cfg.dataset, "augment": cfg.augment, "config": cfg.to_dict()}

    def checkpoint(epoch_done: int, partial: bool, metrics: dict) -> Event:
        meta = {**meta_base, "epoch": epoch_done, "step": global_step, "partial": partial, "metrics": metrics}
        files = []
        if not partial:
            p = save_checkpoint(model, run_dir / runs.epoch_checkpoint_name(epoch_done), meta)
            files.append(p.name)
        save_checkpoint(model, run_dir / runs.LAST_WEIGHTS, meta)
        _save_state(run_dir, opt, {"epochs_done": epoch_done, "global_step": global_step,
                                   "elapsed_s": elapsed_prev + (time.perf_counter() - t0), "partial": partial},
                    device)
        if not partial:
            runs.thin_checkpoints(run_dir, MAX_EPOCH_CHECKPOINTS)
        data = {"epoch": epoch_done, "step": global_step, "partial": partial,
                "path": str(run_dir / runs.LAST_WEIGHTS), "files": files + [runs.LAST_WEIGHTS]}
        log.write("checkpoint", data)
        return Event("checkpoint", data)

    def done(status: str, **extra: Any) -> Event:
        data = {"status": status, "epochs_done": epochs_done, "step": global_step,
                "elapsed_s": elapsed_prev + (time.perf_counter() - t0), "run_dir": str(run_dir), **extra}
        if last_epoch:
            data.update({k: last_epoch[k] for k in ("train_loss", "train_acc", "test_loss", "test_acc")})
        log.write("done", data)
        return Event("done", data)

    def evaluate() -> tuple[float, float]:
        model.eval()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        with torch.no_grad(), autocast():
            for xb, yb in test.batches(EVAL_BATCH, shuffle=False, drop_tiny=False):
                out = forward(norm.from_uint8(xb))
                loss_sum += F.cross_entropy(out.float(), yb, reduction="sum")
                correct += (out.argmax(1) == yb).sum()
        model.train()
        n = max(1, len(test))
        return loss_sum.item() / n, correct.item() / n

    start = {"run_id": run_dir.name, "run_dir": str(run_dir), "device": describe(device), "device_type": device.type,
             "model": cfg.model,
             "params": sum(p.numel() for p in model.parameters()), "dataset": cfg.dataset,
             "n_train": len(train), "n_test": len(test), "classes": list(train_ds.classes),
             "mean": list(train_ds.mean), "std": list(train_ds.std),
             "input_size": list(model_hw), "in_channels": in_ch, "steps_per_epoch": steps_per_epoch,
             "epochs": cfg.epochs, "start_epoch": epochs_done + 1, "load_s": round(load_s, 3),
             "precision": "bf16" if autocast is not contextlib.nullcontext else "fp32", "notes": notes,
             "resumed": prev_state is not None}
    if prev_state is not None:
        log.write("resume", {"epochs_done": epochs_done, "global_step": global_step})
    log.write("start", start)
    yield Event("start", start)

    t0 = time.perf_counter()
    last_epoch: dict = {}
    log_every = 1 if device.type == "cpu" else 10
    gen = torch.Generator(device=device)
    aug_gen = torch.Generator(device=device)
    model.train()
    try:
        for epoch in range(epochs_done + 1, cfg.epochs + 1):
            gen.manual_seed(cfg.seed * 1_000_003 + epoch)
            aug_gen.manual_seed(cfg.seed * 1_000_003 + epoch + 500_009)
            t_ep = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device)
            seen = 0
            win_loss, win_n, win_t = torch.zeros((), device=device), 0, time.perf_counter()
            for i, (xb, yb) in enumerate(train.batches(cfg.batch_size, gen)):
                if stop_event.is_set():
                    yield checkpoint(epochs_done, True, last_epoch)
                    yield done("stopped", message=f"Stopped by the user in epoch {epoch}, step {global_step}.")
                    return
                lr = lr_at(cfg.schedule, cfg.lr, global_step, total_steps)
                for g in opt.param_groups:
                    g["lr"] = lr
                if augmenter is not None:
                    xf, yt = augmenter(xb, yb, generator=aug_gen)
                    if model_hw != tuple(xf.shape[-2:]):
                        xf = F.interpolate(xf, size=model_hw, mode="bilinear", antialias=True)
                    if augmenter.normalizes:
                        x = xf.contiguous(memory_format=fmt)
                    else:
                        x = norm.from_unit(xf)
                else:
                    x, yt = norm.from_uint8(xb), yb
                try:
                    with autocast():
                        out = forward(x)
                except Exception as exc:  # noqa: BLE001
                    if forward is model or isinstance(exc, torch.cuda.OutOfMemoryError):
                        raise
                    notes.append(f"torch.compile failed ({type(exc).__name__}); fell back to eager")
                    log.write("note", {"message": notes[-1]})
                    forward = model
                    with autocast():
                        out = forward(x)
                loss = F.cross_entropy(out.float(), yt, label_smoothing=cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                global_step += 1
                bs = yb.shape[0]
                seen += bs
                ld = loss.detach()
                loss_sum += ld * bs
                win_loss += ld * bs
                win_n += bs
                target = yt if yt.ndim == 1 else yt.argmax(1)
                correct += (out.detach().argmax(1) == target).sum()
                if (i + 1) % log_every == 0 or i + 1 == steps_per_epoch:
                    lval = win_loss.item() / win_n
                    if not math.isfinite(lval):
                        msg = f"The loss became {lval} at step {global_step} (epoch {epoch})."
                        yield done("diverged", message=msg, advice=_advice_diverged(cfg), diverged_step=global_step)
                        return
                    now = time.perf_counter()
                    sd = {"step": global_step, "epoch": epoch, "loss": lval, "lr": lr,
                          "images_per_s": win_n / max(now - win_t, 1e-9),
                          "progress": global_step / max(1, total_steps),
                          "elapsed_s": elapsed_prev + now - t0}
                    log.write("step", sd, sync=False)
                    yield Event("step", sd)
                    win_loss, win_n, win_t = torch.zeros((), device=device), 0, time.perf_counter()
            train_time = time.perf_counter() - t_ep
            test_loss, test_acc = evaluate()
            epochs_done = epoch
            last_epoch = {"epoch": epoch, "train_loss": loss_sum.item() / max(1, seen),
                          "train_acc": correct.item() / max(1, seen), "test_loss": test_loss, "test_acc": test_acc,
                          "lr": lr_at(cfg.schedule, cfg.lr, global_step, total_steps),
                          "images_per_s": seen / max(train_time, 1e-9),
                          "epoch_s": time.perf_counter() - t_ep, "elapsed_s": elapsed_prev + time.perf_counter() - t0,
                          "step": global_step, "progress": global_step / max(1, total_steps)}
            if not math.isfinite(last_epoch["train_loss"]) or not math.isfinite(test_loss):
                yield done("diverged", message=f"The loss became NaN/inf in epoch {epoch}.",
                           advice=_advice_diverged(cfg), diverged_step=global_step)
                return
            log.write("epoch", last_epoch)
            yield Event("epoch", dict(last_epoch))
            yield checkpoint(epoch, False, last_epoch)
        yield done("finished")
    except torch.cuda.OutOfMemoryError:
        with contextlib.suppress(Exception):
            del x, out, loss
            torch.cuda.empty_cache()
        data = {"message": f"CUDA out of memory (batch size {cfg.batch_size}, model {cfg.model}).",
                "advice": _advice_oom(cfg), "step": global_step}
        log.write("error", data)
        yield Event("error", data)
    except Exception as exc:  # noqa: BLE001 - log it in the run too, then report it
        data = {"message": f"{type(exc).__name__}: {exc}", "advice": "Training failed; see the traceback.",
                "traceback": traceback.format_exc(), "step": global_step}
        log.write("error", data)
        yield Event("error", data)
    finally:
        log.close()
        (run_dir / runs.PID_FILE).unlink(missing_ok=True)
