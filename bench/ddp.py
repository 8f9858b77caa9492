"""1 process against N ranks (torchrun, DistributedDataParallel), side by side in one run.

    .venv/bin/python bench/ddp.py [--nproc 2] [--device cpu|cuda] [--limit-train 8192] [--epochs 2]

LeNet5 on the built-in `shapes` set, no augmentation, the same seed, a global batch of 128
(N x 128/N against 1 x 128): each run through the CLI (`python -m cnnviz train`, `--nproc N` for
the ranks). Prints images/s of each (the last epoch's, and wall time), and the per-step loss
agreement (largest relative difference over all logged steps: only float rounding should
separate them). On 2 CPU cores no speed-up is expected (gloo, OMP_NUM_THREADS=1 per rank against
one process using both cores); on a machine with GPUs, run it with --device cuda (`--nproc 1` on
one GPU: one DDP rank over NCCL against the plain process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnnviz import runs  # noqa: E402


def train(run_dir: Path, args: argparse.Namespace, nproc: int) -> dict:
    cmd = [sys.executable, "-m", "cnnviz", "train", "--model", "lenet5", "--dataset", "shapes", "--augment", "none",
           "--batch-size", "128", "--seed", "0", "--epochs", str(args.epochs), "--device", args.device,
           "--limit-train", str(args.limit_train), "--limit-test", "1024", "--no-progress", "--run-dir", str(run_dir)]
    if nproc:
        cmd += ["--nproc", str(nproc)]
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "CNNVIZ_RUNS": str(run_dir.parent)})
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"run failed ({nproc} process(es)):\n{out.stderr[-3000:]}")
    run = runs.read_run(run_dir, all_steps=True)
    return {"wall_s": wall, "images_per_s": run.last_epoch["images_per_s"], "test_acc": run.last_epoch["test_acc"],
            "steps": [(x["step"], x["loss"]) for x in run.steps]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--limit-train", type=int, default=8192)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = train(Path(tmp) / "one", args, 0)
        many = train(Path(tmp) / "many", args, args.nproc)
    pairs = list(zip(one["steps"], many["steps"]))
    assert [a for (a, _), _ in pairs] == [b for _, (b, _) in pairs], "the runs logged different steps"
    worst = max(abs(x - y) / abs(x) for (_, x), (_, y) in pairs)
    print(f"{'':<22}{'images/s':>10}{'wall s':>9}{'test acc':>10}")
    for name, r in ((f"1 process", one), (f"{args.nproc} ranks (torchrun)", many)):
        print(f"{name:<22}{r['images_per_s']:>10.0f}{r['wall_s']:>9.1f}{r['test_acc']:>10.3f}")
    print(f"per-step loss, {len(pairs)} steps: largest relative difference {worst:.2e}")
    print(json.dumps({"device": args.device, "nproc": args.nproc, "one_images_per_s": one["images_per_s"],
                      "ranks_images_per_s": many["images_per_s"], "one_wall_s": one["wall_s"],
                      "ranks_wall_s": many["wall_s"], "max_rel_step_loss_diff": worst, "steps": len(pairs)}))


if __name__ == "__main__":
    main()
