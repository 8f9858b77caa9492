"""The server's share of the Train page's polling cost, without a browser.

    .venv/bin/python bench/page_polling_server.py [--period 5] [--epochs 15] [--pairs 2] [--switch-interval S]

In one run, alternately: A = `cnnviz.train.fit` in a subprocess (the CLI's path); B = the same config
started from pages/training.py under Streamlit's AppTest in this process, whose whole page is rerun
every --period seconds while the job trains in a thread of this process (a full rerun: more Python
work than the live view's fragment). Prints each pair's images/s and the ratio B/A.

`cnnviz.train.jobs.start_job` lowers the GIL switch interval to 0.5 ms; --switch-interval 0.005 puts
Python's default back after the job has started, to see what the page's reruns cost without it.
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
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--period", type=float, default=5.0, help="seconds between page reruns")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--switch-interval", type=float, default=None,
                    help="set the GIL switch interval to this after the job has started (seconds)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cnnviz-bench-runs-"))
    os.environ["CNNVIZ_RUNS"] = str(root)

    from streamlit.testing.v1 import AppTest


    from page_polling import _ips, run_plain

    cfg = dict(model="lenet5", dataset="shapes", epochs=args.epochs, batch_size=128, device="cpu",
               limit_train=None, limit_test=1000)
    # the same config as the Train form's widget values (its keys; 0 = all images)
    form = {f"train_{'batch' if k == 'batch_size' else k}": (v or 0) if k.startswith("limit") else v
            for k, v in cfg.items()}
    run_plain({**cfg, "epochs": 1, "limit_train": 512}, root)  # warm the dataset cache
    ratios = []
    for _ in range(args.pairs):
        plain = run_plain(cfg, root)
        at = AppTest.from_file(str(ROOT / "pages" / "training.py"), default_timeout=60)
        at.run()
        for k, v in form.items():
            at.session_state[k] = v
        before = {j.run_id for j in jobs.list_jobs()}
        at.button(key="train_start").click().run()
        job = next(j for j in jobs.list_jobs() if j.run_id not in before)
        if args.switch_interval:
            sys.setswitchinterval(args.switch_interval)
        reruns = 0
        while job.is_alive():
            time.sleep(args.period)
            at.run()
            reruns += 1
        page = _ips(Path(job.run_dir))
        ratios.append(page / plain)
        print(f"plain {plain:,.0f} img/s | page rerun every {args.period:g} s ({reruns} reruns) {page:,.0f} img/s "
              f"| ratio {page / plain:.3f}", flush=True)
    print(json.dumps({"period_s": args.period, "switch_interval_s": sys.getswitchinterval(),
                      "ratio_page_over_plain": round(sum(ratios) / len(ratios), 3), "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
