"""Real-browser test of the Projector: the shipped digits LeNet5's test set laid out (computed in the
background, the page polling until it is done), a lasso drawn with the mouse over the plotly
scatter selects points, their images appear as a gallery, and "Open" makes one of them the input of
the Feature maps page, read by the same weights. Screenshots land in test-artifacts/."""

from __future__ import annotations

import math
import re

import pytest

from .server import exceptions, goto_via_sidebar, main_text, sidebar_text, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

MAIN = '[data-testid="stMain"]'
CHART = f'{MAIN} [data-testid="stPlotlyChart"]'


def _lasso(page) -> None:
    """Draw a closed lasso around the middle of the 2-D scatter's plotting area."""
    area = page.locator(f"{CHART} .nsewdrag").first
    area.wait_for(state="visible")
    area.scroll_into_view_if_needed()
    box = area.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    rx, ry = box["width"] * 0.3, box["height"] * 0.3
    pts = [(cx + rx * math.cos(2 * math.pi * k / 24), cy + ry * math.sin(2 * math.pi * k / 24)) for k in range(25)]
    page.mouse.move(*pts[0])
    page.mouse.down()
    for p in pts[1:]:
        page.mouse.move(*p, steps=3)
    page.mouse.up()


def test_select_points_see_the_gallery_open_one_in_feature_maps(app_page, app_url, artifacts):
    page = app_page
    goto_via_sidebar(page, app_url, "projector", timeout_ms=240_000)
    page.locator(CHART).wait_for(state="visible", timeout=240_000)   # the features and PCA job finished
    wait_idle(page, 240_000)
    text = main_text(page)
    assert "500 of the 500 digits test images" in text and "laid out by PCA in 2-D" in text
    page.screenshot(path=str(artifacts / "browser-projector.png"))
    _lasso(page)
    page.get_by_text(re.compile(r"\d+ selected")).first.wait_for(timeout=60_000)
    wait_idle(page)
    text = main_text(page)
    n = int(re.search(r"([\d,]+) selected", text).group(1).replace(",", ""))
    assert n > 5, text[-400:]
    thumbs = page.locator(f"{MAIN} [data-testid='stImage']")
    assert thumbs.count() >= min(n, 8)
    page.screenshot(path=str(artifacts / "browser-projector-gallery.png"))
    assert not exceptions(page)
    # open the first image of the gallery in Feature maps
    button = page.locator(f"{MAIN} [class*='st-key-pj_open_'] button").first
    idx = re.search(r"st-key-pj_open_(\d+)", button.evaluate(
        "el => el.closest(\"[class*='st-key-pj_open_']\").className")).group(1)
    caption = page.locator(f"{MAIN} [data-testid='stImage']").first.inner_text()
    true = re.match(rf"#{idx}: (\d)", caption.strip())   # the first thumbnail is the first button's image
    assert true, (idx, caption)
    assert button.inner_text().strip() == "Open"
    button.click()
    page.wait_for_url(f"{app_url}/feature-maps", timeout=120_000)
    wait_idle(page, 120_000)
    side = sidebar_text(page)
    assert f"test image #{idx} of digits ({true.group(1)})" in side, side[-300:]
    fm = main_text(page)
    assert "lenet5-digits.safetensors" in fm or "digits" in fm
    assert "Top-5" in fm and not exceptions(page)
    page.screenshot(path=str(artifacts / "browser-projector-feature-maps.png"))
