"""Real-browser test of the link from Feature maps to the Microscope's channel page, and back with an
exemplar image: the shipped LeNet5's channel chosen on Feature maps opens in the Microscope (same
model, weights, layer and channel), its Channel tab shows the most and least activating test images,
and "Open this image in Feature maps" makes that test image the input there. Screenshots land in
test-artifacts/.
"""

from __future__ import annotations

import re

import pytest

from cnnviz.inspect.loading import shipped_checkpoints

from .server import exceptions, goto_via_sidebar, main_text, sidebar_text, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600),
              pytest.mark.skipif("lenet5" not in shipped_checkpoints(), reason="the shipped LeNet5 is missing")]

MAIN = '[data-testid="stMain"]'


def test_a_channel_of_feature_maps_opens_in_the_microscope_and_an_exemplar_comes_back(app_page, app_url,
                                                                                       artifacts):
    page = app_page
    goto_via_sidebar(page, app_url, "feature-maps")
    assert not exceptions(page)
    button = page.locator(f"{MAIN} .st-key-fm_open_microscope button").first
    channel = int(re.search(r"Open channel (\d+) in the Microscope", button.inner_text()).group(1))
    button.click()
    page.wait_for_url(re.compile(r"/microscope$"), timeout=90_000)
    wait_idle(page)
    assert not exceptions(page)
    page.locator(MAIN).get_by_role("tab", name="Channel").click()
    heading = page.locator(MAIN).get_by_text(re.compile(rf"conv_unit\.0 channel {channel} · lenet5"))
    heading.wait_for(timeout=90_000)
    wait_idle(page)
    text = main_text(page)
    assert "Opened from Feature maps" in text
    assert f"peak activation of channel {channel}" in text and "Most" in text and "Least" in text
    assert page.locator(f"{MAIN} [data-testid='stImage'] img").count() >= 17  # filters + 2 x 8 exemplars
    page.screenshot(path=str(artifacts / "microscope-channel.png"), full_page=True)
    page.locator(f"{MAIN} .st-key-ms_open_image button").first.click()
    page.wait_for_url(re.compile(r"/feature-maps$"), timeout=90_000)
    wait_idle(page)
    assert not exceptions(page)
    assert re.search(r"test #\d+", sidebar_text(page)), sidebar_text(page)[-300:]
    assert re.search(r"input: \S+ test #\d+", main_text(page))
