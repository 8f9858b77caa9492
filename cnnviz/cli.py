"""Command line: `python -m cnnviz train|sweep|runs|stop|pause|unpause|export ...`.

`train` shows a tqdm progress bar on stderr, a line per epoch, and prints a JSON summary as
the LAST line of stdout. Ctrl-C (SIGINT) or SIGTERM stops at the next step with a checkpoint
(status "stopped"); `--resume RUN_DIR` continues it; `--nproc N` trains with N processes under
torchrun; `--queue` queues the run instead (it starts in the background when a slot is free) and
prints its directory; `--tensorboard LOGDIR` also writes the run's TensorBoard events while it
trains. Exit code: 0 finished/stopped/queued, 1 diverged, 2 error.
`sweep` queues a grid of runs (comma-separated values), or with `--search tpe|random` an Optuna search
(ranges low:high[:log] and choices; see cnnviz/cli_search.py), `runs` lists runs (`--json`), `stop`
stops a running run or cancels a queued one, `pause`/`unpause` hold and release the queue. All of
them honour $CNNVIZ_RUNS. The command line acts as an admin (it has the shell anyway): it may stop,
cancel or export any run; `--owner` (train --queue, sweep) says whose runs they are.

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

def _settings():
    """The TrainConfig fields the CLI sets, as (name, type, help): the flags are built from them."""
    from .train.config import TrainConfig

    out = []
    for f in TrainConfig.settings():
        if not f.metadata.get("cli", True):
            continue
        kind = str(f.type)
        typ = bool if kind == "bool" else int if kind.startswith("int") else float if kind == "float" else str
        choices = f.metadata.get("choices")
        help_ = f.metadata.get("help", "") + (f" ({', '.join(choices)})" if choices else "")
        out.append((f.name, typ, help_))
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cnnviz", description="cnnviz command line")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model (writes a run directory)")
    t.add_argument("--preset", help="start from a named config (e.g. speedrun, tutorial)")
    for name, typ, help_ in _settings():
        if typ is bool:
            t.add_argument("--" + name.replace("_", "-"), dest=name, action=argparse.BooleanOptionalAction,
                           default=None, help=help_)
        else:
            t.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None, help=help_)
    t.add_argument("--config", type=Path, default=None, help="a TrainConfig JSON file (flags override it)")
    t.add_argument("--queue", action="store_true", help="queue the run and return (it starts when a slot is free)")
    t.add_argument("--owner", default=None, help="with --queue: the user the run belongs to (their e-mail, once "
                                                 "they signed in, or their user id u-...)")
    t.add_argument("--run-dir", type=Path, default=None, help="the run directory (default: $CNNVIZ_RUNS/<id>)")
    t.add_argument("--resume", type=Path, default=None, help="continue the run in this directory")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--nproc", type=int, default=None,
                   help="train with N processes under torchrun (DistributedDataParallel): one per GPU, "
                        "or gloo on the CPU; --batch-size is the global batch")
    t.add_argument("--tensorboard", type=Path, default=None, metavar="LOGDIR",
                   help="also write TensorBoard events to LOGDIR/<run id>/ while training")
    sw = sub.add_parser("sweep", help="queue a grid of runs: every combination of comma-separated values")
    sw.add_argument("--preset", help="start every run from a named config")
    for name, typ, help_ in _settings():
        sw.add_argument("--" + name.replace("_", "-"), dest=name, type=str, default=None,
                        help=f"{help_}: one value or several, comma-separated ({typ.__name__})")
    sw.add_argument("--nproc", type=int, default=None, help="processes per run (torchrun)")
    sw.add_argument("--owner", default=None, help="the user the sweep's runs belong to (e-mail or user id)")
    _search_flags(sw)
    r = sub.add_parser("runs", help="list the runs: id, status, epochs done, test accuracy, queue position")
    r.add_argument("--json", action="store_true", help="one JSON list of objects")
    s = sub.add_parser("stop", help="stop a running run (checkpoint saved) or cancel a queued one")
    s.add_argument("run_dir", type=Path)
    sub.add_parser("pause", help="pause the queue: runs that train go on, nothing new starts")
    sub.add_parser("unpause", help="let the paused queue start runs again")
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
    from .serve import add_arguments as serve_arguments  # the serve subcommand lives in cnnviz/serve.py

    serve_arguments(sub.add_parser("serve", help="run N app processes behind HAProxy on one address"))
    return p


def _augment_arg(value: str) -> str:
    """--augment takes a preset name, JSON text, or a .json file: files are read here."""
    p = Path(value)
    if value.endswith(".json") and p.is_file():
        return p.read_text()
    return value


def _config_from_args(args: argparse.Namespace):
    from .train import TrainConfig, preset_config

    given = {name: getattr(args, name) for name, _, _ in _settings() if getattr(args, name) is not None}
    if "augment" in given:
        given["augment"] = _augment_arg(given["augment"])
    if getattr(args, "config", None) is not None:
        try:
            base = json.loads(Path(args.config).read_text())
        except OSError as exc:
            raise ValueError(f"Cannot read the config file {args.config}: {exc.strerror or exc}.") from None
        if not isinstance(base, dict):
            raise ValueError(f"{args.config} is not a JSON object of TrainConfig fields.")
        return TrainConfig.from_dict({**base, **given})
    if args.resume is not None:
        cfg_path = args.resume / "config.json"
        if not cfg_path.is_file():
            raise ValueError(f"{args.resume} is not a run directory (no config.json).")
        base = json.loads(cfg_path.read_text())
        return TrainConfig.from_dict({**base, **given})
    if args.preset:
        return preset_config(args.preset, **given)
    return TrainConfig.from_dict(given)


def _nproc_problem(n: int, cfg) -> str | None:
    """Why `n` processes can't train `cfg` here, in one line, or None."""
    import os

    from .device import pick_device

    if n < 1:
        return f"--nproc must be at least 1, not {n}."
    device = pick_device(cfg.device)
    if device.type == "cuda":
        import torch

        have = torch.cuda.device_count()
        if n > have:
            return f"--nproc {n} asks for more processes than the {have} CUDA device(s) here (one process per GPU)."
    elif device.type == "mps":
        return "--nproc needs CUDA GPUs or the CPU; Apple MPS trains in one process."
    else:
        cores = os.cpu_count() or 1
        if n > cores:
            return f"--nproc {n} is more processes than the {cores} CPU cores here."
    if cfg.batch_size % n:
        return f"--batch-size {cfg.batch_size} does not split evenly over {n} processes: use a multiple of {n}."
    return None


def _launch_torchrun(args: argparse.Namespace, cfg, argv: list[str]) -> int:
    """Run this same command under `torchrun --standalone --nproc-per-node N` (argv list, no shell)."""
    import subprocess

    from .runs.layout import new_run_dir

    if args.resume is not None:
        rest = list(argv)
    else:
        run_dir = args.run_dir or new_run_dir(cfg.model, cfg.dataset)
        run_dir.mkdir(parents=True, exist_ok=True)
        rest = _without(argv, "--run-dir") + ["--run-dir", str(run_dir)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.nproc),
           "-m", "cnnviz", *_without(rest, "--nproc")]
    return subprocess.run(cmd, check=False).returncode


def _without(argv: list[str], flag: str) -> list[str]:
    """argv less `flag VALUE` / `flag=VALUE`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            out.append(a)
    return out


def cmd_train(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """Run `fit` in the foreground with a progress bar; the last stdout line is a JSON summary.

    With --nproc N > 1 (and not already under torchrun) it relaunches itself under torchrun; each
    rank then runs this function, and rank 0 alone prints."""
    import os

    try:
        from tqdm import tqdm
    except ImportError:  # requirements.txt has it; without it: no bar, epoch lines only
        tqdm = None
    from .train import fit
    from .train.distributed import launched_by_torchrun

    try:
        cfg = _config_from_args(args)
        cfg.validate()
        problem = _nproc_problem(args.nproc, cfg) if args.nproc is not None else None
        if problem:
            raise ValueError(problem)
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(json.dumps({"status": "error", "message": str(exc)}))
        return 2
    if args.queue:
        return _queue_run(args, cfg)
    if os.environ.get("CNNVIZ_NODE_CHECK"):  # a Ray job: does this node see the shared run folder?
        from .runs.ray_executor import check_node

        problem = check_node(args.run_dir or args.resume)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    if args.nproc is not None and not launched_by_torchrun():  # --nproc 1 too: one DDP rank (NCCL on CUDA)
        try:
            return _launch_torchrun(args, cfg, argv if argv is not None else sys.argv[1:])
        finally:
            _dispatch_quietly()
    if int(os.environ.get("RANK", "0")) != 0:  # other ranks train quietly; rank 0 reports
        status = "error"
        for ev in fit(cfg, run_dir=args.run_dir if args.resume is None else None, resume=args.resume):
            if ev.kind in ("done", "error"):
                status = ev.data.get("status", "error")
        return {"finished": 0, "stopped": 0, "pruned": 0, "diverged": 1}.get(status, 2)
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
    run_dir = None
    summary: dict = {"status": "error", "message": "no result"}
    epochs: list[dict] = []
    for ev in fit(cfg, run_dir=args.run_dir if args.resume is None else None, stop_event=stop, resume=args.resume):
        d = ev.data
        if live is not None:
            live.on_event(ev)
        if ev.kind == "start":
            run_dir = Path(d["run_dir"])
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
            _advance_search_quietly(run_dir)  # a search's trial: report the epoch (its pruner may stop it)
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
    _advance_search_quietly(run_dir)  # a search's trial: tell its end, ask the next trial
    if not launched_by_torchrun():  # this run's slot is free: start the next queued run
        _dispatch_quietly()
    return {"finished": 0, "stopped": 0, "pruned": 0, "diverged": 1}.get(summary.get("status"), 2)


def _advance_search_quietly(run_dir: Path | None) -> None:
    """If `run_dir` is a search's trial, advance its search; a problem is one line on stderr."""
    if run_dir is None:
        return
    from .cli_search import advance_for_run_quietly

    advance_for_run_quietly(run_dir)


def _dispatch_quietly() -> None:
    """Start the next queued run(s) of $CNNVIZ_RUNS, if any; a problem is one line on stderr."""
    from .runs import queue

    try:
        queue.dispatch()
    except (OSError, ValueError) as exc:
        print(f"note: the queue was not dispatched: {exc}", file=sys.stderr)


def _owner(text: str | None) -> str | None:
    """--owner as a user id (an e-mail is looked up among the users who signed in); ValueError if unknown."""
    from .runs import runs_root
    from .users import resolve

    return resolve(text, runs_root()) if text else None


def cmd_pause(args: argparse.Namespace) -> int:
    """Pause or unpause the queue (the CLI acts as an admin)."""
    from .runs import queue

    if args.command == "pause":
        queue.pause()
        print("queue paused: runs that train go on; nothing new starts until `python -m cnnviz unpause`")
    else:
        queue.unpause()
        print("queue running again")
    return 0


def _queue_run(args: argparse.Namespace, cfg) -> int:
    from .runs import queue

    if args.run_dir is not None:
        print("error: --queue names its own run directory under $CNNVIZ_RUNS; drop --run-dir", file=sys.stderr)
        return 2
    try:
        run_dir = queue.submit(cfg, resume_run_dir=args.resume, nproc=args.nproc, owner=_owner(args.owner))
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pos = queue.position(run_dir)
    print(f"{'queued at position ' + str(pos) if pos else 'started'}: {run_dir}", file=sys.stderr)
    print(str(run_dir), flush=True)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Queue every combination of the comma-separated values; print the sweep id and run directories.
    With --search (or --continue) an Optuna search instead: see `cmd_search`."""
    from .runs import sweeps

    if args.search or args.continue_id:
        return cmd_search(args)
    from .cli_search import grid_problem

    if grid_problem(args):
        print(f"error: {grid_problem(args)}", file=sys.stderr)
        return 2
    grid = {name: getattr(args, name) for name, _, _ in _settings() if getattr(args, name) is not None}
    try:
        sweep_id, dirs = sweeps.submit_grid(grid, preset=args.preset, nproc=args.nproc, owner=_owner(args.owner))
    except (ValueError, TypeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"sweep_id": sweep_id, "run_dirs": [str(d) for d in dirs]}), flush=True)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """Each run: id, status, epochs done, last test accuracy, queue position."""
    from .runs import list_runs, runs_root

    snaps = list_runs()
    if args.json:
        print(json.dumps([s.to_json() for s in snaps]))
        return 0
    if not snaps:
        print(f"no runs under {runs_root()}")
        return 0
    for s in snaps:
        acc = "-" if s.test_acc is None else f"{100 * s.test_acc:.1f}%"
        where = f" (queue #{s.queue_position})" if s.queue_position else ""
        print(f"{s.run_id:<60} {str(s.status) + where:<22} {s.epochs_done}/{s.config.get('epochs')} epochs  "
              f"test {acc}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop a running run (it checkpoints and ends, status stopped) or cancel a queued one."""
    from .runs import CONFIG_FILE, Status, queue, request_stop, summary

    run_dir = args.run_dir
    if not (run_dir / CONFIG_FILE).is_file():
        print(f"error: {run_dir} is not a run directory (no config.json)", file=sys.stderr)
        return 2
    status = summary(run_dir).status
    if status == Status.QUEUED:
        queue.cancel(run_dir)
        print(f"cancelled (it was queued): {run_dir}")
        return 0
    if not status.training:
        print(f"error: run {run_dir.name} is not training (status {status})", file=sys.stderr)
        return 2
    request_stop(run_dir)
    print(f"stopping at the next step (a checkpoint is saved): {run_dir}")
    return 0


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


def _search_flags(sw: argparse.ArgumentParser) -> None:
    from .cli_search import add_flags

    add_flags(sw)


def cmd_search(args: argparse.Namespace) -> int:
    from .cli_search import cmd_search as run

    return run(args, {name: getattr(args, name) for name, _, _ in _settings() if getattr(args, name) is not None})


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m cnnviz`."""
    args = _parser().parse_args(argv)
    if args.command == "train":
        return cmd_train(args, argv)
    if args.command == "serve":
        from .serve import main as serve_main

        return serve_main(args)
    return {"sweep": cmd_sweep, "runs": cmd_runs, "stop": cmd_stop, "export": cmd_export, "pause": cmd_pause,
            "unpause": cmd_pause}[args.command](args)
