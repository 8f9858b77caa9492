"""cnnviz's trainer against the tutorial's reference loop, side by side in one run.

    .venv/bin/python bench/train_vs_reference.py [--data ../shared/data/cifar10-jpeg] [--skip-reference]

1. Reference (the tutorial): LeNet5, torchvision ImageFolder + DataLoader (batch 128, shuffle,
   num_workers=0) with per-image PIL transforms Resize(32) / ToTensor / Normalize(the
   tutorial's mean/std), Adam lr 1e-3, CrossEntropyLoss, one epoch, then test accuracy.
2. cnnviz.train.fit: the same model, data, batch size, optimizer and lr, one epoch, with
   channels_last (and once without), data already decoded on the device (the one-time
   decode/cache load is reported separately).
3. Throughput of the trainer through the CLI (subprocess) vs a queued run process polled every
   0.5 s from this process (what the Train page does).

Wall time per epoch = train + test. Prints one table and a JSON line. Timings on a shared
machine are noisy: run it when the machine is quiet and read the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnnviz import models  # noqa: E402
from cnnviz.train import TrainConfig, fit  # noqa: E402

TUTORIAL_MEAN, TUTORIAL_STD = [0.485, 0.456, 0.456], [0.229, 0.224, 0.225]


def reference_epoch(data: Path, seed: int = 0) -> dict:
    """The tutorial's loop, one epoch of training + one pass over the test set."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    torch.manual_seed(seed)
    tf = transforms.Compose([transforms.Resize((32, 32)), transforms.ToTensor(),
                             transforms.Normalize(TUTORIAL_MEAN, TUTORIAL_STD)])
    train_db = datasets.ImageFolder(str(data / "train"), transform=tf)
    test_db = datasets.ImageFolder(str(data / "test"), transform=tf)
    train_loader = DataLoader(train_db, batch_size=128, shuffle=True)
    test_loader = DataLoader(test_db, batch_size=128, shuffle=False)
    model = models.create("lenet5")
    criteon = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    model.train()
    for x, label in train_loader:
        loss = criteon(model(x), label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    t_train = time.perf_counter() - t0
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, label in test_loader:
            correct += (model(x).argmax(1) == label).sum().item()
            total += x.size(0)
    return {"epoch_s": time.perf_counter() - t0, "train_s": t_train, "test_acc": correct / total,
            "images_per_s": len(train_db) / t_train}


def cnnviz_epoch(data: Path, channels_last: bool, seed: int = 0) -> dict:
    """cnnviz.train.fit, same hyper-parameters, one epoch; returns the epoch event plus load time."""
    cfg = TrainConfig(model="lenet5", dataset=f"folder:{data}", batch_size=128, lr=1e-3, optimizer="adam",
                      epochs=1, device="cpu", seed=seed, channels_last=channels_last)
    t0 = time.perf_counter()
    start = epoch = None
    for ev in fit(cfg, run_dir=Path(os.environ["CNNVIZ_RUNS"]) / f"bench-cl{int(channels_last)}-{time.time_ns()}"):
        if ev.kind == "start":
            start = ev.data
        elif ev.kind == "epoch":
            epoch = ev.data
        elif ev.kind == "error":
            raise RuntimeError(ev.data["message"])
    return {"epoch_s": epoch["epoch_s"], "test_acc": epoch["test_acc"], "images_per_s": epoch["images_per_s"],
            "load_s": start["load_s"], "wall_s": time.perf_counter() - t0}


def cli_throughput(data: Path) -> float:
    """images/s of one epoch through `python -m cnnviz train` (subprocess, no UI)."""
    p = subprocess.run([sys.executable, "-m", "cnnviz", "train", "--model", "lenet5", "--dataset", f"folder:{data}",
                        "--epochs", "1", "--batch-size", "128", "--lr", "1e-3", "--optimizer", "adam", "--device",
                        "cpu", "--seed", "0", "--channels-last", "--no-progress"],
                       cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])["images_per_s"]


def polled_run_throughput(data: Path) -> float:
    """images/s of one epoch in a queued run process while this process reads its snapshot every 0.5 s
    (what the Train page's live view does)."""
    from cnnviz import runs
    from cnnviz.runs import queue

    cfg = TrainConfig(model="lenet5", dataset=f"folder:{data}", batch_size=128, lr=1e-3, optimizer="adam",
                      epochs=1, device="cpu", seed=0, channels_last=True)
    run_dir = queue.submit(cfg)
    polls = 0
    snap = runs.snapshot(run_dir)
    while snap.alive:
        polls += 1
        time.sleep(0.5)
        snap = runs.snapshot(run_dir)
    if snap.status != "finished":
        raise RuntimeError(f"run ended {snap.status}: {snap.error or snap.reason}")
    print(f"  (run polled {polls} times)")
    return snap.last_epoch["images_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10-jpeg")
    ap.add_argument("--skip-reference", action="store_true")
    args = ap.parse_args()
    data = args.data.resolve()
    if not (data / "train").is_dir():
        raise SystemExit(f"no ImageFolder tree at {data} (train/<class>/*.jpg, test/<class>/*.jpg)")
    os.environ.setdefault("CNNVIZ_RUNS", str(Path("/tmp") / f"cnnviz-bench-runs-{os.getpid()}"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, data {data}")
    res: dict = {}
    print("warm-up: decode/cache the dataset through cnnviz.data ...", flush=True)
    t = time.perf_counter()
    from cnnviz.data import load_dataset

    load_dataset(f"folder:{data}", "train"), load_dataset(f"folder:{data}", "test")
    res["first_load_s"] = time.perf_counter() - t
    print(f"  {res['first_load_s']:.1f} s (a later run reads the decoded cache)")
    print("cnnviz trainer, channels_last ...", flush=True)
    res["cnnviz_cl"] = cnnviz_epoch(data, True)
    print(f"  {res['cnnviz_cl']}")
    print("cnnviz trainer, contiguous ...", flush=True)
    res["cnnviz"] = cnnviz_epoch(data, False)
    print(f"  {res['cnnviz']}")
    if not args.skip_reference:
        print("reference loop (DataLoader + per-image PIL transforms) ...", flush=True)
        res["reference"] = reference_epoch(data)
        print(f"  {res['reference']}")
    print("throughput: CLI vs a polled queued run process ...", flush=True)
    res["cli_images_per_s"] = cli_throughput(data)
    res["polled_images_per_s"] = polled_run_throughput(data)
    print()
    print(f"{'':34s} {'epoch (train+test) s':>21s} {'test acc':>9s} {'train img/s':>12s}")
    rows = [("reference (tutorial loop)", res.get("reference")), ("cnnviz, channels_last", res["cnnviz_cl"]),
            ("cnnviz, contiguous", res["cnnviz"])]
    for name, r in rows:
        if r:
            print(f"{name:34s} {r['epoch_s']:21.1f} {r['test_acc']:9.3f} {r['images_per_s']:12.0f}")
    if res.get("reference"):
        ref = res["reference"]["epoch_s"]
        res["speedup_cl"] = ref / res["cnnviz_cl"]["epoch_s"]
        res["speedup"] = ref / res["cnnviz"]["epoch_s"]
        print(f"speed-up per epoch: {res['speedup_cl']:.2f}x (channels_last), {res['speedup']:.2f}x (contiguous);"
              f" cnnviz's data load {res['cnnviz_cl']['load_s']:.1f} s is paid once per run, not per epoch")
    ratio = res["polled_images_per_s"] / res["cli_images_per_s"]
    res["polled_vs_cli"] = ratio
    print(f"throughput: CLI {res['cli_images_per_s']:.0f} img/s, polled run {res['polled_images_per_s']:.0f} img/s"
          f" -> {100 * (ratio - 1):+.1f}%")
    print("NOTE: 2 CPU cores shared with other users; figures are noisy.")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
