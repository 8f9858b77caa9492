"""The server start-up hook behind bookmarks (ui.nav.server_lifespan), checked without a browser
against the installed Streamlit: `streamlit run app.py` serves app.py's st.App, whose lifespan
takes Streamlit out of its old pages/-folder mode before the first session.

It leans on a private Streamlit attribute, PagesManager.uses_pages_directory. If an upgrade
drops it or changes what it means, these tests fail with a message saying so; the browser test
test_app.py::test_every_page_opens_by_its_own_address shows the effect ("Page not found").
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ui import nav

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pages_manager_class():
    """Streamlit's PagesManager, its process-wide pages/-mode flag restored afterwards."""
    pm = pytest.importorskip("streamlit.runtime.pages_manager").PagesManager
    assert hasattr(pm, "uses_pages_directory"), (
        "Streamlit no longer has PagesManager.uses_pages_directory: ui.nav."
        "route_with_st_navigation_from_the_start has nothing to set. Check whether a pages/ "
        "folder still puts a fresh server in pages/ mode (the browser test shows it) and redo "
        "or drop the hook."
    )
    saved = pm.uses_pages_directory
    yield pm
    pm.uses_pages_directory = saved


def test_streamlit_run_serves_the_st_app_in_app_py():
    from streamlit.web.server.app_discovery import discover_asgi_app

    found = discover_asgi_app(ROOT / "app.py")
    assert found.is_asgi_app and found.import_string == "app:app", (
        "`streamlit run app.py` no longer finds `app = st.App(...)` in app.py, so the lifespan "
        f"hook never runs: {found}"
    )


def test_the_pages_folder_still_means_pages_mode_and_the_hook_turns_it_off(pages_manager_class):
    pm = pages_manager_class
    assert (ROOT / "pages").is_dir()
    pm.uses_pages_directory = None  # as in a fresh process
    pm(str(ROOT / "app.py"))  # the first session's PagesManager decides
    assert pm.uses_pages_directory is True, (
        "a pages/ folder next to app.py no longer sets PagesManager.uses_pages_directory: "
        "Streamlit changed how it decides on pages/ mode; check ui.nav.server_lifespan"
    )
    pm.uses_pages_directory = None
    assert nav.route_with_st_navigation_from_the_start() is True
    pm(str(ROOT / "app.py"))
    assert pm.uses_pages_directory is False, "a new PagesManager overrode the hook's setting"


def test_the_lifespan_runs_the_hook_at_start_up(pages_manager_class):
    pm = pages_manager_class
    pm.uses_pages_directory = None

    async def start_and_stop() -> None:
        async with nav.server_lifespan(None):
            assert pm.uses_pages_directory is False

    # in a thread of its own: after the browser tests, Playwright's loop runs in this one
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, start_and_stop()).result(timeout=30)
