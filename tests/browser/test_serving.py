"""Several server processes behind one address, in Chromium: `python -m cnnviz serve --workers 2`
started by the test (HAProxy from the distribution and two `streamlit run app.py` workers).

Ten browser sessions: both workers serve some (each context's CNNVIZ_SERVER cookie, and each
worker's log line per session, agree); each session uploads its own picture and keeps it, with
every picture loaded, across page changes. That needs affinity: a session's websocket, its
upload (a PUT into the worker's memory) and its pictures (GETs of /media/... from the worker's
memory) must all reach the same process. Then one worker is killed with SIGKILL: within 10 s
every session is connected to a live worker again and works (a page change runs, every picture
loads, no exception); the sessions of the surviving worker keep their picture; the launcher
restarts the dead worker and a new session is served by it. At the end the launcher is stopped
with SIGTERM and every process it started must be gone (checked by pid).
"""

from __future__ import annotations

import io
import os
import re
import signal
import time

import pytest
from PIL import Image

from cnnviz.serve import healthy

from ..servetools import alive, launched, read_state, wait_for
from .server import exceptions, goto_via_sidebar, nav_href, sidebar_text, sidebar_upload, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]
SESSIONS = 10
RECOVER_S = 10.0

_STATE_JS = """() => { const a = document.querySelector('[data-testid="stApp"]');
    return a ? [a.getAttribute('data-test-connection-state'), a.getAttribute('data-test-script-state')] : [null, null]; }"""
_IMAGES_JS = """() => Array.from(document.images).filter(i => i.src && !i.src.startsWith('data:'))
    .map(i => [i.src, i.complete, i.naturalWidth])"""


def _png(i: int) -> tuple[str, bytes, tuple[int, int]]:
    size = (160 + 16 * i, 120)
    buf = io.BytesIO()
    Image.new("RGB", size, (20 * i, 255 - 20 * i, 128)).save(buf, format="PNG")
    return f"session-{i}.png", buf.getvalue(), size


def _worker_of(context) -> str | None:
    return next((c["value"] for c in context.cookies() if c["name"] == "CNNVIZ_SERVER"), None)


def _all_pictures_loaded(page, what: str) -> int:
    """Wait until every picture on the page has finished loading; fail if one is broken (a
    /media/ GET that reached a worker without that file answers 404). Returns how many."""
    page.wait_for_function(
        "() => Array.from(document.images).every(i => i.complete)", timeout=60_000, polling=100)
    images = page.evaluate(_IMAGES_JS)
    broken = [src for src, complete, width in images if not width]
    assert not broken, f"{what}: pictures that did not load: {broken}"
    return len(images)


def _session_log_lines(run_dir, name: str) -> int:
    text = (run_dir / f"{name}.log").read_text(errors="replace")
    return len(re.findall(rf"cnnviz worker {name} \(pid \d+\): new session ", text))


def test_ten_sessions_keep_their_worker_and_survive_a_killed_one(browser, artifacts, tmp_path):
    env = {"CNNVIZ_RUNS": str(tmp_path / "runs")}
    with launched(tmp_path, workers=2, env=env) as (launcher, url):
        sessions = []  # (context, page, upload name, size, worker)
        try:
            for i in range(SESSIONS):
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                context.set_default_timeout(60_000)
                page = context.new_page()
                page.goto(url)
                wait_idle(page, 180_000)
                name, data, size = _png(i)
                sidebar_upload(page, name, data)
                sessions.append((context, page, name, size, _worker_of(context)))

            # both workers serve some; the cookies and the workers' own logs agree
            workers = [s[4] for s in sessions]
            assert set(workers) == {"w1", "w2"}, workers
            for w in ("w1", "w2"):
                assert _session_log_lines(tmp_path, w) == workers.count(w), (w, workers)

            # affinity: each session keeps its upload, and every picture loads, across page changes
            for context, page, name, size, worker in sessions:
                for path in ("convolution", "home"):
                    goto_via_sidebar(page, url, path)
                    assert f"Using {name}, {size[0]}×{size[1]} px" in sidebar_text(page), sidebar_text(page)
                    assert _all_pictures_loaded(page, f"{name} on {path}") >= 7  # 6 thumbnails + the upload
                    assert not exceptions(page)
                assert _worker_of(context) == worker
            page.screenshot(path=str(artifacts / "browser-serving-before-kill.png"))

            # SIGKILL w1: every session is connected to a live worker again within 10 s ...
            state = read_state(tmp_path)
            w1 = next(w for w in state["workers"] if w["name"] == "w1")
            t0 = time.monotonic()
            os.kill(w1["pid"], signal.SIGKILL)
            for context, page, name, size, worker in sessions:
                left_ms = max(1, int((t0 + RECOVER_S - time.monotonic()) * 1000))
                if worker == "w1":  # its cookie is rewritten when the proxy sends it to w2
                    wait_for(lambda: _worker_of(context) == "w2", left_ms / 1000, f"{name} to move to w2",
                             interval=0.05)
                page.wait_for_function(
                    """() => document.querySelector('[data-testid="stApp"]')
                        .getAttribute('data-test-connection-state') === 'CONNECTED'""",
                    timeout=max(1, int((t0 + RECOVER_S - time.monotonic()) * 1000)), polling=50)
            reconnected = time.monotonic() - t0
            # ... and works: all change page at once; each run ends with its pictures, no exception
            for context, page, *_ in sessions:
                page.locator(f'[data-testid="stSidebarNavLink"][href="{nav_href(url, "convolution")}"]').click()
            for context, page, name, size, worker in sessions:
                page.wait_for_url(nav_href(url, "convolution"))
                wait_idle(page, 120_000)
                assert page.evaluate(_STATE_JS) == ["CONNECTED", "notRunning"]
                assert not exceptions(page), (name, exceptions(page))
                _all_pictures_loaded(page, f"{name} after the kill")
                caption = sidebar_text(page)
                if worker == "w2":  # untouched sessions keep their state
                    assert f"Using {name}," in caption, caption
                else:  # moved sessions start afresh on w2 (the default sample)
                    assert "Using " in caption and _worker_of(context) == "w2"
            working = time.monotonic() - t0
            print(f"\nSIGKILL of w1 with {SESSIONS} sessions ({workers.count('w1')} on w1): all reconnected "
                  f"after {reconnected:.1f} s, all had run a page change after {working:.1f} s")
            assert reconnected <= RECOVER_S
            page.screenshot(path=str(artifacts / "browser-serving-after-kill.png"))

            # the launcher restarts w1; a new session goes to it (it holds the fewest connections)
            def w1_back():
                s = read_state(tmp_path)
                w = next((w for w in s["workers"] if w["name"] == "w1"), None) if s else None
                return w if w and w["starts"] == 2 and w["pid"] and alive(w["pid"]) else None

            port = wait_for(w1_back, 30, "the launcher to restart w1")["port"]
            wait_for(lambda: healthy(f"http://127.0.0.1:{port}"), 180, "the restarted w1 to be healthy", interval=0.3)
            assert "exited with signal SIGKILL" in (tmp_path / "launcher.log").read_text()
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(60_000)
            page = context.new_page()
            sessions.append((context, page, "", (0, 0), None))

            def fresh_session_on_w1():  # the proxy sees it up within a second or two
                context.clear_cookies()
                page.goto(url)
                wait_idle(page, 180_000)
                return _worker_of(context) == "w1"

            wait_for(fresh_session_on_w1, 180, "a new session on the restarted w1", interval=1)
            assert not exceptions(page)
            _all_pictures_loaded(page, "a new session on the restarted w1")
        finally:
            for context, *_ in sessions:
                context.close()
    assert launcher.returncode == 0
