"""Does watching a run on the Train page slow it down? Throughput with and without the page polling.

    .venv/bin/python bench/page_polling.py [--model lenet5] [--epochs 2] [--batch-size 128] [--limit-train N]
                                           [--pairs 2] [--refresh 1,10,0]

In one run, in rounds (A, B..., C, A, B..., C): A = `cnnviz.train.fit` in a subprocess with nobody
watching (the CLI's path); B = the same config started from the Train page in headless chromium
(a queued run process), whose live view reads the run directory until it ends, once per --refresh
period (default the page's own: status every 1 s, charts every 3 s; 0 = Paused: the page stays
open, the view redraws once, when the run has ended). Prints each run's mean training images/s
(from metrics.jsonl epoch lines), the ratios B/A, and the Chromium processes' CPU (from /proc, as a
share of one core) while each B run trained. Needs chromium + playwright.
C = started from the page, then the tab is closed: the run trains in its process with nobody
watching. C/A near 1 with B/A lower means the cost is the browser drawing the live view on the
same cores (headless Chromium renders in software here), not the server.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procstat import descendants_cpu_s  # noqa: E402


def _ips(run_dir: Path) -> float:
    eps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
           if line.strip() and json.loads(line).get("kind") == "epoch"]
    return sum(e["images_per_s"] for e in eps) / len(eps)


def run_plain(cfg: dict, root: Path) -> float:
    run_dir = root / f"plain-{time.time_ns()}"
    code = ("import json,sys; from pathlib import Path; from cnnviz.train import TrainConfig, fit\n"
            "for ev in fit(TrainConfig(**json.loads(sys.argv[1])), run_dir=Path(sys.argv[2])): pass\n")
    subprocess.run([sys.executable, "-c", code, json.dumps(cfg), str(run_dir)], cwd=ROOT, check=True)
    return _ips(run_dir)


def run_page(cfg: dict, page, url: str, root: Path, leave: bool = False, refresh: int | None = None
             ) -> tuple[float, float]:
    """Start the run from the Train page; watch it to the end, or (`leave`) close the view at once
    (the run trains on in its process with nobody watching) and wait for its metrics to say done.
    Returns the run's images/s and the browser's CPU share (of one core) while the run trained."""
    from tests.browser.server import goto_via_sidebar, pick_segment, wait_idle
    from ui.live import refresh_label

    goto_via_sidebar(page, url, "train")
    if refresh is not None:
        pick_segment(page, "train_refresh", refresh_label(refresh))
    button = page.get_by_role("button", name=re.compile("Start training"))
    if not button.is_visible():
        page.locator('[data-testid="stExpander"] summary').filter(has_text="New run").click()
    for label, value in (("Epochs", cfg["epochs"]), ("Train images (0 = all)", cfg.get("limit_train") or 0)):
        box = page.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Tab")
    def new_runs() -> list[Path]:  # not .queue/ (made by the first queued run) nor other dot-folders
        return [p for p in root.iterdir() if p.name not in before and not p.name.startswith(".")]

    before = set(p.name for p in root.iterdir())
    button.click()
    deadline = time.time() + 1800
    while not new_runs() and time.time() < deadline:
        time.sleep(0.2)
    run_dir = new_runs()[0]
    if leave:
        page.goto("about:blank")
    cpu0, t0 = descendants_cpu_s("chrom"), time.time()
    # Wait on the run's own log, not on the page: reading the page's text every second would make
    # this harness, not the app, redraw and burn the cores the run trains on.
    log = run_dir / "metrics.jsonl"
    while not (log.exists() and '"kind": "done"' in log.read_text()):
        if time.time() > deadline:
            raise TimeoutError("the page run did not finish")
        time.sleep(0.5)
    browser_share = (descendants_cpu_s("chrom") - cpu0) / max(time.time() - t0, 1e-9)
    if leave:
        page.goto(url)
    wait_idle(page)
    if not leave:  # the live view handed over to the ended run's view
        if refresh == 0:  # paused: it does when asked
            page.locator(".st-key-train_refresh_now button").first.click()
        page.get_by_text(re.compile(re.escape(run_dir.name) + r"\s*·\s*(finished|stopped|error|diverged)")
                         ).first.wait_for(timeout=60_000)
    return _ips(run_dir), browser_share


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="lenet5")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--limit-train", type=int, default=0)
    ap.add_argument("--pairs", type=int, default=2, help="rounds (each: the CLI, the page per refresh, tab closed)")
    ap.add_argument("--refresh", default="",
                    help="comma-separated 'Live refresh' periods in seconds to compare, 0 = Paused (e.g. 1,10,0; "
                         "default: the page's own default only)")
    args = ap.parse_args()
    refreshes = [int(r) for r in args.refresh.split(",") if r.strip()] or [None]
    root = Path(tempfile.mkdtemp(prefix="cnnviz-bench-runs-"))
    os.environ["CNNVIZ_RUNS"] = str(root)
    cfg = dict(model=args.model, dataset="shapes", epochs=args.epochs, batch_size=args.batch_size,
               device="cpu", limit_train=args.limit_train or None, limit_test=1000)
    from playwright.sync_api import sync_playwright

    from tests.browser.server import CHROMIUM, CHROMIUM_ARGS, running_app, wait_idle

    plain, left = [], []
    page_ips: dict = {r: [] for r in refreshes}
    with running_app(timeout=120) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        wait_idle(page)
        run_plain({**cfg, "epochs": 1, "limit_train": 512}, root)  # warm the dataset cache
        for _ in range(args.pairs):  # one round runs every variant once, so drift on the machine hits all alike
            plain.append(run_plain(cfg, root))
            for r in refreshes:
                page_ips[r].append(run_page(cfg, page, url, root, refresh=r))
            left.append(run_page(cfg, page, url, root, leave=True)[0])
            print(f"plain {plain[-1]:,.0f} img/s | " + " | ".join(
                f"page open ({_label(r)}) {page_ips[r][-1][0]:,.0f} img/s, browser {100 * page_ips[r][-1][1]:.0f}% "
                "of a core" for r in refreshes) +
                f" | started from the page, tab closed {left[-1]:,.0f} img/s", flush=True)
        browser.close()
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    a, c = mean(plain), mean(left)
    print(json.dumps({"config": cfg, "plain_images_per_s": round(a), "rounds": args.pairs,
                      "page_open": {_label(r): {"images_per_s": round(mean([x for x, _ in v])),
                                                "ratio_over_plain": round(mean([x for x, _ in v]) / a, 3),
                                                "browser_cpu_share_of_a_core": round(mean([c for _, c in v]), 3)}
                                    for r, v in page_ips.items()},
                      "tab_closed_images_per_s": round(c), "ratio_tab_closed_over_plain": round(c / a, 3),
                      "cpus": os.cpu_count()}))


def _label(refresh: int | None) -> str:
    from ui.live import refresh_label

    return "default" if refresh is None else refresh_label(refresh)


if __name__ == "__main__":
    main()
