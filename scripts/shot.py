"""Screenshot app pages in headless Chromium: python scripts/shot.py home convolution ... [--out DIR] [--full]

Starts `streamlit run app.py` on a free port, opens each url path, waits for the page to
settle and writes DIR/<page>.png (default test-artifacts/). For looking at pages while
building them; the real browser tests live in tests/browser/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.browser.server import running_app, wait_idle  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pages", nargs="+")
    ap.add_argument("--out", default="test-artifacts")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1000)
    ap.add_argument("--wait", type=float, default=2.0, help="extra seconds after the app is idle")
    ap.add_argument("--full", action="store_true",
                    help="grow the window to the page's full height first (Streamlit scrolls inside "
                         "its own container, so a plain full-page shot stops at the window)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from tests.browser.server import CHROMIUM, CHROMIUM_ARGS

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with running_app() as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        for name in args.pages:
            page.set_viewport_size({"width": args.width, "height": args.height})
            page.goto(f"{url}/{'' if name == 'home' else name}")
            wait_idle(page)
            page.wait_for_timeout(int(args.wait * 1000))
            if args.full:
                tall = page.evaluate(
                    """() => Math.max(...['stMain', 'stSidebarContent'].map(id => {
                        const el = document.querySelector(`[data-testid="${id}"]`);
                        return el ? el.scrollHeight : 0; }))""")
                page.set_viewport_size({"width": args.width, "height": min(max(args.height, tall), 8000)})
                page.wait_for_timeout(800)
            path = out / f"{name}.png"
            page.screenshot(path=str(path), full_page=True)
            print(path)
        browser.close()


if __name__ == "__main__":
    main()
