"""AppTest: the BatchNorm page renders with the default image and its controls change the output."""

from __future__ import annotations

from PIL import Image
from streamlit.testing.v1 import AppTest

from .pagetest import ok, open_page, page_path

PAGE = page_path("batchnorm")


def _metric(at, label: str) -> float:
    return float(next(m.value for m in at.metric if m.label == label))


def test_batchnorm_controls_change_output():
    at = open_page(PAGE, timeout=90, clean=True)
    assert "— the same" in at.success[0].value
    code = [c.value for c in at.code]
    diff10 = _metric(at, "max |train − eval| output")

    at.slider(key="bn_gamma_0").set_value(2.0).run()
    ok(at)
    assert "γ = 2.0000" in at.code[-1].value  # the worked pixel (channel 0) uses gamma = 2
    assert "— the same" in at.success[0].value

    at.slider(key="bn_passes").set_value(40).run()
    ok(at)
    assert [c.value for c in at.code][0] != code[0]
    assert "pass 40" in at.code[0].value
    assert _metric(at, "max |train − eval| output") < diff10  # running stats have converged further

    at.radio(key="bn_px_mode").set_value("eval").run()
    ok(at)
    assert "nn.BatchNorm2d in eval mode" in at.success[0].value and "— the same" in at.success[0].value

    at.checkbox(key="bn_track").uncheck().run()
    ok(at)
    assert _metric(at, "max |train − eval| output") == 0.0
    assert any("keeps no running statistics" in i.value for i in at.info)

    at.slider(key="bn_crops").set_value(0).run()
    at.multiselect(key="bn_others").set_value([]).run()
    ok(at)
    assert "The batch: 1 images" not in at.get("image")[0].captions[0]
    assert "1 image × (1 resized + 0 crops)" in at.get("image")[0].captions[0]


def test_tiny_image_works():
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.session_state["cnnviz_image"] = Image.new("RGB", (1, 1), (10, 200, 30))
    at.run()
    ok(at)
