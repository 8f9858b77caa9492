"""Start `streamlit run app.py` on a free port for browser tests, and wait for pages to settle."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


def chromium_missing_reason() -> str | None:
    """Why browser tests can't run here, or None when they can."""
    if not Path(CHROMIUM).exists():
        return "chromium not found: install Debian's package with `apt-get install chromium`"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright not installed: `pip install -r requirements-dev.txt`"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(env_extra: dict[str, str] | None = None, timeout: float = 60,
                args: list[str] | None = None) -> Iterator[str]:
    """Run the app in a subprocess (`args`: more `streamlit run` options); yield its base URL; always stop it."""
    port = free_port()
    env = {**os.environ, **(env_extra or {})}
    log = open(ROOT / "test-artifacts" / f"streamlit-{port}.log", "w") if (ROOT / "test-artifacts").is_dir() \
        else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false", *(args or [])],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {proc.returncode}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        else:
            raise TimeoutError("streamlit did not become healthy")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log is not subprocess.DEVNULL:
            log.close()


def wait_idle(page, timeout_ms: int = 90_000, settle_ms: int = 600) -> None:
    """Wait until Streamlit has finished the current script run.

    The app root carries `data-test-script-state` ("running", "notRunning", ...); it must read
    "notRunning" for `settle_ms` in a row, which also covers the short gap between a click and
    the rerun it triggers. (Streamlit 1.67 shows no status widget for short runs.)
    """
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    page.evaluate("window.__cnnvizIdleSince = null")
    page.wait_for_function(
        """([settle]) => {
            const app = document.querySelector('[data-testid="stApp"]');
            const idle = app && app.getAttribute('data-test-script-state') === 'notRunning'
                && !document.querySelector('[data-testid="stSkeleton"]');
            const now = Date.now();
            if (!idle) { window.__cnnvizIdleSince = null; return false; }
            if (!window.__cnnvizIdleSince) { window.__cnnvizIdleSince = now; }
            return now - window.__cnnvizIdleSince >= settle;
        }""",
        arg=[settle_ms], timeout=timeout_ms, polling=100,
    )


# ------------------------------------------------------------------ page helpers for tests


def nav_href(base_url: str, url_path: str) -> str:
    """The sidebar link's href for a page's url path ("home" is the root)."""
    return f"{base_url}/" if url_path == "home" else f"{base_url}/{url_path}"


def goto_via_sidebar(page, base_url: str, url_path: str, timeout_ms: int = 90_000) -> None:
    """Open a page by clicking its sidebar link (same session, so session state persists)."""
    href = nav_href(base_url, url_path)
    page.locator(f'[data-testid="stSidebarNavLink"][href="{href}"]').click()
    page.wait_for_url(href, timeout=timeout_ms)
    wait_idle(page, timeout_ms)


def sidebar_upload(page, name: str, data: bytes, mime: str = "image/png") -> None:
    """Upload `data` as `name` through the sidebar's file uploader and wait for the rerun."""
    box = page.locator('[data-testid="stSidebar"] [data-testid="stFileUploaderDropzoneInput"]')
    box.set_input_files({"name": name, "mimeType": mime, "buffer": data})
    page.locator('[data-testid="stSidebar"]').get_by_text(name).first.wait_for(timeout=30_000)
    wait_idle(page)


def pick_segment(page, key: str, label: str) -> None:
    """Select `label` in the segmented control with widget key `key` (a no-op when it is already
    selected: a second click would unselect it)."""
    button = page.locator(f".st-key-{key}").get_by_role("radio", name=label, exact=True)
    if button.get_attribute("aria-checked") != "true":
        button.click()
        wait_idle(page)


def dialogs(page) -> list[str]:
    """Texts of the modal dialogs open on the page (Streamlit's "Page not found" is one; so is
    an st.dialog). Should be empty unless a test opened one itself."""
    return page.locator('[data-testid="stDialog"], [role="dialog"]').all_inner_texts()


def exceptions(page) -> list[str]:
    """Texts of every Streamlit exception block on the page (should be empty)."""
    return page.locator('[data-testid="stException"]').all_inner_texts()


def sidebar_text(page) -> str:
    return page.locator('[data-testid="stSidebarUserContent"]').inner_text()


def main_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()
