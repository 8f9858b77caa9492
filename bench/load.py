"""A class at once: python bench/load.py [--sessions 20] [--workers 2] [--page convolution] [--clients protocol,browser]

N sessions open the home page at once, then all go to the same page (default Convolution) at once;
the figure is the time until every one of them has settled. Two kinds of session (--clients):

  protocol  sessions that speak Streamlit's websocket protocol and draw nothing
            (`bench/protocol_client.py`): settled = the page's script run has finished and its
            pictures are fetched. The time is the servers' (a class's browsers run on the students'
            machines, not on the server's cores).
  browser   headless Chromium sessions, which click the page's sidebar link: settled = script idle,
            no skeleton, for 0.6 s in a row. On a small machine N renderers share the servers'
            cores, and the time is mostly theirs.

Each is measured in one run on the same machine against:

  1 process   a plain `streamlit run app.py`, browsers connected to it directly;
  W workers   `python -m cnnviz serve --workers W` (HAProxy + W `streamlit run app.py`),
              browsers connected to the proxy.

Before each measurement every server process is warmed by one visit of the home page and the
page (so both compare warm caches, not first imports). Prints the times, the ratio, exceptions
seen, each server process's resident memory after the run, and each server process's CPU seconds
during the page change. CPU seconds above the wall time mean a process used more than one core (its
sessions' threads release the GIL in torch, PIL and the encoders), so on a machine of few cores one
process may already use them all. Nothing is asserted: the machine may be shared, so compare the
two figures of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.procstat import cpu_s  # noqa: E402
from cnnviz.serve import free_port, healthy  # noqa: E402
from tests.browser.server import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

_IDLE_JS = """([settle]) => {
    const app = document.querySelector('[data-testid="stApp"]');
    const idle = app && app.getAttribute('data-test-script-state') === 'notRunning'
        && !document.querySelector('[data-testid="stSkeleton"]');
    const now = Date.now();
    if (!idle) { window.__idleSince = null; return false; }
    if (!window.__idleSince) { window.__idleSince = now; }
    return now - window.__idleSince >= settle;
}"""


async def _settle(page, timeout_ms: int = 600_000) -> None:
    await page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    await page.evaluate("window.__idleSince = null")
    await page.wait_for_function(_IDLE_JS, arg=[600], timeout=timeout_ms, polling=100)


async def _open(browser, url: str):
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await ctx.new_page()
    page.set_default_timeout(600_000)
    return ctx, page


async def _visit(pages, url: str, path: str) -> float:
    """All pages open url/path at once (home: a fresh load; else a click on its sidebar link);
    seconds until the last has settled."""
    t = time.perf_counter()

    async def one(page):
        if path == "home":
            await page.goto(url + "/")
        else:
            await page.locator(f'[data-testid="stSidebarNavLink"][href="{url}/{path}"]').click()
            await page.wait_for_url(f"{url}/{path}")
        await _settle(page)

    await asyncio.gather(*(one(p) for p in pages))
    return time.perf_counter() - t


async def _exceptions(pages) -> int:
    return sum([await p.locator('[data-testid="stException"]').count() for p in pages])


async def measure(url: str, sessions: int, warm: int, page_path: str, pids: list[int]) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # warm-up: one session per server process, at once (leastconn gives each worker one)
        opened = [await _open(browser, url) for _ in range(warm)]
        await _visit([p for _, p in opened], url, "home")
        await _visit([p for _, p in opened], url, page_path)
        for ctx, _ in opened:
            await ctx.close()
        opened = [await _open(browser, url) for _ in range(sessions)]
        pages = [p for _, p in opened]
        home = await _visit(pages, url, "home")
        before = [cpu_s(p) for p in pids]
        target = await _visit(pages, url, page_path)
        cpu = [cpu_s(p) - b for p, b in zip(pids, before)]
        exc = await _exceptions(pages)
        await browser.close()
    # the servers' own share of the page change (CPU seconds, every thread: above the wall time when a
    # process used more than one core)
    return {"home_s": home, "page_s": target, "exceptions": exc, "server_cpu_s": cpu}


async def measure_protocol(url: str, sessions: int, warm: int, page_path: str, pids: list[int]) -> dict:
    """As `measure`, with sessions that speak Streamlit's websocket protocol and draw nothing
    (`bench/protocol_client.py`): the wave's time is then the servers' alone."""
    from bench.protocol_client import ProtocolSession

    async def wave(clients, path: str) -> float:
        t = time.perf_counter()
        await asyncio.gather(*(c.visit(path) for c in clients))
        return time.perf_counter() - t

    async def opened(n: int) -> list:
        clients = [ProtocolSession(url) for _ in range(n)]
        await asyncio.gather(*(c.open() for c in clients))
        return clients

    warmers = await opened(warm)
    await wave(warmers, "")
    await wave(warmers, page_path)
    for c in warmers:
        await c.close()
    clients = await opened(sessions)
    home = await wave(clients, "")
    before, mine = [cpu_s(p) for p in pids], time.process_time()
    target = await wave(clients, page_path)
    cpu, mine = [cpu_s(p) - b for p, b in zip(pids, before)], time.process_time() - mine
    for c in clients:
        await c.close()
    return {"home_s": home, "page_s": target, "exceptions": sum(c.exceptions for c in clients),
            "server_cpu_s": cpu, "client_cpu_s": mine, "media_mb": sum(c.media_bytes for c in clients) / 1e6}


MEASURES = {"browser": measure, "protocol": measure_protocol}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not healthy(url):
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"error: the server at {url} did not start")
        time.sleep(0.3)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(40)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def single(args, clients: str) -> dict:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        out = asyncio.run(MEASURES[clients](url, args.sessions, 1, args.page, [proc.pid]))
        out["rss_mb"] = [_rss_mb(proc.pid)]
    finally:
        _stop(proc)
    return out


def served(args, clients: str) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="cnnviz-load-") as d:
        proc = subprocess.Popen([sys.executable, "-m", "cnnviz", "serve", "--workers", str(args.workers),
                                 "--port", str(port), "--dir", d], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 300
            while True:
                try:
                    state = json.loads((Path(d) / "state.json").read_text())
                except (OSError, ValueError):
                    state = {}
                if state.get("ready"):
                    break
                if proc.poll() is not None or time.time() > deadline:
                    raise SystemExit("error: the launcher did not become ready")
                time.sleep(0.3)
            pids = [w["pid"] for w in json.loads((Path(d) / "state.json").read_text())["workers"]]
            out = asyncio.run(MEASURES[clients](url, args.sessions, args.workers, args.page, pids))
            state = json.loads((Path(d) / "state.json").read_text())
            out["rss_mb"] = [_rss_mb(w["pid"]) for w in state["workers"]]
            out["restarts"] = sum(w["starts"] - 1 for w in state["workers"])
        finally:
            _stop(proc)  # SIGTERM to the launcher's group: it stops HAProxy and the workers
    return out


def report(args, clients: str) -> dict:
    """Measure one kind of client against 1 process, then against the workers; print and return both."""
    print(f"-- {args.sessions} {clients} sessions at once", flush=True)
    one = single(args, clients)
    print(f"1 process:            home {one['home_s']:6.1f} s   {args.page} {one['page_s']:6.1f} s   "
          f"exceptions {one['exceptions']}   RSS {', '.join(f'{m:.0f}' for m in one['rss_mb'])} MB", flush=True)
    many = served(args, clients)
    print(f"{args.workers} workers + HAProxy: home {many['home_s']:6.1f} s   {args.page} {many['page_s']:6.1f} s   "
          f"exceptions {many['exceptions']}   RSS {', '.join(f'{m:.0f}' for m in many['rss_mb'])} MB"
          f"   restarts {many['restarts']}", flush=True)
    print(f"ratio (workers / 1 process): home {many['home_s'] / one['home_s']:.2f}x, "
          f"{args.page} {many['page_s'] / one['page_s']:.2f}x; load average after: {os.getloadavg()[0]:.1f}")
    busiest_one, busiest_many = max(one["server_cpu_s"]), max(many["server_cpu_s"])
    print(f"servers' CPU for the {args.page} wave: 1 process {busiest_one:.1f} s; {args.workers} workers "
          f"{' + '.join(f'{c:.1f}' for c in many['server_cpu_s'])} s, the busiest {busiest_many:.1f} s "
          f"({busiest_many / max(busiest_one, 1e-9):.2f}x)" + (
              ": what the servers alone need, the rest of the wall time is the browsers on the same cores"
              if clients == "browser" else
              f"; the {args.sessions} sessions' own CPU (one Python process) {one['client_cpu_s']:.1f} s and "
              f"{many['client_cpu_s']:.1f} s; pictures fetched {one['media_mb']:.1f} and {many['media_mb']:.1f} MB"),
          flush=True)
    return {"single": one, "served": many}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--page", default="convolution", help="url path of the page all sessions open")
    ap.add_argument("--clients", default="protocol,browser",
                    help="comma-separated: protocol (sessions that speak the websocket protocol and draw "
                         "nothing: the servers' time), browser (headless Chromium sessions on the same cores)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.clients.split(",") if k.strip()]
    if not kinds or any(k not in MEASURES for k in kinds):
        print(f"error: --clients takes {', '.join(MEASURES)} (comma-separated)", file=sys.stderr)
        return 2
    if "browser" in kinds and not Path(CHROMIUM).exists():
        print("error: chromium not found (apt-get install chromium)", file=sys.stderr)
        return 2
    print(f"{args.sessions} sessions at once: home, then {args.page}; load average before: "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    out = {k: report(args, k) for k in kinds}
    if args.json:
        args.json.write_text(json.dumps({**out, "sessions": args.sessions, "workers": args.workers,
                                         "page": args.page}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
