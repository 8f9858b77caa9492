"""Fixtures for the real-browser tests: one `streamlit run app.py` server per session,
one headless Debian chromium driven by Playwright (sync API), a fresh tab per test.

Without chromium or playwright the tests skip with a reason that says how to install them;
with CI=true they fail instead, so CI can never pass by skipping them silently.
Helpers for tests (goto_via_sidebar, sidebar_upload, exceptions, ...) live in server.py.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from .server import CHROMIUM, CHROMIUM_ARGS, ROOT, chromium_missing_reason, running_app, wait_idle

ARTIFACTS = ROOT / "test-artifacts"


def _require_browser() -> None:
    reason = chromium_missing_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(f"browser tests must run in CI, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """test-artifacts/: screenshots and server logs for humans (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def app_runs(tmp_path_factory) -> Path:
    """The app server's runs folder (its $CNNVIZ_RUNS); each test's own runs folder is another."""
    return tmp_path_factory.mktemp("app-runs")


@pytest.fixture(scope="session")
def app_url(artifacts, app_runs) -> str:
    """Base URL of a running app (`streamlit run app.py` on a free port, localhost)."""
    _require_browser()
    with running_app({"CNNVIZ_RUNS": str(app_runs)}, timeout=120) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium (Playwright's own browsers are not used)."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def app_page(browser, app_url, app_runs, artifacts, request):
    """A new browser tab (a new Streamlit session) on the home page, idle.

    On failure a screenshot lands in test-artifacts/FAILED-<test>.png. Run processes the test
    started from the app (each its own process) are killed when it ends, so no run of one test
    holds the queue or the cores in the next.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(app_url)
    wait_idle(page)
    yield page
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        page.screenshot(path=str(artifacts / f"FAILED-{name}.png"))
    context.close()
    from ..runtools import kill_runs_under

    kill_runs_under(app_runs)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call":
        item.rep_call = rep
    return rep
