"""Search vs grid on digits with LeNet5: 12 TPE trials with median pruning against a 12-point grid over the
same ranges. Reports the best test accuracy each reached and the epochs each trained (and wall time).

    python bench/search.py [--epochs 6] [--trials 12] [--limit-train N] [--runs DIR]

Grid: lr in {1e-4, 1e-3, 1e-2, 1e-1} x batch size in {32, 128, 512}, every run to the last epoch.
Search: lr in 1e-4:1e-1 (log), batch size in {32, 128, 512}; TPE (seed 0), median pruner, one trial at a
time. Both go through the same queue and run processes (CNNVIZ_MAX_RUNS=1), on the CPU, runs' seed 0.
The runs stay in DIR (default: a new folder under /tmp) for the Runs page: CNNVIZ_RUNS=DIR streamlit run app.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LRS = [1e-4, 1e-3, 1e-2, 1e-1]
BATCHES = [32, 128, 512]


def _score(root: Path, sweep_id: str) -> dict:
    from cnnviz.runs import list_runs

    rs = [r for r in list_runs(root) if r.sweep.get("sweep_id") == sweep_id]
    finished = [r for r in rs if str(r.status) == "finished" and r.test_acc is not None]
    best = max(finished, key=lambda r: r.test_acc, default=None)
    return {"runs": len(rs), "epochs_trained": sum(r.epochs_done for r in rs),
            "statuses": {s: sum(str(r.status) == s for r in rs) for s in sorted({str(r.status) for r in rs})},
            "best_test_acc": None if best is None else best.test_acc,
            "best_settings": None if best is None else best.sweep.get("params")}


def run_grid(root: Path, base: dict) -> dict:
    from cnnviz.runs import list_runs, sweeps

    t0 = time.perf_counter()
    sid, dirs = sweeps.submit_grid({"lr": LRS, "batch_size": BATCHES}, base=base, root=root)
    while True:
        rs = [r for r in list_runs(root) if r.sweep.get("sweep_id") == sid]
        if rs and not any(r.status.live for r in rs):
            break
        time.sleep(2.0)
    return {"sweep_id": sid, "wall_s": round(time.perf_counter() - t0, 1), **_score(root, sid)}


def run_search(root: Path, base: dict, trials: int) -> dict:
    from cnnviz.runs import search

    t0 = time.perf_counter()
    sid = search.create({"lr": f"{LRS[0]}:{LRS[-1]}:log", "batch_size": BATCHES}, base=base, sampler="tpe",
                        trials=trials, parallel=1, pruner="median", seed=0, root=root)
    while not search.advance(sid, root).complete:
        time.sleep(2.0)
    st = search.state(sid, root)
    out = {"sweep_id": sid, "wall_s": round(time.perf_counter() - t0, 1), **_score(root, sid),
           "study": {s: st.count(s) for s in ("complete", "pruned", "fail")},
           "pruned_after_epoch": {t.number: t.pruned_at for t in st.trials if t.state == "pruned"}}
    return out


def main() -> None:
    from cnnviz.search_plots import params_text

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--limit-train", type=int, default=None, help="train on this many digits (default all 4,500)")
    ap.add_argument("--runs", type=Path, default=None, help="runs folder (default: a new one under /tmp)")
    args = ap.parse_args()
    root = args.runs or Path(tempfile.mkdtemp(prefix="cnnviz-bench-search-"))
    root.mkdir(parents=True, exist_ok=True)
    os.environ["CNNVIZ_RUNS"] = str(root)
    os.environ.setdefault("CNNVIZ_MAX_RUNS", "1")
    base = dict(model="lenet5", dataset="digits", epochs=args.epochs, device="cpu", seed=0,
                limit_train=args.limit_train)
    print(f"runs folder: {root}", file=sys.stderr)
    grid = run_grid(root, base)
    print(f"grid: {json.dumps(grid)}", file=sys.stderr)
    srch = run_search(root, base, args.trials)
    print(f"search: {json.dumps(srch)}", file=sys.stderr)
    print(f"\n| {args.trials}-trial TPE + median pruning vs 12-point grid | best test accuracy | epochs trained "
          "| wall time |\n| --- | --- | --- | --- |")
    for name, r in (("grid (12 runs, every one to the end)", grid), (f"search ({args.trials} trials)", srch)):
        best = r["best_test_acc"]
        acc = "-" if best is None else f"{100 * best:.1f}% ({params_text(r['best_settings'])})"
        print(f"| {name} | {acc} | {r['epochs_trained']} | {r['wall_s']:.0f} s |")
    print(json.dumps({"epochs": args.epochs, "limit_train": args.limit_train, "grid": grid, "search": srch}))


if __name__ == "__main__":
    main()
