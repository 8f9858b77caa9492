"""Every page that uses the sidebar image, fed a 1x1 image and extreme aspect ratios: it either
works (shows a picture) or says why in a message; never an exception."""

from __future__ import annotations

import pytest
from PIL import Image

from .pagetest import PAGES_DIR, open_page

PAGES = sorted(p.name for p in PAGES_DIR.glob("*.py")
               if "current_image(" in p.read_text(encoding="utf-8"))

ODD = {
    "1x1": Image.new("RGB", (1, 1), (10, 200, 30)),
    "1x384": Image.linear_gradient("L").resize((1, 384)).convert("RGB"),
    "384x2": Image.linear_gradient("L").rotate(90).resize((384, 2)).convert("RGB"),
    "3x3": Image.new("RGB", (3, 3), (250, 10, 10)),
}


def test_the_pages_using_the_image_are_found():
    assert {"convolution.py", "upsample_pooling.py", "batchnorm.py", "augmentation.py",
            "feature_maps.py"} <= set(PAGES)


@pytest.mark.parametrize("kind", sorted(ODD))
@pytest.mark.parametrize("page", PAGES)
def test_odd_image_works_or_says_why(page, kind):
    at = open_page(page, state={"cnnviz_image": ODD[kind], "cnnviz_image_label": f"odd {kind}"}, run=False)
    at.run()
    assert not at.exception, f"{page} with a {kind} image: {at.exception[0].value if at.exception else ''}"
    shown = len(at.get("image")) + len(at.get("plotly_chart"))
    said = [m.value for m in list(at.error) + list(at.warning) + list(at.info)]
    assert shown or said, f"{page} with a {kind} image shows nothing and says nothing"
