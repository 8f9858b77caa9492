"""TensorBoard event files for cnnviz runs: one folder per run under a log directory.

    write_run(run_dir, logdir)        # from the run's metrics.jsonl and checkpoint (export)
    LiveWriter(logdir).on_event(ev)   # fed fit()'s events while a run trains (the CLI's --tensorboard)

What a run folder `LOGDIR/<run id>/` holds:
- scalars per epoch (x axis: the epoch): `loss/train`, `loss/test`, `accuracy/train`, `accuracy/test`,
  `lr`, `images_per_s`; per logged step (x axis: the global step): `step/loss`;
- the hyper-parameters (the run's config) as the HParams plugin's session summary, written into the
  same event file (not `add_hparams`, which makes a sub-folder that TensorBoard shows as another run);
  the HParams view takes the final metrics from the scalars above;
- images: `evaluation/confusion_matrix` (the final weights on the run's test images) and
  `train/augmented_samples` (32 training images through the run's augmentation, seeded).

`write_run` replaces the folder's event files with one new file (written elsewhere, moved in, then
the older files deleted), which starts with a purge marker: exporting a run twice leaves each point
once, also for a TensorBoard that is already watching the folder.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..runs import RunSnapshot, read_run

EPOCH_SCALARS = {  # tag -> metrics.jsonl key of an "epoch" line
    "loss/train": "train_loss", "loss/test": "test_loss",
    "accuracy/train": "train_acc", "accuracy/test": "test_acc",
    "lr": "lr", "images_per_s": "images_per_s",
}
STEP_LOSS = "step/loss"
CONFUSION_TAG = "evaluation/confusion_matrix"
SAMPLES_TAG = "train/augmented_samples"
N_SAMPLES = 32
_EVENTS = "tfevents"


@dataclass
class TensorBoardResult:
    """Where a run's events went and what they hold."""

    path: Path
    epochs: int
    steps: int
    images: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"tensorboard": str(self.path), "epochs": self.epochs, "steps": self.steps,
                "images": self.images, "notes": self.notes}


def require_writer():
    """torch's SummaryWriter class; ValueError saying what to install when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch's writer needs the tensorboard package
        raise ValueError(f"TensorBoard logs need the 'tensorboard' package ({exc}); "
                         "pip install tensorboard (it is in requirements.txt).") from None
    return SummaryWriter


def _writer(folder: Path, purge: bool):
    """A SummaryWriter into `folder`; `purge` starts its file with a purge-everything marker."""
    return require_writer()(str(folder), purge_step=0 if purge else None, flush_secs=10)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def hparam_dict(config: dict, start: dict | None = None) -> dict[str, Any]:
    """The run's settings as HParams values (numbers and strings only)."""
    start = start or {}
    aug = str(config.get("augment", "none") or "none")
    if len(aug) > 40 or "{" in aug:
        aug = "custom pipeline"
    out: dict[str, Any] = {
        "model": str(config.get("model", "")), "dataset": str(config.get("dataset", "")), "augment": aug,
        "optimizer": str(config.get("optimizer", "")), "lr": float(config.get("lr") or 0.0),
        "momentum": float(config.get("momentum") or 0.0), "nesterov": str(bool(config.get("nesterov"))).lower(),
        "schedule": str(config.get("schedule", "")), "weight_decay": float(config.get("weight_decay") or 0.0),
        "label_smoothing": float(config.get("label_smoothing") or 0.0),
        "batch_size": int(config.get("batch_size") or 0), "epochs": int(config.get("epochs") or 0),
        "seed": int(config.get("seed") or 0), "precision": str(start.get("precision") or config.get("precision", "")),
        "channels_last": str(bool(config.get("channels_last"))).lower(),
        "device": str(start.get("device_type") or config.get("device", "")),
    }
    if start.get("n_train") is not None:
        out["n_train"] = int(start["n_train"])
    if start.get("n_test") is not None:
        out["n_test"] = int(start["n_test"])
    return out


def _write_hparams(writer, config: dict, start: dict, final: dict, status: str | None) -> None:
    """The HParams session summary (start, and end when the run has ended) in `writer`'s own file."""
    from tensorboard.plugins.hparams import api_pb2
    from torch.utils.tensorboard.summary import hparams

    metrics = {tag: float(final[key]) for tag, key in EPOCH_SCALARS.items()
               if tag.startswith(("loss/", "accuracy/")) and _finite(final.get(key))}
    _exp, ssi, _sei = hparams(hparam_dict(config, start), metrics)
    # Only the session summaries: an experiment summary per run would make TensorBoard pick one run's
    # as the whole experiment's; without one it builds the experiment from every run's session.
    writer.file_writer.add_summary(ssi, 0)
    ends = {"finished": api_pb2.STATUS_SUCCESS, "stopped": api_pb2.STATUS_UNKNOWN,
            "pruned": api_pb2.STATUS_UNKNOWN, "interrupted": api_pb2.STATUS_UNKNOWN, "diverged": api_pb2.STATUS_FAILURE, "error": api_pb2.STATUS_FAILURE}
    if status in ends:
        writer.file_writer.add_summary(_session_end(ends[status]), 0)


def _session_end(status: int):
    """A session-end summary with `status` (torch's helper always says success)."""
    from tensorboard.plugins.hparams import metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata

    info = SessionEndInfo(status=status)
    content = HParamsPluginData(session_end_info=info, version=metadata.PLUGIN_DATA_VERSION)
    smd = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME,
                                                                 content=content.SerializeToString()))
    return Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=smd)])


def _scalars(writer, run: RunSnapshot) -> None:
    for s in run.steps:
        if _finite(s.get("loss")):
            writer.add_scalar(STEP_LOSS, float(s["loss"]), int(s.get("step", 0)), walltime=s.get("t"))
    for e in run.epochs:
        write_epoch(writer, e, e.get("t"))


def write_epoch(writer, epoch: dict, walltime: float | None = None) -> None:
    """The epoch scalars of one metrics.jsonl "epoch" line (or epoch Event data)."""
    ep = int(epoch.get("epoch", 0))
    for tag, key in EPOCH_SCALARS.items():
        if _finite(epoch.get(key)):
            writer.add_scalar(tag, float(epoch[key]), ep, walltime=walltime)


# ----------------------------------------------------------------------------- images

def confusion_image(cm: np.ndarray, classes: list[str], title: str = ""):
    """The confusion matrix as an RGB PIL image: rows true, columns predicted, colour = share of the row."""
    from PIL import Image, ImageDraw, ImageFont

    from ..images.display import _VIRIDIS, _ramp

    k = len(classes)
    cell = max(8, min(44, 520 // max(k, 1)))
    font = ImageFont.load_default(size=max(9, min(13, cell // 3)))
    names = [c if len(c) <= 14 else c[:13] + "…" for c in classes]
    draw0 = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = 8 + max((int(draw0.textlength(n, font=font)) for n in names), default=0)
    head_h = label_w  # column names, written vertically
    top = 24
    w, h = label_w + k * cell + 8, top + head_h + k * cell + 8
    im = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(im)
    draw.text((6, 4), title or "rows: true class, columns: predicted, colour: share of the row", fill="black",
              font=font)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, np.maximum(rows, 1), dtype=np.float64)
    colours = _ramp(share, _VIRIDIS)
    y0 = top + head_h
    for t in range(k):
        draw.text((label_w - 4, y0 + t * cell + cell / 2), names[t], fill="black", font=font, anchor="rm")
        for p in range(k):
            x, y = label_w + p * cell, y0 + t * cell
            rgb = tuple(int(c) for c in colours[t, p])
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=rgb, outline="white")
            if cell >= 22:
                dark = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 140
                draw.text((x + cell / 2, y + cell / 2), str(int(cm[t, p])), fill="white" if dark else "black",
                          font=font, anchor="mm")
    col = Image.new("RGB", (head_h, k * cell), "white")
    cdraw = ImageDraw.Draw(col)
    for p in range(k):
        cdraw.text((4, p * cell + cell / 2), names[p], fill="black", font=font, anchor="lm")
    im.paste(col.rotate(90, expand=True), (label_w, top))
    return im


def _tile_grid(tiles: list, labels: list[str], columns: int = 8, title: str = ""):
    """Tiles (PIL, same size) with a label under each, in a grid, under a title line."""
    from PIL import Image, ImageDraw, ImageFont

    tw, th = tiles[0].size
    font = ImageFont.load_default(size=11)
    lab_h = 14
    rows = (len(tiles) + columns - 1) // columns
    cols = min(columns, len(tiles))
    top = 20 if title else 0
    im = Image.new("RGB", (cols * (tw + 4) + 4, top + rows * (th + lab_h + 4) + 4), "white")
    draw = ImageDraw.Draw(im)
    if title:
        draw.text((6, 4), title, fill="black", font=ImageFont.load_default(size=12))
    for i, (tile, lab) in enumerate(zip(tiles, labels)):
        r, c = divmod(i, columns)
        x, y = 4 + c * (tw + 4), top + 4 + r * (th + lab_h + 4)
        im.paste(tile.convert("RGB"), (x, y))
        text = lab if draw.textlength(lab, font=font) <= tw else lab[: max(1, tw // 7)] + "…"
        draw.text((x + tw / 2, y + th + 1), text, fill="black", font=font, anchor="mt")
    return im


def augmented_samples(config: dict, n: int = N_SAMPLES):
    """(grid image, caption) of `n` training images of the run as its augmentation shows them to the
    model in epoch 1 (seeded, CPU). ValueError/OSError when the dataset can't be loaded."""
    import torch
    from PIL import Image

    from ..data import load_dataset
    from ..images.display import tensor_to_pil
    from .device_data import subsample

    ds = load_dataset(str(config.get("dataset", "shapes")), "train")
    seed = int(config.get("seed") or 0)
    x, y = subsample(ds.images, ds.labels, config.get("limit_train"), seed)
    g = torch.Generator().manual_seed(seed * 1_000_003 + 1)
    idx = torch.randperm(len(y), generator=g)[:n]
    xb, yb = x.index_select(0, idx), y.index_select(0, idx)
    aug = str(config.get("augment", "none") or "none")
    if aug.strip() in ("", "none"):
        pics = [tensor_to_pil(im.float() / 255.0) for im in xb]
        labels = [ds.classes[int(c)] for c in yb]
        caption = f"{len(pics)} training images as the model sees them (no augmentation)"
    else:
        from ..augment.batch import BatchAugmenter
        from ..augment.pipeline import resolve, to_display

        pipe = resolve(aug)
        out, yt = BatchAugmenter(pipe, "cpu", len(ds.classes))(
            xb, yb, generator=torch.Generator().manual_seed(seed * 1_000_003 + 1 + 500_009))
        pics = [to_display(pipe, im) for im in out]
        hard = yt if yt.ndim == 1 else yt.argmax(1)
        labels = [ds.classes[int(c)] for c in hard]
        name = aug if len(aug) <= 40 and "{" not in aug else "a custom pipeline"
        caption = f"{len(pics)} training images through the run's augmentation ({name}), epoch 1, seeded"
    side = max(pics[0].size)
    scale = max(1, 96 // side)
    tiles = [p.resize((p.width * scale, p.height * scale), Image.Resampling.NEAREST) for p in pics]
    return _tile_grid(tiles, labels, title=caption), caption


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _add_image(writer, tag: str, im, step: int, walltime: float | None = None) -> None:
    writer.add_image(tag, np.asarray(im.convert("RGB")), step, walltime=walltime, dataformats="HWC")


def _images(writer, run: RunSnapshot, result: TensorBoardResult, device: str) -> None:
    from .evaluate import confusion_matrix, evaluate_run

    step = run.epochs_done or 0
    when = float(run.epochs[-1].get("t")) if run.epochs and run.epochs[-1].get("t") else None
    try:
        ev = evaluate_run(run, device=device)
        cm = confusion_matrix(ev.labels, ev.preds, len(ev.classes))
        title = (f"epoch {step}: {100 * ev.accuracy:.1f}% of {len(ev.labels):,} test images right "
                 "(rows true, columns predicted)")
        _add_image(writer, CONFUSION_TAG, confusion_image(cm, ev.classes, title), step, when)
        result.images.append(CONFUSION_TAG)
    except (ValueError, OSError, RuntimeError) as exc:
        result.notes.append(f"no confusion matrix: {_first_line(exc)}")
    try:
        grid, _ = augmented_samples(run.config)
        _add_image(writer, SAMPLES_TAG, grid, 1, float(run.start.get("t")) if run.start.get("t") else None)
        result.images.append(SAMPLES_TAG)
    except (ValueError, OSError, RuntimeError) as exc:
        result.notes.append(f"no training samples: {_first_line(exc)}")


# ----------------------------------------------------------------------------- a run's folder

def event_files(folder: Path) -> list[Path]:
    """The TensorBoard event files directly in `folder`, in name order."""
    return sorted(p for p in Path(folder).glob(f"*{_EVENTS}*") if p.is_file() and not p.name.startswith("."))


def write_run(run_dir: Path, logdir: Path, *, images: bool = True, device: str = "auto",
              status: str | None = None) -> TensorBoardResult:
    """Write run `run_dir` as `logdir/<run id>/`, replacing whatever event files were there.

    `status` overrides the run's status read from disk (the live writer knows its run is running)."""
    run = read_run(Path(run_dir), all_steps=True)
    if not run.config:
        raise ValueError(f"{run_dir} is not a training run (no config.json).")
    logdir = Path(logdir)
    if logdir.exists() and not logdir.is_dir():
        raise ValueError(f"{logdir} exists and is not a folder.")
    folder = logdir / run.run_id
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} exists and is not a folder.")
    result = TensorBoardResult(folder, len(run.epochs), len(run.steps))
    final = run.epochs[-1] if run.epochs else {}
    with tempfile.TemporaryDirectory(prefix="cnnviz-tb-") as tmp:
        writer = _writer(Path(tmp), purge=True)
        try:
            _write_hparams(writer, run.config, run.start, final, status or run.status)
            _scalars(writer, run)
            if images and (run.last_checkpoint is not None or run.checkpoints):
                _images(writer, run, result, device)
            elif images:
                result.notes.append("no checkpoint yet: no confusion matrix or samples")
        finally:
            writer.close()
        made = event_files(Path(tmp))
        if len(made) != 1:
            raise RuntimeError(f"expected one event file, found {len(made)}")
        folder.mkdir(parents=True, exist_ok=True)
        old = event_files(folder)
        final_path = folder / made[0].name
        staging = folder / f".{made[0].name}.tmp"  # no reader looks at dot files
        shutil.copyfile(made[0], staging)
        with open(staging, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(staging, final_path)
    for p in old:
        if p != final_path:
            p.unlink(missing_ok=True)
    return result


class LiveWriter:
    """Write a run's TensorBoard events while it trains: feed it every Event of `fit()`.

    On "start" the run's folder is (re)written from its metrics.jsonl (a resumed run keeps its
    earlier points once), then steps and epochs are appended as they come; on "done"/"error" the
    folder is rewritten once more by `write_run`, with the confusion matrix and the samples, so the
    result is what `python -m cnnviz export RUN --tensorboard LOGDIR` writes.
    """

    def __init__(self, logdir: Path, device: str = "auto") -> None:
        self.logdir = Path(logdir)
        self.device = device
        self.writer = None
        self.run_dir: Path | None = None
        self.result: TensorBoardResult | None = None
        self.notes: list[str] = []

    def on_event(self, ev) -> None:
        kind, d = ev.kind, ev.data
        try:
            if kind == "start":
                self.run_dir = Path(d["run_dir"])
                write_run(self.run_dir, self.logdir, images=False, status="running")
                self.writer = _writer(self.logdir / self.run_dir.name, purge=False)
            elif kind == "step" and self.writer is not None and _finite(d.get("loss")):
                self.writer.add_scalar(STEP_LOSS, float(d["loss"]), int(d["step"]), walltime=time.time())
            elif kind == "epoch" and self.writer is not None:
                write_epoch(self.writer, d, time.time())
                self.writer.flush()
            elif kind in ("done", "error"):
                self.close()
                if self.run_dir is not None:
                    self.result = write_run(self.run_dir, self.logdir, device=self.device)
        except (ValueError, OSError, RuntimeError) as exc:  # TensorBoard must never stop a run
            self.notes.append(f"TensorBoard: {_first_line(exc)}")
            self.close()
            self.writer = None

    def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
            self.writer = None
