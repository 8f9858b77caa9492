"""Real-browser test of the Design mode: build a three-layer net on the Architectures page, see the
error mark, apply its fix, save it, train it for one epoch on `shapes` from the Train page, open its
feature maps. Headless Debian chromium against `streamlit run app.py` (designs and runs go to the
test session's CNNVIZ_DESIGNS / CNNVIZ_RUNS)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from .server import exceptions, goto_via_sidebar, main_text, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

NAME = "tiny-browser-net"
MODEL = f"design:{NAME}.json"


def _choose(page, key: str, option: str) -> None:
    """Pick `option` in the selectbox with widget key `key` (1.67: a react-aria combobox)."""
    page.locator(f".st-key-{key} button[aria-label='Open']").click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def _fill(page, label: str, value: str, scope=None) -> None:
    box = (scope or page).get_by_label(label, exact=True)
    box.fill(value)
    box.press("Tab")  # commit (outside a form: one rerun)
    wait_idle(page)


def test_design_fix_save_train_and_open_feature_maps(app_page, app_url, artifacts):
    page = app_page
    goto_via_sidebar(page, app_url, "architectures")
    page.get_by_role("tab", name="Design your own").click()
    wait_idle(page)
    assert "40,010" in main_text(page)  # the LeNet5 preset is what the mode starts with
    page.screenshot(path=str(artifacts / "browser-design-lenet5.png"), full_page=True)

    # an empty design, then a conv and a linear: three layers once the fix has put a Flatten in
    _choose(page, "des_source", "preset: empty")
    page.locator(".st-key-des_load button").click()
    wait_idle(page)
    assert "No layers yet" in main_text(page)
    _fill(page, "Name", NAME)
    _choose(page, "des_add_type", "Conv2d")
    page.locator(".st-key-des_add button").click()
    wait_idle(page)
    _fill(page, "out channels", "8")
    _choose(page, "des_add_type", "Linear")
    page.locator(".st-key-des_add button").click()
    wait_idle(page)

    text = main_text(page)
    msg = "Layer 2 (Linear) needs a flat vector but receives a 8 x 32 x 32 map: insert a Flatten before it."
    assert msg in text
    alert = page.locator('[data-testid="stAlertContentError"]').filter(has_text="Layer 2 (Linear)")
    assert alert.count() >= 1
    assert "can't take 8 x 32 x 32" in text  # the mark in the row
    save = page.locator(".st-key-des_save").get_by_role("button", name=re.compile("Save as"))
    assert save.is_disabled()
    page.screenshot(path=str(artifacts / "browser-design-error.png"), full_page=True)

    page.get_by_role("button", name=re.compile("Insert a Flatten before layer 2")).click()
    wait_idle(page)
    text = main_text(page)
    assert "Applied: Insert a Flatten before layer 2." in text and msg not in text
    params = 8 * 3 * 3 * 3 + 8 + 8 * 32 * 32 * 10 + 10  # conv 3->8 k3 pad1, Linear(8192 -> 10)
    assert f"{params:,}" in text
    assert not page.locator('[data-testid="stAlertContentError"]').count()
    page.screenshot(path=str(artifacts / "browser-design-fixed.png"), full_page=True)

    assert save.is_enabled()
    save.click()
    wait_idle(page)
    assert f"Saved {NAME}.json" in main_text(page)
    saved = Path(os.environ["CNNVIZ_DESIGNS"]) / f"{NAME}.json"
    assert saved.is_file() and '"flatten"' in saved.read_text()

    # train it for one epoch on shapes, on a small subset
    goto_via_sidebar(page, app_url, "train")
    _choose(page, "train_model", f"{MODEL} (design)")
    for label, value in (("Epochs", 1), ("Train images (0 = all)", 512), ("Test images (0 = all)", 128)):
        box = page.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Tab")
    pattern = r"\d{8}-\d{6}-design-" + re.escape(NAME) + r"-json-shapes-[0-9a-f]{16}"
    page.get_by_role("button", name=re.compile("Start training")).click()
    deadline = time.time() + 240
    rid = None
    while time.time() < deadline:
        text = main_text(page)
        found = re.findall(pattern, text)
        if found:
            rid = found[0]
            m = re.search(re.escape(rid) + r"\s*·\s*(\w+)", text)
            if m and m.group(1) in ("finished", "error", "diverged"):
                break
        time.sleep(0.5)
    assert rid, main_text(page)[-2000:]
    assert re.search(re.escape(rid) + r"\s*·\s*finished", main_text(page)), main_text(page)[-2000:]
    assert not exceptions(page)

    # its feature maps, with the run's weights
    goto_via_sidebar(page, app_url, "feature-maps")
    _choose(page, "fm_model", f"{MODEL} (design, 32 px)")
    page.locator(f'[data-testid="stMain"] label').filter(has_text="A training run").first.click()
    wait_idle(page)
    text = main_text(page)
    assert re.search(re.escape(MODEL) + r" with .*epoch 1", text), text[:2000]
    assert "of the 8 channels of conv1 (Conv2d, 32x32 each)" in text
    assert "Top-5" in text
    assert not exceptions(page)
    page.screenshot(path=str(artifacts / "browser-design-feature-maps.png"), full_page=True)
