"""AppTest: the Convolution page renders with the default image and its controls change the output."""

from __future__ import annotations

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from .pagetest import ok, open_page, page_path

PAGE = page_path("convolution")


def _images(at) -> list:
    return list(at.get("image"))


@pytest.fixture()
def at() -> AppTest:
    return open_page(PAGE, timeout=90, clean=True)


def test_default_render_and_controls_change_output(at):
    imgs = _images(at)
    assert len(imgs) == 5  # input, output, signed, receptive field x2
    out_url = imgs[1].value[0]
    assert "the same" in at.success[0].value
    assert "H_out = floor(" in at.markdown[-1].value or any("H_out = floor(" in m.value for m in at.markdown)

    at.selectbox(key="conv_preset").set_value("box blur").run()
    ok(at)
    assert _images(at)[1].value[0] != out_url
    assert "the same" in at.success[0].value

    before = [m.value for m in at.markdown if "H_out" in m.value][0]
    at.slider(key="conv_stride").set_value(2).run()
    ok(at)
    after = [m.value for m in at.markdown if "H_out" in m.value][0]
    assert before != after and "/ 2) + 1" in after
    params_before = at.metric[1].value
    at.select_slider(key="conv_k").set_value(4).run()  # even kernel
    ok(at)
    assert "4×4" in at.caption[1].value
    assert at.metric[0].value == "51"  # 4·4·1·3 + 3, depthwise
    assert at.metric[1].value != params_before  # one more output row and column
    at.radio(key="conv_apply").set_value("Grayscale").run()
    ok(at)
    assert "grayscale" in _images(at)[0].captions[0]
    assert at.metric[0].value == "17"  # 4·4·1·1 + 1


def test_tiny_image_and_bad_padding_say_why():
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.session_state["cnnviz_image"] = Image.new("RGB", (1, 1), (10, 200, 30))
    at.run()
    ok(at)  # 3x3 kernel with padding 1 fits a 1x1 image
    at.slider(key="conv_padding").set_value(0).run()
    assert not at.exception
    assert "image smaller than the kernel" in at.error[0].value
    at.slider(key="conv_padding").set_value(3).run()
    at.selectbox(key="conv_pad_mode").set_value("reflect").run()
    assert not at.exception
    assert "reflect padding needs padding < the image side" in at.error[0].value


def test_shown_output_pixel_equals_a_hand_computed_dilated_strided_reflect_convolution():
    """The page's 'PyTorch's output at (r, c)' against plain numpy: Sobel x, stride 2, padding 2 (reflect),
    dilation 2, bias 0.25, channel G, output pixel (5, 7) of the image the page convolves."""
    import re

    import numpy as np

    at = open_page(PAGE, timeout=90, clean=True)
    at.slider(key="conv_stride").set_value(2)
    at.slider(key="conv_padding").set_value(2)
    at.slider(key="conv_dilation").set_value(2)
    at.selectbox(key="conv_pad_mode").set_value("reflect")
    at.number_input(key="conv_bias").set_value(0.25)
    at.run()
    at.number_input(key="conv_rf_row").set_value(5)
    at.number_input(key="conv_rf_col").set_value(7)
    at.selectbox(key="conv_rf_ch").set_value(1)
    at.run()
    ok(at)
    shown = re.search(r"PyTorch's output at \(5, 7\) is \*\*(-?[\d.]+)\*\*", at.success[0].value)
    assert shown, at.success[0].value
    sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
    g = np.asarray(at.session_state["cnnviz_image"].convert("RGB"), dtype=np.float64)[:, :, 1] / 255
    padded = np.pad(g, 2, mode="reflect")
    s, d, r, c = 2, 2, 5, 7
    want = sum(sobel_x[i, j] * padded[r * s + i * d, c * s + j * d] for i in range(3) for j in range(3)) + 0.25
    assert abs(float(shown.group(1)) - want) < 1e-5, (shown.group(1), want)
    h, w = g.shape
    assert f"PyTorch's output is {(h + 4 - 4 - 1) // 2 + 1}×{(w + 4 - 4 - 1) // 2 + 1}" in \
        " ".join(cap.value for cap in at.caption)
