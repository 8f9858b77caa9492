"""What the Ray executor costs over local processes: python bench/ray_overhead.py [--runs 4] [--train-images 256] [--epochs 1] [--json OUT]

Starts a two-node Ray cluster on this machine (tests/raycluster.py: a head and a worker, one CPU
each, 127.0.0.1) and measures, for the same small runs (shapes, lenet5, --train-images training
images, 256 by default, --epochs epochs, 1 by default, device cpu, batch 32):

  start overhead   time from submit (queue.submit) to the run's first step line, Ray vs a local process
                   (one run on an idle executor; Ray's includes the job's runtime_env set-up);
  sweep wall time  a grid of --runs runs from submit until every run has its final line, on 2 CPUs:
                   Ray (1 CPU a run, 2 nodes) vs local (CNNVIZ_MAX_RUNS=2).

Each run dispatches the next queued one as it ends, as in production. Nothing is asserted; the
machine may be shared, so take the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cnnviz.runs import queue, summary, sweeps  # noqa: E402
from cnnviz.train import TrainConfig  # noqa: E402
from tests.raycluster import RayCluster  # noqa: E402

TINY = dict(dataset="shapes", model="lenet5", limit_train=256, limit_test=64, epochs=1, device="cpu", batch_size=32)


def _first_step(run_dir: Path) -> float | None:
    try:
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            d = json.loads(line)
            if d.get("kind") == "step":
                return float(d["t"])
    except (OSError, ValueError):
        pass
    return None


def _wait(cond, timeout: float = 600.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError("a run did not get there in time")


def start_overhead(root: Path) -> float:
    t0 = time.time()
    d = queue.submit(TrainConfig(**TINY), root)
    t1 = _wait(lambda: _first_step(d))
    _wait(lambda: not summary(d).status.live)
    return t1 - t0


def sweep_wall(root: Path, n: int) -> float:
    t0 = time.time()
    _, dirs = sweeps.submit_grid({"seed": ",".join(str(i) for i in range(n))}, base=TrainConfig(**TINY).to_dict(),
                                 root=root)
    _wait(lambda: all(str(summary(d).status) == "finished" for d in dirs))
    return time.time() - t0


def measure(kind: str, n: int, env: dict) -> dict:
    os.environ.update(env)
    if kind == "local":
        os.environ.pop("CNNVIZ_EXECUTOR", None)
    root = Path(tempfile.mkdtemp(prefix=f"cnnviz-bench-{kind}-")) / "runs"
    root.mkdir()
    os.environ["CNNVIZ_RUNS"] = str(root)
    os.environ["CNNVIZ_MAX_RUNS"] = "1"
    start = start_overhead(root)
    os.environ["CNNVIZ_MAX_RUNS"] = "2"
    if kind == "ray":
        os.environ.pop("CNNVIZ_MAX_RUNS")  # the cluster's 2 CPUs decide
    return {"start_to_first_step_s": start, "sweep_wall_s": sweep_wall(root, n)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--train-images", type=int, default=256,
                   help="training images per run (256: runs of a few seconds, all overhead; 4096: ~15-30 s runs)")
    p.add_argument("--epochs", type=int, default=1)
    a = p.parse_args()
    TINY["limit_train"], TINY["epochs"] = a.train_images, a.epochs
    out = {"local": measure("local", a.runs, {})}
    with RayCluster(cpus=(1, 1)) as c:
        out["ray"] = measure("ray", a.runs, {"CNNVIZ_EXECUTOR": "ray", "RAY_ADDRESS": c.address})
    out["start_overhead_s"] = out["ray"]["start_to_first_step_s"] - out["local"]["start_to_first_step_s"]
    out["sweep_ratio"] = out["ray"]["sweep_wall_s"] / out["local"]["sweep_wall_s"]
    for k in ("local", "ray"):
        print(f"{k:>5}: submit -> first step {out[k]['start_to_first_step_s']:.1f} s; {a.runs}-run sweep on 2 CPUs "
              f"{out[k]['sweep_wall_s']:.1f} s")
    print(f"Ray: +{out['start_overhead_s']:.1f} s a run to start; sweep {out['sweep_ratio']:.2f}x local")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
