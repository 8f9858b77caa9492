"""Command line: `python -m cnnviz train ...` and `python -m cnnviz export RUN_DIR --script out.py`.

`train` shows a tqdm progress bar on stderr, a line per epoch, and prints a JSON summary as
the LAST line of stdout. Ctrl-C (SIGINT) or SIGTERM stops at the next step with a checkpoint
(status "stopped"); `--resume RUN_DIR` continues it. `--tensorboard LOGDIR` also writes the run's
TensorBoard events while it trains. Exit code: 0 finished/stopped, 1 diverged, 2 error.

`export` writes a standalone script (`--script`), the weights (`--checkpoint`), an ONNX bundle
(`--bundle OUT_DIR`: model.onnx, model.safetensors, labels.json, preprocess.json, predict.py,
README.md; RUN_DIR may also be a .safetensors checkpoint) and TensorBoard events
(`--tensorboard LOGDIR`). Bad input gets one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

_FIELDS = {  # flag -> (TrainConfig field, type)
    "model": str, "dataset": str, "augment": str, "optimizer": str, "lr": float, "momentum": float,
    "schedule": str, "weight_decay": float, "label_smoothing": float, "batch_size": int, "epochs": int,
    "seed": int, "device": str, "precision": str, "limit_train": int, "limit_test": int,
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cnnviz", description="cnnviz command line")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model (writes a run directory)")
    t.add_argument("--preset", help="start from a named config (e.g. speedrun, tutorial)")
    for name, typ in _FIELDS.items():
        t.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None)
    for flag in ("nesterov", "channels_last", "compile"):
        t.add_argument("--" + flag.replace("_", "-"), dest=flag, action=argparse.BooleanOptionalAction, default=None)
    t.add_argument("--run-dir", type=Path, default=None, help="the run directory (default: $CNNVIZ_RUNS/<id>)")
    t.add_argument("--resume", type=Path, default=None, help="continue the run in this directory")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--tensorboard", type=Path, default=None, metavar="LOGDIR",
                   help="also write TensorBoard events to LOGDIR/<run id>/ while training")
    e = sub.add_parser("export", help="export a run: a standalone script, its weights, an ONNX bundle, "
                                      "TensorBoard events")
    e.add_argument("run_dir", type=Path, help="a run directory (or, with --bundle only, a .safetensors checkpoint)")
    e.add_argument("--script", type=Path, default=None, help="write a standalone .py script here")
    e.add_argument("--checkpoint", type=Path, default=None,
                   help="copy the weights here (.safetensors) with a .json of config and final metrics")
    e.add_argument("--epoch", type=int, default=None, help="with --checkpoint/--bundle: that epoch's weights")
    e.add_argument("--bundle", type=Path, default=None, metavar="OUT_DIR",
                   help="write an ONNX bundle (model.onnx, predict.py, ...) into this folder")
    e.add_argument("--force", action="store_true", help="with --bundle: replace OUT_DIR if it is not empty")
    e.add_argument("--tensorboard", type=Path, default=None, metavar="LOGDIR",
                   help="write the run's TensorBoard events to LOGDIR/<run id>/ (replacing earlier ones)")
    return p


def _augment_arg(value: str) -> str:
    """--augment takes a preset name, JSON text, or a .json file: files are read here."""
    p = Path(value)
    if value.endswith(".json") and p.is_file():
        return p.read_text()
    return value


def _config_from_args(args: argparse.Namespace):
    from .train import TrainConfig, preset_config

    given = {k: getattr(args, k) for k in list(_FIELDS) + ["nesterov", "channels_last", "compile"]
             if getattr(args, k) is not None}
    if "augment" in given:
        given["augment"] = _augment_arg(given["augment"])
    if args.resume is not None:
        cfg_path = args.resume / "config.json"
        if not cfg_path.is_file():
            raise ValueError(f"{args.resume} is not a run directory (no config.json).")
        base = json.loads(cfg_path.read_text())
        return TrainConfig.from_dict({**base, **given})
    if args.preset:
        return preset_config(args.preset, **given)
    return TrainConfig.from_dict(given)


def cmd_train(args: argparse.Namespace) -> int:
    """Run `fit` in the foreground with a progress bar; the last stdout line is a JSON summary."""
    try:
        from tqdm import tqdm
    except ImportError:  # requirements.txt has it; without it: no bar, epoch lines only
        tqdm = None
    from .train import fit

    try:
        cfg = _config_from_args(args)
        cfg.validate()
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(json.dumps({"status": "error", "message": str(exc)}))
        return 2
    stop = threading.Event()

    def _on_signal(signum, frame):  # noqa: ARG001
        stop.set()
        print("\nstopping at the next step (a checkpoint is saved)...", file=sys.stderr)

    live = None
    if args.tensorboard is not None:
        try:
            live = _live_tensorboard(args.tensorboard, cfg.device)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            print(json.dumps({"status": "error", "message": str(exc)}))
            return 2
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    bar = None
    summary: dict = {"status": "error", "message": "no result"}
    epochs: list[dict] = []
    for ev in fit(cfg, run_dir=args.run_dir if args.resume is None else None, stop_event=stop, resume=args.resume):
        d = ev.data
        if live is not None:
            live.on_event(ev)
        if ev.kind == "start":
            print(f"run {d['run_id']} on {d['device']}: {d['model']} ({d['params']:,} parameters), "
                  f"{d['n_train']:,} train / {d['n_test']:,} test images, data ready in {d['load_s']:.1f} s",
                  file=sys.stderr)
            for note in d.get("notes", []):
                print(f"note: {note}", file=sys.stderr)
            total = d["steps_per_epoch"] * d["epochs"]
            bar = None if tqdm is None else tqdm(total=total, initial=d["steps_per_epoch"] * (d["start_epoch"] - 1), file=sys.stderr,
                       unit="step", disable=args.no_progress, dynamic_ncols=True, mininterval=0.5)
        elif ev.kind == "step" and bar is not None:
            bar.update(d["step"] - bar.n)
            bar.set_postfix(epoch=d["epoch"], loss=f"{d['loss']:.3f}", img_s=f"{d['images_per_s']:.0f}",
                            refresh=False)
        elif ev.kind == "epoch":
            epochs.append(d)
            line = (f"epoch {d['epoch']}: train loss {d['train_loss']:.4f} acc {d['train_acc']:.3f} | "
                    f"test loss {d['test_loss']:.4f} acc {d['test_acc']:.3f} | {d['images_per_s']:.0f} img/s | "
                    f"{d['elapsed_s']:.1f} s")
            (bar.write(line, file=sys.stderr) if bar is not None else print(line, file=sys.stderr))
        elif ev.kind in ("done", "error"):
            summary = {k: v for k, v in d.items() if k != "traceback"}
            summary.setdefault("status", "error")
            if ev.kind == "error":
                print(f"error: {d.get('message')}\n{d.get('advice', '')}", file=sys.stderr)
                if d.get("traceback"):
                    print(d["traceback"], file=sys.stderr)
            elif d.get("status") == "diverged":
                print(f"diverged: {d.get('message')}\n{d.get('advice', '')}", file=sys.stderr)
    if bar is not None:
        bar.close()
    if live is not None:
        live.close()
        for note in live.notes:
            print(f"note: {note}", file=sys.stderr)
        if live.result is not None:
            summary["tensorboard"] = str(live.result.path)
    if epochs:
        summary.setdefault("test_acc", epochs[-1]["test_acc"])
        summary["images_per_s"] = epochs[-1]["images_per_s"]
        summary["epochs"] = [{k: e[k] for k in ("epoch", "train_loss", "test_acc", "images_per_s", "elapsed_s")}
                             for e in epochs]
    summary["config"] = cfg.to_dict()
    print(json.dumps(summary), flush=True)
    return {"finished": 0, "stopped": 0, "diverged": 1}.get(summary.get("status"), 2)


def _live_tensorboard(logdir: Path, device: str):
    """A LiveWriter for `train --tensorboard LOGDIR`; ValueError (one line) before training starts."""
    from .train.tensorboard import LiveWriter, require_writer

    if logdir.exists() and not logdir.is_dir():
        raise ValueError(f"--tensorboard {logdir}: exists and is not a folder.")
    require_writer()
    return LiveWriter(logdir, device=device)


def cmd_export(args: argparse.Namespace) -> int:
    """Export a run: script, checkpoint, ONNX bundle and/or TensorBoard events."""
    if not any(x is not None for x in (args.script, args.checkpoint, args.bundle, args.tensorboard)):
        print("error: give --script OUT.py, --checkpoint OUT.safetensors, --bundle OUT_DIR and/or "
              "--tensorboard LOGDIR", file=sys.stderr)
        return 2
    is_file = args.run_dir.is_file()
    if is_file and (args.script or args.checkpoint or args.tensorboard or args.epoch is not None):
        print(f"error: {args.run_dir} is a file: only --bundle takes a checkpoint file; --script, --checkpoint, "
              "--tensorboard and --epoch need a run directory", file=sys.stderr)
        return 2
    out: dict = {}
    try:
        if args.script is not None:
            from .train.export import export_script

            out["script"] = str(export_script(args.run_dir, args.script))
        if args.checkpoint is not None:
            from .train.export import export_checkpoint

            w, js = export_checkpoint(args.run_dir, args.checkpoint, args.epoch)
            out.update(checkpoint=str(w), info=str(js))
        if args.bundle is not None:
            from .train import bundle

            if is_file:
                res = bundle.bundle_checkpoint(args.run_dir, args.bundle, force=args.force)
            else:
                res = bundle.bundle_run(args.run_dir, args.bundle, epoch=args.epoch, force=args.force)
            for note in res.notes:
                print(f"note: {note}", file=sys.stderr)
            print(f"bundle: {res.path} (ONNX opset {res.opset}; onnxruntime vs PyTorch on {res.n_checked} images: "
                  f"largest logit difference {res.max_diff:.3g})", file=sys.stderr)
            out.update(res.to_dict())
        if args.tensorboard is not None:
            from .train.tensorboard import write_run

            tb = write_run(args.run_dir, args.tensorboard)
            for note in tb.notes:
                print(f"note: {note}", file=sys.stderr)
            out.update(tb.to_dict())
    except (ValueError, OSError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, OSError) and exc.strerror and exc.filename:
            msg = f"{exc.strerror}: {exc.filename}"
        print(f"error: {msg}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cnnviz`."""
    args = _parser().parse_args(argv)
    if args.command == "train":
        return cmd_train(args)
    return cmd_export(args)
