"""Real-browser test of draw-your-own input: strokes drawn with the mouse on the sidebar canvas
(streamlit-drawable-canvas in headless chromium) become the input; the Feature maps page reads
them with the shipped digits LeNet5 (a vertical line is a 1, a closed loop a 0), the canvas
toolbar's undo and clear empty it (a hint, no prediction), and the drawing reaches the
Convolution page. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import math

import pytest

from .server import exceptions, goto_via_sidebar, main_text, sidebar_text, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

SIDEBAR = '[data-testid="stSidebar"]'
CANVAS = f"{SIDEBAR} .st-key-sidebar_canvas canvas.upper-canvas"
READING = '[data-testid="stMain"] [data-testid="stMetricValue"]'
PRIMARY_SAMPLE = f'{SIDEBAR} .st-key-cnnviz_gallery [data-testid="stBaseButton-primary"]:visible'


def _open_canvas(page) -> tuple[float, float, float, float]:
    """Open the 'Or draw one' expander; the canvas's box once it has stopped moving (the expander
    animates open): the same position for 5 animation frames in a row."""
    page.locator(SIDEBAR).get_by_text("Or draw one").click()
    canvas = page.locator(CANVAS)
    canvas.wait_for(state="visible")
    canvas.scroll_into_view_if_needed()
    box = canvas.evaluate("""async (el) => {
        let last = '', same = 0;
        while (same < 5) {
            await new Promise(r => requestAnimationFrame(r));
            const r = el.getBoundingClientRect();
            const key = [r.x, r.y, r.width, r.height].join(',');
            same = key === last ? same + 1 : 0;
            last = key;
        }
        const r = el.getBoundingClientRect();
        return [r.x, r.y, r.width, r.height];
    }""")
    return tuple(box)


def _stroke(page, points: list[tuple[float, float]]) -> None:
    """Press, move through `points`, release: one freehand stroke; then wait for the rerun."""
    page.mouse.move(*points[0])
    page.mouse.down()
    for p in points[1:]:
        page.mouse.move(*p, steps=4)
    page.mouse.up()
    wait_idle(page)


def _toolbar(page, box, name: str) -> None:
    """Click a button of the canvas toolbar (it shows while the pointer is over the canvas)."""
    x, y, w, h = box
    page.mouse.move(x + w / 2, y + h / 2)
    button = page.locator(SIDEBAR).get_by_role("button", name=name, exact=True)
    button.wait_for(state="visible")
    button.click()
    wait_idle(page)


def _hint(page) -> None:
    """Wait for the empty-canvas hint (the rerun after an undo or a clear)."""
    page.locator('[data-testid="stMain"]').get_by_text("Nothing to read yet").wait_for(state="visible")


def _reading(page) -> str:
    metric = page.locator(READING)
    metric.first.wait_for(state="visible")
    return metric.first.inner_text().strip()


def test_drawn_digits_are_read_and_reach_the_convolution_page(app_page, app_url, artifacts):
    page = app_page
    goto_via_sidebar(page, app_url, "feature-maps")
    box = _open_canvas(page)
    x, y, w, h = box

    # a vertical line: the shipped digits model switches in and reads a 1
    _stroke(page, [(x + w / 2, y + 0.25 * h), (x + w / 2, y + 0.85 * h)])
    assert _reading(page) == "1", main_text(page)[:2000]
    assert "Using your drawing, 196×196 px" in sidebar_text(page), sidebar_text(page)
    assert page.locator(PRIMARY_SAMPLE).count() == 0  # no sample is highlighted while the drawing is in use
    text = main_text(page)
    assert "lenet5-digits.safetensors" in text and "The model reads" in text, text[:2000]
    assert page.locator('[data-testid="stMain"]').get_by_role("radio", name="Trained (shipped, digits)").is_checked()
    assert "what the model reads: 28x28" in main_text(page)
    page.screenshot(path=str(artifacts / "browser-digits-one.png"))

    # undo: an empty canvas gets a hint, not a prediction
    _toolbar(page, box, "Undo")
    _hint(page)
    text = main_text(page)
    assert "Nothing to read yet" in text and "No predictions for an empty canvas" in text, text[:2000]
    assert page.locator(READING).count() == 0
    assert "Using your drawing (empty)" in sidebar_text(page)

    # a closed loop reads as 0
    loop = [(x + w / 2 + 0.28 * w * math.sin(a), y + 0.55 * h - 0.33 * h * math.cos(a))
            for a in (2 * math.pi * i / 32 for i in range(33))]
    _stroke(page, loop)
    assert _reading(page) == "0", main_text(page)[:2000]
    page.screenshot(path=str(artifacts / "browser-digits-zero.png"))
    # a wider brush for the next strokes leaves the drawing as it is
    brush = page.locator(f"{SIDEBAR} .st-key-sidebar_brush").get_by_role("slider")
    brush.focus()
    page.keyboard.press("ArrowRight")
    wait_idle(page)
    assert "20" in page.locator(f"{SIDEBAR} .st-key-sidebar_brush").inner_text()
    assert "Using your drawing, 196×196 px" in sidebar_text(page) and _reading(page) == "0"
    assert not exceptions(page)

    # the drawing is the input of the other pages too
    goto_via_sidebar(page, app_url, "convolution")
    assert not exceptions(page)
    assert "Using your drawing, 196×196 px" in sidebar_text(page)
    assert "Input: your drawing" in main_text(page), main_text(page)[:2000]
    page.screenshot(path=str(artifacts / "browser-digits-convolution.png"))

    # back on Feature maps, the loop is still read; the bin clears it
    goto_via_sidebar(page, app_url, "feature-maps")
    assert _reading(page) == "0"
    box = _open_canvas(page) if not page.locator(CANVAS).is_visible() else box
    _toolbar(page, box, "Reset canvas & history")
    _hint(page)
    # a sample click takes the input back from the drawing
    page.locator(SIDEBAR).get_by_role("button", name="Coffee", exact=True).click()
    wait_idle(page)
    assert "Using Coffee" in sidebar_text(page)
    assert page.locator(PRIMARY_SAMPLE).inner_text().strip() == "Coffee"
    assert not exceptions(page)
