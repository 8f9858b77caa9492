"""GPU check (one prepared run, < 5 min): LeNet5, the ResNets and the speedrun preset on CIFAR-10.

    bash bench/gpu_check.sh                     # on the GPU machine (installs requirements if needed)
    python bench/gpu_check.py --data PATH --out results.json [--device cuda] [--quick]

Every model trains through cnnviz.train.fit with bf16 autocast (precision auto on CUDA) and
channels_last; prints images/s and test accuracy per epoch, then the speedrun's time to 92%.
`--quick` is the CPU-sized equivalent (shapes, a few hundred images, 1 epoch each) that the
tests run, so the script itself is exercised without a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnnviz.train import TrainConfig, fit, preset_config  # noqa: E402

BUDGET_S = 270  # stop starting new runs after this (the whole check must stay under 5 minutes)


def plan(dataset: str, device: str, quick: bool) -> list[tuple[str, TrainConfig]]:
    """(label, config) for each run of the check."""
    common = dict(dataset=dataset, device=device, channels_last=True, precision="auto")
    runs = [
        ("lenet5 (tutorial: adam 1e-3, batch 128)",
         TrainConfig(model="lenet5", epochs=2, batch_size=128, lr=1e-3, **common)),
        ("resnet_small (adam, onecycle, cifar-standard)",
         TrainConfig(model="resnet_small", epochs=3, batch_size=256, lr=4e-3, schedule="onecycle",
                     augment="cifar-standard", **common)),
        ("resnet18_cifar (sgd nesterov, onecycle, cifar-standard)",
         TrainConfig(model="resnet18_cifar", epochs=3, batch_size=512, optimizer="sgd", lr=0.2, nesterov=True,
                     weight_decay=5e-4, label_smoothing=0.1, schedule="onecycle", augment="cifar-standard",
                     **common)),
        ("speedrun preset (airbench net)", preset_config("speedrun", dataset=dataset, device=device)),
    ]
    if quick:
        small = dict(epochs=1, limit_train=64, limit_test=32, batch_size=32)
        runs = [(label, TrainConfig.from_dict({**cfg.to_dict(), **small})) for label, cfg in runs]
    return runs


def run_one(label: str, cfg: TrainConfig, runs_dir: Path) -> dict:
    """Train one config; print a line per epoch; return its figures."""
    print(f"\n== {label}: {cfg.model}, {cfg.epochs} epochs, batch {cfg.batch_size}", flush=True)
    out: dict = {"label": label, "config": cfg.to_dict(), "epochs": []}
    t0 = time.perf_counter()
    for ev in fit(cfg, run_dir=runs_dir / f"{cfg.model}-{time.time_ns()}"):
        d = ev.data
        if ev.kind == "start":
            out.update(device=d["device"], precision=d["precision"], load_s=d["load_s"], params=d["params"])
            print(f"   {d['device']}, precision {d['precision']}, data ready in {d['load_s']:.1f} s", flush=True)
        elif ev.kind == "epoch":
            out["epochs"].append({k: d[k] for k in ("epoch", "train_loss", "test_acc", "images_per_s",
                                                    "epoch_s", "elapsed_s")})
            print(f"   epoch {d['epoch']:2d}: {d['images_per_s']:9.0f} img/s  test acc {d['test_acc']:.4f}  "
                  f"train loss {d['train_loss']:.3f}  elapsed {d['elapsed_s']:.1f} s", flush=True)
        elif ev.kind in ("done", "error"):
            out["status"] = d.get("status", "error")
            if ev.kind == "error" or out["status"] != "finished":
                out["message"] = d.get("message")
                print(f"   {out['status']}: {d.get('message')} {d.get('advice', '')}", flush=True)
    out["wall_s"] = time.perf_counter() - t0
    hit = next((e for e in out["epochs"] if e["test_acc"] >= 0.92), None)
    out["time_to_92_s"] = hit["elapsed_s"] if hit else None
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="", help="ImageFolder tree of CIFAR-10 (train/, test/)")
    ap.add_argument("--dataset", default=None, help="a cnnviz dataset spec instead of --data (e.g. shapes)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    ap.add_argument("--runs-dir", type=Path, default=Path("/tmp/cnnviz-gpu-check-runs"))
    ap.add_argument("--quick", action="store_true", help="CPU-sized smoke version (tests)")
    ap.add_argument("--only", default="", help="comma-separated model names to run")
    args = ap.parse_args(argv)
    if args.dataset:
        dataset = args.dataset
    elif args.data and (Path(args.data) / "train").is_dir():
        dataset = f"folder:{Path(args.data).resolve()}"
    else:
        print(f"WARNING: no CIFAR-10 ImageFolder at {args.data!r}; measuring on the built-in 'shapes' set "
              "(throughput only; the accuracy targets are for CIFAR-10)", flush=True)
        dataset = "shapes"
    import torch

    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device here (use --device cpu --quick for the CPU-sized version)")
        torch.backends.cudnn.benchmark = True
    print(f"torch {torch.__version__}; dataset {dataset}; device {args.device}", flush=True)
    results = {"dataset": dataset, "device": args.device, "runs": []}
    t_all = time.perf_counter()
    for label, cfg in plan(dataset, args.device, args.quick):
        if args.only and cfg.model not in args.only.split(","):
            continue
        if time.perf_counter() - t_all > BUDGET_S:
            print(f"\n(skipping {label}: time budget used)")
            results["runs"].append({"label": label, "status": "skipped"})
            continue
        results["runs"].append(run_one(label, cfg, args.runs_dir))
    print("\n== summary")
    for r in results["runs"]:
        if r.get("epochs"):
            last = r["epochs"][-1]
            best = max(e["images_per_s"] for e in r["epochs"])
            t92 = f", 92% at {r['time_to_92_s']:.1f} s" if r.get("time_to_92_s") else ""
            print(f"{r['label']:58s} acc {last['test_acc']:.4f}  {best:9.0f} img/s  "
                  f"train+eval {last['elapsed_s']:.1f} s{t92}")
        else:
            print(f"{r['label']:58s} {r.get('status')} {r.get('message', '')}")
    results["total_s"] = time.perf_counter() - t_all
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
