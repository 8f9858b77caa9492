"""The Train page's live path on the lent device: a run started as the page starts one (a queued
process), watched for a few seconds through the snapshot the page reads (`cnnviz.runs.snapshot`), then stopped.

    python bench/gpu_live.py [--device cuda] [--seconds 20] [--out live.json]

Prints one line per snapshot (status, device, memory line, images/s, progress) and a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnnviz.train import TrainConfig  # noqa: E402
from cnnviz import runs  # noqa: E402
from cnnviz.runs import queue  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--model", default="resnet_small")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="cnnviz-live-"))
    os.environ["CNNVIZ_RUNS"] = str(root)
    cfg = TrainConfig(model=args.model, dataset="shapes", epochs=200, batch_size=256, device=args.device,
                      limit_train=8192, limit_test=1024)
    run_dir = queue.submit(cfg, root)
    seen, end = [], time.monotonic() + 120
    while time.monotonic() < end:  # wait for training to start (data load, CUDA init)
        snap = runs.snapshot(run_dir)
        if snap.steps or snap.status not in ("queued", "starting", "running"):
            break
        time.sleep(0.5)
    t_end = time.monotonic() + args.seconds
    while time.monotonic() < t_end and snap.status == "running":
        time.sleep(2.0)
        snap = runs.snapshot(run_dir)
        last = snap.last_step
        row = {"status": str(snap.status), "device": snap.device, "memory": snap.memory,
               "images_per_s": last.get("images_per_s"), "progress": snap.progress, "steps": snap.steps_logged}
        seen.append(row)
        print(json.dumps(row), flush=True)
    runs.request_stop(run_dir)
    end = time.monotonic() + 60
    while time.monotonic() < end and runs.snapshot(run_dir).status in ("running", "starting"):
        time.sleep(0.5)
    final = runs.snapshot(run_dir)
    out = {"run_dir": str(run_dir), "final_status": str(final.status), "snapshots": seen,
           "log_tail": runs.layout.log_tail(run_dir, 5) if final.status != "stopped" else ""}
    print(json.dumps({k: v for k, v in out.items() if k != "snapshots"}))
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
