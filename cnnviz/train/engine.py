"""The training engine: `TrainConfig`, and `fit(config)` yielding `Event`s while it trains.

The hot loop never touches PIL: the dataset's uint8 tensors go to the device once
(`cnnviz.train.device_data`), batches are cut there by a per-epoch permutation, augmented there
(`cnnviz.augment.batch.BatchAugmenter`) and normalised there. Everything a run writes
goes to its run directory (see `cnnviz.runs`), so a run survives a closed browser tab,
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

from ..atomic import atomic_write_bytes
from ..models.checkpoints import load_checkpoint, load_into, save_checkpoint
from ..runs import layout
from ..runs.liveness import pid_record, process_started_at
from ..runs.writer import RunWriter
from .diagnostics import advice_diverged, advice_oom, host_out_of_memory, memory_usage, oom_message
from .device_data import DeviceData, Normalizer, resize_uint8, subsample
from .distributed import Dist, wrap
from .config import TrainConfig, lr_at
from ..inspect.layerstats import epoch_layer_stats
from .resume import EpochPosition, restore_rng, resume_state, save_state

MAX_EPOCH_CHECKPOINTS = 20
EVAL_BATCH = 1024
_INIT_LOCK = threading.Lock()  # model init seeds the global RNG: one run at a time

@dataclass
class Event:
    """One thing that happened during fit(): kind is start|step|epoch|checkpoint|done|error."""

    kind: str
    data: dict = field(default_factory=dict)


def _load_data(spec: str, split: str):
    """The dataset (cnnviz.data.load_dataset); a module-level hook so tests can substitute it."""
    from ..data.datasets import load_dataset

    return load_dataset(spec, split)


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


def fit(config: TrainConfig, run_dir: Path | None = None, stop_event: threading.Event | None = None,
        resume: Path | None = None) -> Iterator[Event]:
    """Train `config`, yielding Events: start, step..., epoch, checkpoint, ..., then done or error.

    `run_dir` (default runs_root()/<new id>) receives config.json, metrics.jsonl and
    checkpoints. `stop_event` is checked every step: once set, the run saves a checkpoint
    and ends with status "stopped". `resume` (a run directory) continues that run from its
    last checkpoint: same directory, epoch count and curves continue; a run stopped inside an epoch
    continues from the batch it stopped at (`cnnviz.train.resume`), so stop + resume trains exactly
    what one uninterrupted run would.
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
    """The loop, as it reads: set up, then per epoch train / evaluate / checkpoint, then finish."""
    run = yield from _set_up(cfg, run_dir, resume)
    if run is None:  # set-up said why in an error event
        return
    try:
        yield _start(run)
        for epoch in range(run.epochs_done + 1, cfg.epochs + 1):
            stats = yield from _train_epoch(run, epoch, stop_event)
            if stats is None:  # stopped or diverged: the step loop has said so
                return
            test_loss, test_acc = _evaluate(run)
            ended = _end_epoch(run, epoch, stats, test_loss, test_acc)
            if ended is not None:
                yield ended
                return
            yield Event("epoch", dict(run.last_epoch))
            yield _checkpoint(run, epoch, partial=False)
        yield _finish(run, "finished")
    except torch.cuda.OutOfMemoryError as exc:
        traceback.clear_frames(exc.__traceback__)  # drop the batch's tensors before the next run
        with contextlib.suppress(Exception):
            torch.cuda.empty_cache()
        data = {"message": f"CUDA out of memory (batch size {cfg.batch_size}, model {cfg.model}).",
                "advice": advice_oom(cfg), "step": run.global_step}
        run.log.write("error", data)
        yield Event("error", data)
    except Exception as exc:  # noqa: BLE001 - log it in the run too, then report it
        if _peer_failure(run.dist, exc):
            raise  # another rank died: end without a final line, so the run shows "interrupted", resumable
        if host_out_of_memory(exc):
            traceback.clear_frames(exc.__traceback__)
            data = {"message": oom_message(), "advice": advice_oom(cfg), "step": run.global_step}
            run.log.write("error", data)
            yield Event("error", data)
            return
        data = {"message": f"{type(exc).__name__}: {exc}", "advice": "Training failed; see the traceback.",
                "traceback": traceback.format_exc(), "step": run.global_step}
        run.log.write("error", data)
        yield Event("error", data)
    finally:
        run.log.close()
        if run.dist.is_main:
            (run.run_dir / layout.PID_FILE).unlink(missing_ok=True)
        run.dist.close()


def _peer_failure(dist: Dist, exc: BaseException) -> bool:
    """Whether `exc` says that another rank of this run is gone (a collective failed), not a bug here."""
    if not dist.active:
        return False
    import torch.distributed as tdist

    if isinstance(exc, getattr(tdist, "DistError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(w in text for w in ("gloo", "nccl", "connection", "peer"))


# ---------------------------------------------------------------------------------------------
# The state of one run, built by _set_up and advanced by the steps below.

@dataclass
class _Run:
    cfg: TrainConfig
    device: torch.device
    run_dir: Path
    dist: Dist                        # rank r of world (Dist() for a single process)
    model: torch.nn.Module            # the plain model: what checkpoints save
    forward: Any                      # what trains: the model, DDP around it, torch.compile'd
    eager: Any                        # forward without torch.compile (the fallback)
    eval_forward: Any                 # what evaluates this rank's shard (never DDP)
    opt: torch.optim.Optimizer
    train: DeviceData
    test: DeviceData
    norm: Normalizer
    augmenter: Any                    # BatchAugmenter or None
    autocast: Any                     # a context-manager factory
    fmt: torch.memory_format
    model_hw: tuple[int, int]
    steps_per_epoch: int
    total_steps: int
    log: Any                          # a RunWriter on rank 0, a _NullLog elsewhere
    meta: dict                        # what every checkpoint records
    start_info: dict                  # the start event's data
    notes: list[str]
    resumed: bool
    epochs_done: int = 0
    global_step: int = 0
    elapsed_prev: float = 0.0         # training time of the runs this one resumes
    t0: float = 0.0                   # when this process started training
    last_epoch: dict = field(default_factory=dict)
    resume_pos: EpochPosition | None = None   # where in its epoch the resumed run had stopped
    position: EpochPosition | None = None     # where in its epoch this run stops (saved with the checkpoint)

    def elapsed(self) -> float:
        return self.elapsed_prev + (time.perf_counter() - self.t0)


@dataclass
class _EpochStats:
    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int
    train_s: float
    t_start: float
    seen_timed: int                   # images trained by this process in the epoch (for images/s)


class _NullLog:
    """What ranks other than 0 write to: nothing (rank 0 alone writes metrics.jsonl)."""

    def write(self, kind: str, data: dict, sync: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def _error(message: str, advice: str) -> Event:
    return Event("error", {"message": message, "advice": advice})


# ---------------------------------------------------------------------------------------------
# Set-up: validate, load the data, build the model, move both to the device. Errors here are
# reported before anything is written to the run.

def _set_up(cfg: TrainConfig, run_dir: Path | None, resume: Path | None):
    """Yield an error event and return None, or return the _Run ready to train."""
    from .. import models
    from ..device import describe, pick_device

    try:
        cfg.validate()
        device = pick_device(cfg.device)
        dist = Dist.from_env(device.type)
        device = dist.device(device)
        dist.shard(cfg.batch_size)
    except ValueError as exc:
        yield _error(str(exc), "Fix the setting and start again.")
        return None
    prev_state = None
    if resume is not None:  # every rank checks the same files, then loads them
        run_dir = Path(resume)
        prev_state, problem = resume_state(cfg, run_dir)
        if prev_state is None:
            yield _error(*problem)
            return None
        dist.barrier()
    if run_dir is None:  # rank 0 names the run
        run_dir = dist.broadcast(str(layout.new_run_dir(cfg.model, cfg.dataset)) if dist.is_main else None)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    t_load = time.perf_counter()
    try:
        train_ds = _load_data(cfg.dataset, "train")
        test_ds = _load_data(cfg.dataset, "test")
    except (ValueError, FileNotFoundError, OSError) as exc:  # DatasetError is a ValueError
        yield _error(f"Dataset {cfg.dataset!r}: {exc}",
                     "Check the dataset on the Datasets page (download it or fix the path).")
        return None
    num_classes, in_ch = len(train_ds.classes), int(train_ds.images.shape[1])
    notes: list[str] = [n for n in (getattr(train_ds, "note", ""),) if n]
    x_tr, y_tr = subsample(train_ds.images, train_ds.labels, cfg.limit_train, cfg.seed)
    x_te, y_te = subsample(test_ds.images, test_ds.labels, cfg.limit_test, cfg.seed + 1)

    augmenter = None
    out_hw = tuple(x_tr.shape[-2:])
    if cfg.augment.strip() not in ("", "none"):
        from ..augment.batch import BatchAugmenter
        from ..augment.pipeline import resolve

        augmenter = BatchAugmenter(resolve(cfg.augment), device, num_classes)
        out_hw = tuple(augmenter.output_size(out_hw))
        if getattr(augmenter, "fallback_steps", None):
            notes.append(f"per-sample (slower) augmentation steps: {', '.join(map(str, augmenter.fallback_steps))}")

    try:
        with _INIT_LOCK:
            torch.manual_seed(cfg.seed)
            model = models.create(cfg.model, num_classes=num_classes, in_channels=in_ch)
    except ValueError as exc:  # a design that can't take this dataset (or whose file changed): say why
        yield _error(str(exc), "Fix the design on the Architectures page, or pick another model.")
        return None
    model_hw = _input_size(model, in_ch, out_hw, models.info(cfg.model).input_size, notes)
    if tuple(x_te.shape[-2:]) != out_hw:
        x_te = resize_uint8(x_te, out_hw)
    if model_hw != out_hw:
        x_te = resize_uint8(x_te, model_hw)
        if augmenter is None:
            x_tr = resize_uint8(x_tr, model_hw)
    if prev_state is not None:
        try:
            load_into(model, load_checkpoint(run_dir / layout.LAST_WEIGHTS), cfg.model)
        except ValueError as exc:
            yield _error(str(exc), "Start a new run instead.")
            return None

    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    try:
        model = model.to(device=device, memory_format=fmt)  # the memory format is set before DDP wraps it
        wrapped = wrap(model, dist, device)
        model = getattr(wrapped, "module", model)  # SyncBatchNorm'd on CUDA
        train = DeviceData(x_tr, y_tr, device)
        test = DeviceData(x_te, y_te, device)
    except torch.cuda.OutOfMemoryError:
        yield _error("Out of memory moving the dataset/model to the device.", advice_oom(cfg))
        return None
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
    opt = _make_optimizer(cfg, model.parameters())
    steps_per_epoch = train.num_batches(cfg.batch_size, world=dist.world)
    forward = _compiled(wrapped, cfg, notes)
    run = _Run(cfg=cfg, device=device, run_dir=run_dir, dist=dist, model=model, forward=forward, eager=wrapped,
               eval_forward=forward if wrapped is model else model, opt=opt,
               train=train, test=test, norm=Normalizer(tuple(train_ds.mean), tuple(train_ds.std), device,
                                                      cfg.channels_last),
               augmenter=augmenter, autocast=_autocast(device, cfg.precision), fmt=fmt, model_hw=model_hw,
               steps_per_epoch=steps_per_epoch, total_steps=steps_per_epoch * cfg.epochs, log=None, meta={},
               start_info={}, notes=notes, resumed=prev_state is not None)
    if prev_state is not None:
        opt.load_state_dict(prev_state["optimizer"])
        run.epochs_done = int(prev_state.get("epochs_done", 0))
        run.global_step = int(prev_state.get("global_step", 0))
        run.elapsed_prev = float(prev_state.get("elapsed_s", 0.0))
        run.resume_pos = EpochPosition.from_state(prev_state.get("position"), cfg.batch_size, notes)
        restore_rng(prev_state, device)
    load_s = time.perf_counter() - t_load

    if dist.is_main:  # (on resume the run continues with this config, e.g. more epochs)
        _drop_stale_stop(run_dir)
        atomic_write_bytes(run_dir / layout.CONFIG_FILE, json.dumps(cfg.to_dict(), indent=2).encode())
        atomic_write_bytes(run_dir / layout.PID_FILE, pid_record())
    run.log = RunWriter(run_dir) if dist.is_main else _NullLog()
    classes, mean, std = list(train_ds.classes), list(train_ds.mean), list(train_ds.std)
    run.meta = {"model": cfg.model, "num_classes": num_classes, "in_channels": in_ch,
                "input_size": int(model_hw[0]), "classes": classes, "mean": mean, "std": std,
                "run_id": run_dir.name, "dataset": cfg.dataset, "augment": cfg.augment, "config": cfg.to_dict(),
                **models.design.checkpoint_meta(model)}  # a design's JSON and hash: its weights fit only it
    run.start_info = {"run_id": run_dir.name, "run_dir": str(run_dir), "device": describe(device),
                      "device_type": device.type, "model": cfg.model,
                      "params": sum(p.numel() for p in model.parameters()), "dataset": cfg.dataset,
                      "n_train": len(train), "n_test": len(test), "classes": classes, "mean": mean, "std": std,
                      "input_size": list(model_hw), "in_channels": in_ch, "steps_per_epoch": steps_per_epoch,
                      "epochs": cfg.epochs, "start_epoch": run.epochs_done + 1, "load_s": round(load_s, 3),
                      "precision": "bf16" if run.autocast is not contextlib.nullcontext else "fp32",
                      "notes": notes, "resumed": run.resumed, "world_size": dist.world}
    return run


def _input_size(model: torch.nn.Module, in_ch: int, hw: tuple[int, int], native: int,
                notes: list[str]) -> tuple[int, int]:
    """The data's size if the model takes it, else the model's own (LeNet5's Linear(800) wants 32x32)."""
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(2, in_ch, *hw))
        return hw
    except RuntimeError:
        notes.append(f"images resized from {hw[0]}x{hw[1]} to the model's {native}x{native}")
        return (native, native)


def _compiled(model: torch.nn.Module, cfg: TrainConfig, notes: list[str]):
    if not cfg.compile:
        return model
    try:
        return torch.compile(model)
    except Exception as exc:  # noqa: BLE001 - any failure means: run eager
        notes.append(f"torch.compile unavailable ({type(exc).__name__}); running eager")
        return model


def _start(run: _Run) -> Event:
    if run.resumed:
        run.log.write("resume", {"epochs_done": run.epochs_done, "global_step": run.global_step,
                                 "epoch_batch": run.resume_pos.batch if run.resume_pos else 0})
    run.log.write("start", run.start_info)
    run.t0 = time.perf_counter()
    return Event("start", run.start_info)


# ---------------------------------------------------------------------------------------------
# One epoch: seeded permutation, batches cut on the device, augmented, normalised, one step each.

def _train_epoch(run: _Run, epoch: int, stop_event: threading.Event):
    """Yield step events; return the epoch's sums over all ranks, or None when the run stopped or diverged.

    A stop is asked by `stop_event` or by the run's stop file (`cnnviz.runs.request_stop`); under several
    ranks they agree on it at each logged step, so all of them stop at the same step."""
    cfg, device, dist = run.cfg, run.device, run.dist
    stop_file = run.run_dir / layout.STOP_FILE
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + epoch)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + epoch + 500_009)
    log_every = 1 if device.type == "cpu" else 10
    run.model.train()
    t_ep = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    seen = 0
    win_loss, win_n, win_t = torch.zeros((), device=device), 0, time.perf_counter()
    pos, run.resume_pos = (run.resume_pos if run.resume_pos and run.resume_pos.epoch == epoch else None), None
    first = pos.batch if pos else 0
    if pos:  # continue the stopped epoch: its generator, and its sums so far (rank 0 holds all ranks' sums)
        aug_gen.set_state(pos.aug_gen.to(aug_gen.get_state().device))
        s = pos.sums.tolist() if dist.is_main else [0.0] * 5
        loss_sum += s[0]
        correct += s[1]
        seen, win_loss, win_n = int(s[2]), win_loss + s[3], int(s[4])
    seen_before = seen
    stop_agreed = False
    batches = run.train.batches(cfg.batch_size, gen, rank=dist.rank, world=dist.world, start=first)
    for i, (xb, yb) in enumerate(batches, start=first):
        _hold_at_gate(run, stop_event)
        if stop_agreed or (not dist.active and (stop_event.is_set() or stop_file.exists())):
            sums = dist.sum_(torch.stack([loss_sum.double(), correct.double(), torch.tensor(float(seen), device=device,
                             dtype=torch.float64), win_loss.double(), torch.tensor(float(win_n), device=device,
                             dtype=torch.float64)]))
            run.position = EpochPosition(epoch, i, cfg.batch_size, aug_gen.get_state(), sums)
            yield _checkpoint(run, run.epochs_done, partial=True)
            if dist.is_main and layout.stop_reason(run.run_dir) == layout.PRUNE:  # a search's pruner asked
                yield _finish(run, "pruned", message=f"Pruned by the search after epoch {run.epochs_done}.")
                return None
            yield _finish(run, "stopped", message=f"Stopped by the user in epoch {epoch}, step {run.global_step}.")
            return None
        lr = lr_at(cfg.schedule, cfg.lr, run.global_step, run.total_steps)
        for g in run.opt.param_groups:
            g["lr"] = lr
        x, yt = _batch_inputs(run, xb, yb, aug_gen)
        out = _forward(run, x)
        loss = F.cross_entropy(out.float(), yt, label_smoothing=cfg.label_smoothing)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        run.global_step += 1
        bs = yb.shape[0]
        seen += bs
        ld = loss.detach()
        loss_sum += ld * bs
        win_loss += ld * bs
        win_n += bs
        target = yt if yt.ndim == 1 else yt.argmax(1)
        correct += (out.detach().argmax(1) == target).sum()
        if (i + 1) % log_every == 0 or i + 1 == run.steps_per_epoch:
            asked = stop_event.is_set() or (dist.is_main and stop_file.exists())
            win = dist.sum_(torch.stack([win_loss.float(), torch.tensor(float(win_n), device=device),
                                         torch.tensor(float(asked), device=device)])).tolist()
            lval, win_n, stop_agreed = win[0] / win[1], int(win[1]), win[2] > 0
            if not math.isfinite(lval):
                msg = f"The loss became {lval} at step {run.global_step} (epoch {epoch})."
                yield _finish(run, "diverged", message=msg, advice=advice_diverged(cfg),
                              diverged_step=run.global_step)
                return None
            now = time.perf_counter()
            sd = {"step": run.global_step, "epoch": epoch, "loss": lval, "lr": lr,
                  "images_per_s": win_n / max(now - win_t, 1e-9),
                  "progress": run.global_step / max(1, run.total_steps), "elapsed_s": run.elapsed()}
            if i < log_every or (i + 1) % (20 * log_every) == 0:  # for a watcher in another process
                sd["memory"] = memory_usage(device)
            run.log.write("step", sd, sync=False)
            yield Event("step", sd)
            win_loss, win_n, win_t = torch.zeros((), device=device), 0, time.perf_counter()
    sums = dist.sum_(torch.stack([loss_sum.float(), correct.float(), torch.tensor(float(seen), device=device),
                                  torch.tensor(float(seen - seen_before), device=device)]))
    return _EpochStats(sums[0], sums[1], int(sums[2].item()), time.perf_counter() - t_ep, t_ep, int(sums[3].item()))


def _drop_stale_stop(run_dir: Path) -> None:
    """Remove a stop file left by an earlier attempt (written before this process started); a Stop
    pressed while this run loads its data is kept, so it stops at its first step."""
    stop = run_dir / layout.STOP_FILE
    started = process_started_at(os.getpid())
    try:
        stale = started is None or stop.stat().st_mtime < started
    except FileNotFoundError:
        return
    if stale:
        stop.unlink(missing_ok=True)


def _hold_at_gate(run: _Run, stop_event: threading.Event) -> None:
    """Where the run directory holds a `gate` file (a test drives the run step by step), wait before
    training a step beyond the number it holds, until it holds a larger one, is removed, or a stop is
    asked. The check is one stat() per step when there is no gate."""
    gate = run.run_dir / layout.GATE_FILE
    while not run.dist.active and not stop_event.is_set():
        try:
            allowed = int(gate.read_text().strip() or 0)
        except (OSError, ValueError):
            return
        if run.global_step < allowed or (run.run_dir / layout.STOP_FILE).exists():
            return
        time.sleep(0.02)


def _batch_inputs(run: _Run, xb: torch.Tensor, yb: torch.Tensor, aug_gen: torch.Generator):
    """uint8 batch -> the model's normalised float input (augmented on the device when asked) and targets."""
    if run.augmenter is None:
        return run.norm.from_uint8(xb), yb
    xf, yt = run.augmenter(xb, yb, generator=aug_gen)
    if run.model_hw != tuple(xf.shape[-2:]):
        xf = F.interpolate(xf, size=run.model_hw, mode="bilinear", antialias=True)
    if run.augmenter.normalizes:
        return xf.contiguous(memory_format=run.fmt), yt
    return run.norm.from_unit(xf), yt


def _forward(run: _Run, x: torch.Tensor) -> torch.Tensor:
    """The forward pass under autocast; a torch.compile failure falls back to eager once, noted."""
    try:
        with run.autocast():
            return run.forward(x)
    except Exception as exc:  # noqa: BLE001
        if run.forward is run.eager or isinstance(exc, torch.cuda.OutOfMemoryError):
            raise
        run.notes.append(f"torch.compile failed ({type(exc).__name__}); fell back to eager")
        run.log.write("note", {"message": run.notes[-1]})
        run.forward = run.eager
        if run.eval_forward is not run.model:
            run.eval_forward = run.eager
        with run.autocast():
            return run.forward(x)


# ---------------------------------------------------------------------------------------------
# Evaluation, the epoch's record, checkpoints, the end.

def _evaluate(run: _Run) -> tuple[float, float]:
    """Test loss and accuracy over the whole test split (eval mode, no grad), each rank its shard."""
    dist = run.dist
    run.model.eval()
    sums = torch.zeros(2, device=run.device)  # loss, correct
    with torch.no_grad(), run.autocast():
        for xb, yb in run.test.batches(EVAL_BATCH, shuffle=False, drop_tiny=False, rank=dist.rank,
                                       world=dist.world):
            out = run.eval_forward(run.norm.from_uint8(xb))
            sums[0] += F.cross_entropy(out.float(), yb, reduction="sum")
            sums[1] += (out.argmax(1) == yb).sum()
    run.model.train()
    loss_sum, correct = dist.sum_(sums).tolist()
    n = max(1, len(run.test))
    return loss_sum / n, correct / n


def _end_epoch(run: _Run, epoch: int, st: _EpochStats, test_loss: float, test_acc: float) -> Event | None:
    """Record the epoch in run.last_epoch and the log; a 'diverged' done event if its losses are not finite."""
    cfg = run.cfg
    run.epochs_done = epoch
    run.last_epoch = {"epoch": epoch, "train_loss": st.loss_sum.item() / max(1, st.seen),
                      "train_acc": st.correct.item() / max(1, st.seen), "test_loss": test_loss, "test_acc": test_acc,
                      "lr": lr_at(cfg.schedule, cfg.lr, run.global_step, run.total_steps),
                      "images_per_s": st.seen_timed / max(st.train_s, 1e-9),
                      "epoch_s": time.perf_counter() - st.t_start, "elapsed_s": run.elapsed(),
                      "step": run.global_step, "progress": run.global_step / max(1, run.total_steps)}
    run.last_epoch["layers"] = epoch_layer_stats(run.model)  # per-layer norms for the Microscope page
    if not math.isfinite(run.last_epoch["train_loss"]) or not math.isfinite(test_loss):
        return _finish(run, "diverged", message=f"The loss became NaN/inf in epoch {epoch}.",
                       advice=advice_diverged(cfg), diverged_step=run.global_step)
    run.log.write("epoch", run.last_epoch)
    return None


def _checkpoint(run: _Run, epoch_done: int, partial: bool) -> Event:
    """Weights (per epoch, and last) + optimizer/RNG state, written atomically by rank 0; a checkpoint event."""
    data = {"epoch": epoch_done, "step": run.global_step, "partial": partial,
            "path": str(run.run_dir / layout.LAST_WEIGHTS),
            "files": ([] if partial else [layout.epoch_checkpoint_name(epoch_done)]) + [layout.LAST_WEIGHTS]}
    if not run.dist.is_main:
        return Event("checkpoint", data)
    meta = {**run.meta, "epoch": epoch_done, "step": run.global_step, "partial": partial,
            "metrics": run.last_epoch}
    if not partial:
        save_checkpoint(run.model, run.run_dir / layout.epoch_checkpoint_name(epoch_done), meta)
    save_checkpoint(run.model, run.run_dir / layout.LAST_WEIGHTS, meta)
    save_state(run.run_dir, run.opt, {"epochs_done": epoch_done, "global_step": run.global_step,
                                      "elapsed_s": run.elapsed(), "partial": partial}, run.device,
               run.position if partial else None)
    if not partial:
        layout.thin_checkpoints(run.run_dir, MAX_EPOCH_CHECKPOINTS)
    run.log.write("checkpoint", data)
    return Event("checkpoint", data)


def _finish(run: _Run, status: str, **extra: Any) -> Event:
    """The final 'done' line: status, progress, the last epoch's scores."""
    data = {"status": status, "epochs_done": run.epochs_done, "step": run.global_step,
            "elapsed_s": run.elapsed(), "run_dir": str(run.run_dir), **extra}
    if run.last_epoch:
        data.update({k: run.last_epoch[k] for k in ("train_loss", "train_acc", "test_loss", "test_acc")})
    run.log.write("done", data)
    return Event("done", data)
