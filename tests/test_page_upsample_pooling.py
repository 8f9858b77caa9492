"""AppTest: the Upsample & pooling page renders with the default image and its controls change the output."""

from __future__ import annotations

from PIL import Image
from streamlit.testing.v1 import AppTest

from .pagetest import ok, open_page, page_path

PAGE = page_path("upsample_pooling")


def _shapes(at) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("**Shapes:**")]


def test_upsample_and_pooling_controls():
    at = open_page(PAGE, timeout=90, clean=True)
    im = at.session_state["cnnviz_image"]
    w, h = im.size
    up, pooled = _shapes(at)
    assert f"(1,3,{h},{w}) → (1,3,{2 * h},{2 * w})" in up
    assert f"(1,3,{h},{w}) → (1,3,{h // 2},{w // 2})" in pooled
    crops = [i.value[0] for i in at.get("image")]

    at.selectbox(key="up_mode").set_value("bicubic").run()
    ok(at)
    assert "mode='bicubic'" in _shapes(at)[0]
    assert [i.value[0] for i in at.get("image")][1] != crops[1]
    at.checkbox(key="up_align").check().run()
    ok(at)
    assert "align_corners=True" in _shapes(at)[0]
    at.selectbox(key="up_mode").set_value("area").run()
    ok(at)
    assert at.checkbox(key="up_align").disabled and "align_corners" not in _shapes(at)[0]
    at.select_slider(key="up_scale").set_value(1.5).run()
    ok(at)
    assert f"(1,3,{int(h * 1.5)},{int(w * 1.5)})" in _shapes(at)[0]

    mse = at.metric[-2].value
    at.radio(key="pool_rt_mode").set_value("max unpool").run()
    ok(at)
    assert at.metric[-2].value != mse
    at.selectbox(key="pool_kind").set_value("avg").run()
    ok(at)
    assert "F.avg_pool2d" in _shapes(at)[1]
    at.slider(key="pool_kernel").set_value(3).run()
    at.slider(key="pool_padding").set_value(1).run()
    ok(at)
    assert f"(1,3,{(h + 2 - 3) // 2 + 1},{(w + 2 - 3) // 2 + 1})" in _shapes(at)[1]
    at.slider(key="pool_padding").set_value(2).run()
    assert not at.exception
    assert "padding must be at most half the kernel size" in at.error[0].value


def test_tiny_image_says_why():
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.session_state["cnnviz_image"] = Image.new("RGB", (1, 1), (10, 200, 30))
    at.run()
    assert not at.exception
    assert _shapes(at)[0].count("(1,3,2,2)") == 1  # upsampling a single pixel works
    assert "image smaller than the window" in at.error[0].value


def _np_image(at):
    import numpy as np

    return np.asarray(at.session_state["cnnviz_image"].convert("RGB"), dtype=np.float64).transpose(2, 0, 1) / 255


def test_round_trip_mse_equals_a_hand_computed_one():
    """The MSE the page shows for 2x2 max pooling (stride 2) and back, against plain numpy: nearest
    upsampling (each output pixel takes the pooled value of its window) and max unpool (each window's
    maximum back at its place, zeros elsewhere: ties do not change the error)."""
    import numpy as np

    at = open_page(PAGE, timeout=90, clean=True)
    x = _np_image(at)
    c, h, w = x.shape
    ph, pw = h // 2, w // 2
    windows = x[:, :2 * ph, :2 * pw].reshape(c, ph, 2, pw, 2)
    pooled = windows.max(axis=(2, 4))
    rows = np.minimum((np.arange(h) * ph) // h, ph - 1)
    cols = np.minimum((np.arange(w) * pw) // w, pw - 1)
    nearest = pooled[:, rows][:, :, cols]
    unpooled = np.zeros_like(x)
    flat = windows.transpose(0, 1, 3, 2, 4).reshape(c, ph, pw, 4)
    first = flat.argmax(axis=-1)
    ci, yi, xi = np.meshgrid(np.arange(c), np.arange(ph), np.arange(pw), indexing="ij")
    unpooled[ci, 2 * yi + first // 2, 2 * xi + first % 2] = pooled
    want = {"nearest": float(((x - nearest) ** 2).mean()), "max unpool": float(((x - unpooled) ** 2).mean())}

    def shown() -> float:
        return float(next(m.value for m in at.metric if m.label == "MSE"))

    assert at.radio(key="pool_rt_mode").value == "nearest"
    assert abs(shown() - want["nearest"]) <= 6e-6, (shown(), want)
    at.radio(key="pool_rt_mode").set_value("max unpool").run()
    ok(at)
    assert abs(shown() - want["max unpool"]) <= 6e-6, (shown(), want)
    assert want["max unpool"] != want["nearest"]
