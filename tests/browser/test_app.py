"""Real-browser tests of the app shell: headless Debian chromium against `streamlit run app.py`.

Every page in ui.nav.PAGES is visited through the sidebar links (one session, so the sidebar
image stays chosen) after a valid upload and after a corrupt one: never an exception block;
with the valid image each page that uses it shows a picture, with the corrupt one the sidebar
and the page say clearly what went wrong. Screenshots land in test-artifacts/ for humans.
"""

from __future__ import annotations

import ast
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ui.nav import PAGES

from .server import (ROOT, dialogs, exceptions, goto_via_sidebar, main_text, nav_href, running_app, sidebar_text,
                     sidebar_upload, wait_idle)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

VISUAL_OUTPUT = (
    '[data-testid="stMain"] [data-testid="stImage"] img, '
    '[data-testid="stMain"] [data-testid="stPlotlyChart"]'
)


def _valid_png() -> bytes:
    """A 320x200 picture with structure (gradient + shapes) so every operation shows something."""
    y, x = np.mgrid[0:200, 0:320]
    arr = np.stack([x * 255 // 319, y * 255 // 199, np.full_like(x, 90)], -1).astype(np.uint8)
    arr[40:160, 60:140] = (250, 250, 250)
    arr[80:120, 200:300] = (20, 20, 20)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _corrupt_png() -> bytes:
    raw = _valid_png()
    return raw[: len(raw) // 2]  # cut in the middle of the pixel data


# Pages whose first view is a picture computed from the sidebar image (Train/Runs need a run
# first, Datasets/Architectures don't use it). A page still being built (a placeholder that
# doesn't call current_image yet) is only checked for exceptions.
IMAGE_PAGES = {"convolution", "upsample-pooling", "batchnorm", "augmentation", "feature-maps"}


def _shows_image_output(p) -> bool:
    return p.url in IMAGE_PAGES and "current_image(" in Path(ROOT, p.path).read_text(encoding="utf-8")


def _calls_page_header(page_path: str) -> bool:
    return "page_header(" in Path(ROOT, page_path).read_text(encoding="utf-8")


def _shot(page, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"))


def test_home_paints_with_device_and_links(app_page, app_url, artifacts):
    page = app_page
    text = main_text(page)
    assert "cnnviz" in text and "Running on" in text
    assert any(s in text for s in ("CPU:", "CUDA:", "MPS")), text
    assert "torch " in text and "streamlit " in text  # the versions line
    # a link card for every page
    cards = page.locator('[data-testid="stMain"] [data-testid="stPageLink"]')
    assert cards.count() == len([p for p in PAGES if p.section])
    assert not exceptions(page)
    _shot(page, artifacts, "browser-home")
    # a card's link opens its page in the same session
    target = next(p for p in PAGES if p.section)
    page.locator(f'[data-testid="stMain"] [data-testid="stPageLink"] a[href="{target.url}"]').click()
    page.wait_for_url(f"{app_url}/{target.url}")
    wait_idle(page)
    assert not exceptions(page)


def test_valid_upload_then_every_page(app_page, app_url, artifacts):
    page = app_page
    sidebar_upload(page, "valid-upload.png", _valid_png())
    side = sidebar_text(page)
    assert "Using valid-upload.png, 320×200 px" in side, side
    assert "Couldn't use" not in side
    for p in PAGES:
        goto_via_sidebar(page, app_url, p.url)
        errs = exceptions(page)
        _shot(page, artifacts, f"browser-valid-{p.url}")
        assert not errs, f"{p.title}: exception shown:\n{errs[0][:2000]}"
        # the upload is still the chosen image on this page
        assert "Using valid-upload.png" in sidebar_text(page), p.title
        assert "Couldn't use" not in main_text(page), p.title
        if _shows_image_output(p):
            assert page.locator(VISUAL_OUTPUT).count() > 0, f"{p.title}: no output picture shown"


def test_corrupt_upload_then_every_page(app_page, app_url, artifacts):
    page = app_page
    sidebar_upload(page, "corrupt.png", _corrupt_png())
    side = sidebar_text(page)
    assert "Couldn't use 'corrupt.png'" in side and "truncated or corrupt" in side, side
    assert page.locator('[data-testid="stSidebar"] [data-testid="stAlertContentError"]').count() == 1
    for p in PAGES:
        goto_via_sidebar(page, app_url, p.url)
        errs = exceptions(page)
        _shot(page, artifacts, f"browser-corrupt-{p.url}")
        assert not errs, f"{p.title}: exception shown:\n{errs[0][:2000]}"
        assert "Couldn't use 'corrupt.png'" in sidebar_text(page), p.title
        if _calls_page_header(p.path):
            banner = page.locator('[data-testid="stMain"] [data-testid="stAlertContentWarning"]',
                                  has_text="Couldn't use 'corrupt.png'")
            assert banner.count() == 1, f"{p.title}: no upload-error banner"
        if _shows_image_output(p):  # the page carries on with the sample image
            assert page.locator(VISUAL_OUTPUT).count() > 0, f"{p.title}: no output picture shown"


def test_sample_choice_and_size_persist_across_pages(app_page, app_url, artifacts):
    page = app_page
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_role("button", name="Coffee", exact=True).click()
    wait_idle(page)
    # shrink to 128 px through the size expander
    sidebar.get_by_text("Size: longest side").click()
    slider = sidebar.get_by_role("slider")
    for _ in range(2):  # 384 -> 256 -> 128
        slider.focus()
        page.keyboard.press("ArrowLeft")
        wait_idle(page)
    assert "Using Coffee, 128×" in sidebar_text(page), sidebar_text(page)
    _shot(page, artifacts, "browser-sidebar-coffee-128")
    visited = [p for p in PAGES if p.section][:3] + [PAGES[0]]
    for p in visited:
        goto_via_sidebar(page, app_url, p.url)
        assert not exceptions(page), p.title
        side = sidebar_text(page)
        assert "Using Coffee, 128×" in side, f"{p.title}: {side}"
        chosen = sidebar.locator('.st-key-cnnviz_gallery [data-testid="stBaseButton-primary"]:visible')
        assert chosen.count() == 1 and chosen.inner_text().strip() == "Coffee", (p.title, chosen.all_inner_texts(), 0)
    # an upload replaces the sample; clicking a sample again clears the upload
    sidebar_upload(page, "valid-upload.png", _valid_png())
    assert "Using valid-upload.png, 128×80 px (from 320×200)" in sidebar_text(page)
    assert sidebar.locator('.st-key-cnnviz_gallery [data-testid="stBaseButton-primary"]:visible').count() == 0
    sidebar.get_by_role("button", name="Horse", exact=True).click()
    wait_idle(page)
    side = sidebar_text(page)
    assert "Using Horse (transparent), 128×" in side and "valid-upload.png" not in side, side
    assert "composited over white" in side  # the loader's note reaches the user


def _heading(p) -> str:
    """The h1 a page draws: the first argument of page_header() in its file ("" if none)."""
    for node in ast.walk(ast.parse(Path(ROOT, p.path).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "page_header":
            return ast.literal_eval(node.args[0])
    return ""


def _check_opened_by_address(tab, p) -> None:
    """`tab` shows page `p` in the app's navigation and wide layout, with no dialog over it."""
    shown = dialogs(tab)
    assert not shown, f"{p.title}: a dialog is open over the page: {shown}"
    assert "page not found" not in tab.content().lower(), p.title
    assert not exceptions(tab), p.title
    links = tab.locator('[data-testid="stSidebarNavLink"]')
    assert links.count() == len(PAGES), f"{p.title}: the sidebar lists {links.all_inner_texts()}"
    active = tab.locator('[data-testid="stSidebarNavLink"][aria-current="page"]')
    assert active.count() == 1 and p.title in active.inner_text(), (p.title, active.all_inner_texts())
    h1, expected = tab.locator('[data-testid="stMain"] h1').first.inner_text().strip(), _heading(p)
    assert h1 and (h1 == expected or not expected), f"{p.title}: heading {h1!r}, not {expected!r}"
    assert "Using " in sidebar_text(tab), f"{p.title}: no sidebar image picker"
    width = tab.evaluate('document.querySelector(\'[data-testid="stMainBlockContainer"]\').clientWidth')
    assert width > 1000, f"{p.title}: narrow layout ({width}px)"  # layout="wide"


# The first address a fresh server is asked for. Before the fix both showed Streamlit's "Page not
# found" dialog over the right page: their files (pages/training.py, pages/feature_maps.py) are
# not named like their url paths, and a fresh server's first run went by the pages/ file names.
FRESH_SERVER_FIRST = ["train", "feature-maps"]


@pytest.mark.parametrize("first", FRESH_SERVER_FIRST)
def test_every_page_opens_by_its_own_address(browser, artifacts, first):
    """A bookmarked or shared link (/train, /feature-maps, ...) opens that page itself, in the
    app's navigation and wide layout, not Streamlit's pages/ listing, with no "Page not found"
    dialog over it, even as the very first request to a freshly started server (Streamlit's old
    pages/ mode applied until st.navigation had run once: see ui.nav.server_lifespan). The page
    answers a click at once. Then every other page opens by its address on the same server."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    by_url = {p.url: p for p in PAGES}
    order = [by_url[first]]
    if first == FRESH_SERVER_FIRST[0]:  # every page once is enough: the other case checks its first request
        order += [p for p in PAGES[::-1] if p.url != first]
    with running_app(timeout=120) as fresh_url:
        for i, p in enumerate(order):
            tab = browser.new_page(viewport={"width": 1400, "height": 900})
            try:
                tab.goto(nav_href(fresh_url, p.url))
                wait_idle(tab)
                if i == 0:
                    _shot(tab, artifacts, f"browser-fresh-server-{p.url}")
                _check_opened_by_address(tab, p)
                if i == 0:  # interactive: a sidebar sample button takes the click and the page reruns
                    sidebar = tab.locator('[data-testid="stSidebar"]')
                    try:
                        sidebar.get_by_role("button", name="Coffee", exact=True).click(timeout=5_000)
                    except PlaywrightTimeout:
                        pytest.fail(f"{p.title}: the page does not take a click (covered by {dialogs(tab)})")
                    wait_idle(tab)
                    assert "Using Coffee" in sidebar_text(tab), f"{p.title}: the click changed nothing"
                    _check_opened_by_address(tab, p)
            finally:
                tab.close()
