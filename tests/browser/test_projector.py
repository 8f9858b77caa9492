"""Real-browser test of the Projector: the shipped digits LeNet5's test set laid out (computed in the
background, the page polling until it is done), the mouse on a point shows that point's picture (its
tile of the sprite sheet) and classes in a box by the mouse, a lasso drawn with the mouse over the
plotly scatter selects points, their images appear as a gallery, and "Open" makes one of them the
input of the Feature maps page, read by the same weights. Screenshots land in test-artifacts/."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest
from PIL import Image

from cnnviz import data

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


HOVER = f"{MAIN} .cnnviz-hover"

# the most isolated point of the 2-D scatter (so the mouse on it hovers it, not a neighbour): its
# position on the screen from plotly's own axes (_fullLayout) and the drawn data (_fullData)
_ISOLATED_POINT = """() => {
  const gd = document.querySelector('.st-key-pj_scatter_box .js-plotly-plot');
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
  const pts = [];
  gd._fullData.forEach((t) => { for (let i = 0; i < t.x.length; i++) {
    pts.push({x: r.left + xa._offset + xa.l2p(t.x[i]), y: r.top + ya._offset + ya.l2p(t.y[i]),
              index: Number(t.customdata[i][0]), tile: Number(t.customdata[i][1]), text: t.hovertext[i]}); } });
  let best = null, bestD = -1;
  for (const p of pts) {
    let d = Infinity;
    for (const q of pts) { if (q !== p) d = Math.min(d, Math.hypot(p.x - q.x, p.y - q.y)); }
    if (d > bestD) { bestD = d; best = p; }
  }
  return {...best, gap: bestD};
}"""


def _hover_a_point(page, artifacts) -> None:
    """The mouse on a point: the box by the mouse shows that point's tile of the sprite sheet and its classes."""
    box = page.locator(HOVER)
    box.wait_for(state="attached")
    page.wait_for_function("(sel) => { const b = document.querySelector(sel); return b && "
                           "b.dataset.attached === 'yes' && b.dataset.sprite === 'loaded'; }", arg=HOVER)
    assert not box.is_visible()
    page.locator(CHART).scroll_into_view_if_needed()
    p = page.evaluate(_ISOLATED_POINT)
    assert p["gap"] > 4, p          # a point the mouse can single out
    page.mouse.move(p["x"] - 40, p["y"] - 40)
    page.mouse.move(p["x"], p["y"], steps=4)
    box.wait_for(state="visible", timeout=10_000)
    assert box.get_attribute("data-index") == str(p["index"]) and box.get_attribute("data-tile") == str(p["tile"])
    assert box.inner_text().startswith(f"#{p['index']}: "), box.inner_text()
    thumb = page.locator(f"{HOVER} .cnnviz-hover-thumb")
    style = thumb.evaluate("el => { const s = getComputedStyle(el); return {w: el.offsetWidth, "
                           "image: s.backgroundImage, position: s.backgroundPosition, size: s.backgroundSize}; }")
    assert style["w"] == 96 and "/media/" in style["image"], style
    # the tile's place in the sheet: tile i at (-(i % cols), -(i // cols)) tiles, 96 px each on screen
    sheet_w = float(style["size"].split("px")[0])
    cols = round(sheet_w / 96)
    want = f"{-(p['tile'] % cols) * 96}px {-(p['tile'] // cols) * 96}px"
    assert style["position"] == want.replace("-0px", "0px"), (style, want)
    # what the box shows is that test image: its screenshot, back at 28x28, matches the digit's pixels
    shot = Image.open(io.BytesIO(thumb.screenshot())).convert("L").resize((28, 28), Image.Resampling.BOX)
    digit = data.load_dataset("digits", "test").images[p["index"], 0].numpy().astype(float)
    assert np.corrcoef(np.asarray(shot, float).ravel(), digit.ravel())[0, 1] > 0.9
    bb, mouse = box.bounding_box(), (p["x"], p["y"])
    assert abs(bb["x"] + bb["width"] / 2 - mouse[0]) < 250 and abs(bb["y"] + bb["height"] / 2 - mouse[1]) < 250
    page.screenshot(path=str(artifacts / "browser-projector-hover.png"))
    page.mouse.move(5, 5)           # off the chart: the box goes
    box.wait_for(state="hidden", timeout=10_000)


def test_select_points_see_the_gallery_open_one_in_feature_maps(app_page, app_url, artifacts):
    page = app_page
    media = []
    page.on("request", lambda r: media.append(r.url) if "/media/" in r.url and r.url.endswith(".png") else None)
    goto_via_sidebar(page, app_url, "projector", timeout_ms=240_000)
    page.locator(CHART).wait_for(state="visible", timeout=240_000)   # the features and PCA job finished
    wait_idle(page, 240_000)
    text = main_text(page)
    assert "500 of the 500 digits test images" in text and "laid out by PCA in 2-D" in text
    page.screenshot(path=str(artifacts / "browser-projector.png"))
    _hover_a_point(page, artifacts)
    _lasso(page)
    page.get_by_text(re.compile(r"\d+ selected")).first.wait_for(timeout=60_000)
    wait_idle(page)
    text = main_text(page)
    n = int(re.search(r"([\d,]+) selected", text).group(1).replace(",", ""))
    assert n > 5, text[-400:]
    thumbs = page.locator(f"{MAIN} [data-testid='stImage']")
    assert thumbs.count() >= min(n, 8)
    page.screenshot(path=str(artifacts / "browser-projector-gallery.png"))
    # the sprite sheet was fetched once, though the selection reran the page (and mounted the component again)
    sheet = page.locator(f"{HOVER} .cnnviz-hover-thumb").evaluate("el => getComputedStyle(el).backgroundImage")
    assert sum(1 for u in media if u in sheet) == 1, (sheet, media)
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


def test_the_3d_view_shows_the_picture_on_hover_too(app_page, app_url, artifacts):
    """3-D: the mouse swept over the middle of the rotatable scene; the first point it hovers shows its picture
    (plotly draws the scene with WebGL, so the point under the mouse is plotly's pick, not computed here)."""
    page = app_page
    goto_via_sidebar(page, app_url, "projector", timeout_ms=240_000)
    page.locator(CHART).wait_for(state="visible", timeout=240_000)
    wait_idle(page, 240_000)
    page.locator(f"{MAIN} .st-key-pj_dim").get_by_text("3-D", exact=True).click()
    page.locator(f"{MAIN} .st-key-pj_scatter3d_box .js-plotly-plot").wait_for(state="visible", timeout=240_000)
    wait_idle(page, 240_000)
    assert "laid out by PCA in 3-D" in main_text(page)
    box = page.locator(HOVER)
    page.wait_for_function("(sel) => { const b = document.querySelector(sel); return b && "
                           "b.dataset.attached === 'yes' && b.dataset.sprite === 'loaded'; }", arg=HOVER)
    scene = page.locator(f"{MAIN} .st-key-pj_scatter3d_box .js-plotly-plot .gl-container").first
    scene.scroll_into_view_if_needed()
    bb = scene.bounding_box()
    cx, cy = bb["x"] + bb["width"] / 2, bb["y"] + bb["height"] / 2
    # a spiral out from the scene's centre, a few pixels a step, until plotly reports a hover
    for k in range(400):
        r, a = 2 + k * 0.6, k * 0.5
        page.mouse.move(cx + r * math.cos(a), cy + r * math.sin(a))
        if box.is_visible():
            break
    box.wait_for(state="visible", timeout=10_000)
    idx, tile = box.get_attribute("data-index"), box.get_attribute("data-tile")
    assert box.inner_text().startswith(f"#{idx}: ") and int(tile) >= 0
    thumb = page.locator(f"{HOVER} .cnnviz-hover-thumb")
    shot = Image.open(io.BytesIO(thumb.screenshot())).convert("L").resize((28, 28), Image.Resampling.BOX)
    digit = data.load_dataset("digits", "test").images[int(idx), 0].numpy().astype(float)
    assert np.corrcoef(np.asarray(shot, float).ravel(), digit.ravel())[0, 1] > 0.9
    page.screenshot(path=str(artifacts / "browser-projector-hover-3d.png"))
    assert not exceptions(page)
