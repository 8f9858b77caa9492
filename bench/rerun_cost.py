"""Server CPU per warm rerun, per page: python bench/rerun_cost.py [--repeat N] [--pages a,b] [--json OUT]

What a Streamlit server spends on one session's rerun when nothing changed (a click elsewhere,
a widget that does not affect the page, a reconnect): that is what a class of sessions queue
behind in one process. Measured IN-PROCESS with Streamlit's AppTest, as the CPU time of this
process (time.process_time(): every thread, user + system) around `at.run()`, so a page that
computes in torch threads is charged for them. Three figures per page, each the median of
`--repeat` warm reruns after one untimed warm-up rerun (the first, cold run is printed apart):

  app, defaults   app.py through st.navigation: the sidebar picker + the page, default inputs
                  (the sample image at the default size), i.e. a whole real rerun;
  page, defaults  the page file alone (AppTest.from_file("pages/x.py")), default inputs;
  page, 1024 px   the page alone with a 1024x683 image in session_state["cnnviz_image"] (the
                  sidebar would hold it after an upload with "Max side" 1024).

A real server compiles each script once (its ScriptCache) and reruns the bytecode; AppTest makes a new
ScriptCache on every run, so it would charge every rerun for parsing and compiling app.py and the
page (40-60 ms here). This bench gives AppTest one ScriptCache for the whole process, as a server
has; `--recompile` measures AppTest as it comes (the figures of the README before 2026-12-03).

Not included (AppTest has no browser or websocket): serialising the messages and sending them,
and the HTTP GETs of the pictures (/media/...). Pictures ARE encoded inside the rerun (st.image
turns a PIL image or an array into PNG/JPEG bytes in the script thread), so their cost is here.

`--browser` measures the real thing instead: a `streamlit run app.py` server and one headless
Chromium session; for each page, the server process's CPU time (/proc/PID/stat, user + system)
around a warm rerun triggered as a user would (the "r" key: rerun, nothing changed) until the
page has settled, which includes the websocket, the serialisation and the picture GETs; and the
same after a 1024x683 upload with "Max side" 1024 (the sidebar then shows the upload too).
Goal (issue 26): every page's warm rerun <= 150 ms of server CPU with the defaults.
Nothing is asserted; the machine may be shared, so CPU time (not wall time) is the figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.procstat import cpu_s  # noqa: E402

from streamlit.testing.v1 import AppTest  # noqa: E402

logging.disable(logging.WARNING)  # no bare-mode Streamlit warnings between the figures

from ui.nav import PAGES  # noqa: E402

BIG = (1024, 683)


def share_script_cache() -> None:
    """One ScriptCache for every AppTest run in this process, as one server has (see the docstring)."""
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache
    from streamlit.testing.v1 import app_test, local_script_runner

    shared = ScriptCache()
    app_test.ScriptCache = local_script_runner.ScriptCache = lambda: shared


def _big_image():
    from PIL import Image

    from cnnviz import images

    base = images.load_image(str(images.samples()[0].path))
    return base.resize(BIG, Image.Resampling.BICUBIC)


def _timed(at: AppTest) -> tuple[float, float]:
    c, w = time.process_time(), time.perf_counter()
    at.run()
    c, w = time.process_time() - c, time.perf_counter() - w
    if at.exception:
        raise RuntimeError(f"exception in the rerun: {at.exception[0].value}")
    return c, w


def measure(make, repeat: int) -> dict:
    """Cold run, one untimed warm-up, then `repeat` timed warm reruns of the same AppTest."""
    at = make()
    cold_cpu, cold_wall = _timed(at)
    _timed(at)
    runs = [_timed(at) for _ in range(repeat)]
    return {"cold_cpu_s": cold_cpu, "cold_wall_s": cold_wall,
            "warm_cpu_s": statistics.median(c for c, _ in runs),
            "warm_cpu_min_s": min(c for c, _ in runs),
            "warm_wall_s": statistics.median(w for _, w in runs)}


def app_at(page_path: str):
    def make():
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.run()
        if page_path != PAGES[0].path:
            at.switch_page(page_path)
        return at
    return make


def page_at(page_path: str, image=None):
    def make():
        at = AppTest.from_file(str(ROOT / page_path), default_timeout=300)
        if image is not None:
            at.session_state["cnnviz_image"] = image
            at.session_state["cnnviz_image_label"] = f"bench {image.width}x{image.height}"
        return at
    return make


def browser_main(wanted, repeat: int, big) -> dict:
    """Real server, real browser: server CPU seconds per warm rerun ('r' key) per page."""
    import io
    import subprocess

    from playwright.sync_api import sync_playwright

    from tests.browser.server import CHROMIUM, CHROMIUM_ARGS, free_port, goto_via_sidebar, sidebar_upload, wait_idle
    from cnnviz.serve import healthy

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url, out = f"http://127.0.0.1:{port}", {}
    try:
        deadline = time.time() + 180
        while not healthy(url) and time.time() < deadline:
            time.sleep(0.3)
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = b.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(180_000)
            page.goto(url)
            wait_idle(page, 180_000)

            def warm(path: str) -> float:
                goto_via_sidebar(page, url, path, 180_000)
                page.evaluate("document.activeElement && document.activeElement.blur()")  # no widget has focus
                costs = []
                for _ in range(repeat + 1):
                    c = cpu_s(proc.pid)
                    page.keyboard.press("r")
                    wait_idle(page, 180_000)
                    costs.append(cpu_s(proc.pid) - c)
                return statistics.median(costs[1:])

            for p in wanted:
                out[p.url] = {"browser": warm(p.url)}
            buf = io.BytesIO()
            big.save(buf, format="PNG")
            sidebar_upload(page, "bench-1024.png", buf.getvalue())
            page.get_by_text("Size: longest side").click()
            page.locator('.st-key-sidebar_max_side input[type="range"]').focus()
            page.keyboard.press("End")
            wait_idle(page)
            for p in wanted:
                out[p.url]["browser_1024"] = warm(p.url)
            b.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="warm reruns timed per figure (median)")
    ap.add_argument("--pages", default="", help="comma-separated url paths (default: every page)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    ap.add_argument("--recompile", action="store_true",
                    help="AppTest as it comes: app.py and the page compiled again on every run (no server does that)")
    ap.add_argument("--browser", action="store_true",
                    help="measure a real server driven by headless Chromium instead of AppTest")
    args = ap.parse_args()
    wanted = [p for p in PAGES if not args.pages or p.url in args.pages.split(",")]
    if not wanted:
        print(f"error: no page among {args.pages!r}; pages: {', '.join(p.url for p in PAGES)}", file=sys.stderr)
        return 2
    big = _big_image()
    if args.browser:
        out = browser_main(wanted, args.repeat, big)
        print(f"server CPU per warm rerun (real server + Chromium, /proc CPU time, 'r' key, median of {args.repeat})")
        print(f"{'page':20s} {'defaults':>10s} {'1024 px':>10s}")
        for url, row in out.items():
            print(f"{url:20s} {row['browser'] * 1000:7.0f} ms {row['browser_1024'] * 1000:7.0f} ms")
        if args.json:
            args.json.write_text(json.dumps(out, indent=1) + "\n")
        return 0
    import torch

    if not args.recompile:
        share_script_cache()
    print(f"server CPU per warm rerun (AppTest in-process, time.process_time, median of {args.repeat}); "
          f"torch threads {torch.get_num_threads()}; scripts "
          + ("compiled on every run (--recompile)" if args.recompile else "compiled once, as in a server"))
    print(f"{'page':20s} {'app, defaults':>14s} {'page, defaults':>15s} {'page, 1024 px':>14s}  "
          f"{'(wall app)':>10s} {'(cold app)':>10s}")
    out = {}
    for p in wanted:
        row = {"app": measure(app_at(p.path), args.repeat),
               "page": measure(page_at(p.path), args.repeat),
               "page_1024": measure(page_at(p.path, big), args.repeat)}
        out[p.url] = row
        ms = {k: v["warm_cpu_s"] * 1000 for k, v in row.items()}
        print(f"{p.url:20s} {ms['app']:11.0f} ms {ms['page']:12.0f} ms {ms['page_1024']:11.0f} ms  "
              f"{row['app']['warm_wall_s'] * 1000:7.0f} ms {row['app']['cold_cpu_s'] * 1000:7.0f} ms", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
