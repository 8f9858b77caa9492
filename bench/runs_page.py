"""Does a page's cost grow with the runs' history? The Runs and Train pages, warm, in a real browser:
a runs folder with 1 small run vs one with 50 small runs plus a run of 625,000 logged steps (~107 MB
of metrics.jsonl, what a 500-epoch batch-16 CPU run logs).

    .venv/bin/python bench/runs_page.py [--steps 625000] [--small 50] [--reloads 3]

For each folder a fresh `streamlit run app.py` is started; each page is opened once (cold: the long
run's metrics are read once, its summary written), then reloaded --reloads times (warm). Prints the
median warm reload time per page and folder, their ratio, and the server's resident memory (VmRSS)
after the reloads. Nothing is asserted: the figures go in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def small_run(root: Path) -> Path:
    """One real finished run (LeNet5 on shapes, 2 epochs), trained here."""
    from cnnviz.runs.layout import new_run_dir
    from cnnviz.train import TrainConfig, fit

    cfg = TrainConfig(model="lenet5", dataset="shapes", epochs=2, batch_size=32, device="cpu", limit_train=256,
                      limit_test=64)
    d = new_run_dir(cfg.model, cfg.dataset, root)
    for _ in fit(cfg, run_dir=d):
        pass
    return d


def long_run(template: Path, root: Path, steps: int) -> Path:
    """A copy of `template` whose metrics.jsonl holds `steps` step lines over 500 epochs (as a CPU run
    logging every step writes them), ended with a done line; the newest run of the folder."""
    d = root / f"29991231-235959-lenet5-shapes-{steps}-steps"
    shutil.copytree(template, d)
    (d / "summary.json").unlink(missing_ok=True)
    per_epoch = max(1, steps // 500)
    t0 = time.time()
    with open(d / "metrics.jsonl", "w") as f:
        f.write(json.dumps({"kind": "start", "t": t0, "device": "CPU", "device_type": "cpu"}) + "\n")
        for s in range(1, steps + 1):
            ep = (s - 1) // per_epoch + 1
            f.write(json.dumps({"kind": "step", "t": round(t0 + s * 0.01, 3), "step": s, "epoch": ep,
                                "loss": 2.3 / (1 + s / 5e4), "lr": 1e-3, "images_per_s": 1600.0,
                                "progress": s / steps, "elapsed_s": s * 0.01}) + "\n")
            if s % per_epoch == 0:
                f.write(json.dumps({"kind": "epoch", "t": t0 + s * 0.01, "epoch": ep, "train_loss": 1.0,
                                    "train_acc": 0.5, "test_loss": 1.1, "test_acc": 0.45, "lr": 1e-3,
                                    "images_per_s": 1600.0, "epoch_s": 10.0, "elapsed_s": s * 0.01,
                                    "step": s, "progress": s / steps}) + "\n")
        f.write(json.dumps({"kind": "done", "t": t0 + steps * 0.01, "status": "finished", "epochs_done": 500,
                            "step": steps}) + "\n")
    return d


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(root: Path, reloads: int) -> dict:
    from playwright.sync_api import sync_playwright

    from tests.browser.server import CHROMIUM, CHROMIUM_ARGS, free_port, wait_idle

    port = free_port()
    env = {**os.environ, "CNNVIZ_RUNS": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    out: dict = {}
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.3)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for name in ("runs", "train"):
                t = time.perf_counter()
                page.goto(f"{url}/{name}")
                wait_idle(page, timeout_ms=600_000, settle_ms=300)
                cold = time.perf_counter() - t
                warm = []
                for _ in range(reloads):
                    t = time.perf_counter()
                    page.reload()
                    wait_idle(page, timeout_ms=600_000, settle_ms=300)
                    warm.append(time.perf_counter() - t - 0.3)  # less the settle wait
                out[name] = {"cold_s": round(cold, 2), "warm_s": round(statistics.median(warm), 2)}
            browser.close()
        out["server_rss_mb"] = round(rss_mb(proc.pid))
    finally:
        proc.terminate()
        proc.wait(30)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=625_000)
    ap.add_argument("--small", type=int, default=50)
    ap.add_argument("--reloads", type=int, default=3)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="cnnviz-bench-runs-page-"))
    one, many = base / "one", base / "many"
    os.environ["CNNVIZ_RUNS"] = str(one)
    template = small_run(one)
    many.mkdir()
    for i in range(args.small):
        shutil.copytree(template, many / f"20261201-{i:06d}-lenet5-shapes-copy")
    big = long_run(template, many, args.steps)
    mb = (big / "metrics.jsonl").stat().st_size / 2**20
    print(f"folders ready: 1 run | {args.small} runs + one of {args.steps:,} steps ({mb:.0f} MB)", flush=True)
    a = measure(one, args.reloads)
    print("1 run:", json.dumps(a), flush=True)
    b = measure(many, args.reloads)
    print(f"{args.small} runs + long run:", json.dumps(b), flush=True)
    res = {"one": a, "many": b, "metrics_mb": round(mb), "steps": args.steps,
           "ratio_runs_page": round(b["runs"]["warm_s"] / a["runs"]["warm_s"], 2),
           "ratio_train_page": round(b["train"]["warm_s"] / a["train"]["warm_s"], 2), "cpus": os.cpu_count()}
    print(json.dumps(res))
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
