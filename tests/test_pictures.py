"""ui/pictures.py: a picture is encoded once, into exactly the bytes st.image would have sent.

Compared with Streamlit's own encoding path (its private helpers in image_utils, so a Streamlit
upgrade that changes them fails here instead of changing what the pages send)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from streamlit.elements.lib import image_utils
from streamlit.elements.lib.layout_utils import LayoutConfig

from ui import pictures


def _image(mode: str, size=(300, 200), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    bands = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if bands == 1 else arr, mode)


def _what_streamlit_sends(im: Image.Image, width) -> bytes:
    """st.image(im, width=width)'s bytes, through Streamlit's own steps."""
    fmt = image_utils._validate_image_format_string(im, "auto")
    data = image_utils._pil_to_bytes(im, fmt)
    fmt = image_utils._validate_image_format_string(data, "auto" if fmt != "JPEG" else fmt)
    return image_utils._ensure_image_size_and_format(data, LayoutConfig(width=width), fmt)


@pytest.mark.parametrize("mode, width", [("RGB", "content"), ("RGB", "stretch"), ("RGBA", "stretch"),
                                         ("L", "content"), ("RGB", 120), ("RGBA", 120)])
def test_the_bytes_are_the_ones_st_image_would_send(mode, width):
    im = _image(mode)
    kw = pictures.picture(im, width=width)
    assert kw["width"] == width and kw["output_format"] == ("PNG" if mode == "RGBA" else "JPEG")
    assert kw["image"] == _what_streamlit_sends(im, width)
    shown = Image.open(io.BytesIO(kw["image"]))
    assert shown.format == kw["output_format"]
    assert shown.width == (120 if width == 120 else im.width)
    # st.image hands these bytes on untouched: right format, not wider than shown
    assert image_utils._ensure_image_size_and_format(kw["image"], LayoutConfig(width=width),
                                                      kw["output_format"]) is kw["image"]


def test_an_unchanged_picture_is_not_encoded_again_and_a_changed_one_is():
    im = _image("RGB", seed=1)
    first = pictures.encoded(im)
    again = pictures.encoded(im.copy())  # another object, the same pixels: the same bytes object
    assert again[0] is first[0]
    changed = im.copy()
    changed.putpixel((0, 0), (1, 2, 3) if im.getpixel((0, 0)) != (1, 2, 3) else (4, 5, 6))
    assert pictures.encoded(changed)[0] is not first[0]
    assert pictures.encoded(im, 100)[0] is not first[0]  # shown smaller: its own entry


def test_the_cache_stays_under_its_byte_limit(monkeypatch):
    monkeypatch.setattr(pictures, "MAX_BYTES", 200_000)
    for seed in range(10):  # ~100-180 KB each (noise does not compress)
        pictures.encoded(_image("RGB", seed=100 + seed))
    assert pictures._held <= 200_000 or len(pictures._cache) == 1
    assert pictures._held == sum(len(b) for b, _ in pictures._cache.values())


def test_anything_but_a_pil_image_passes_through():
    arr = np.zeros((4, 4, 3), dtype=np.uint8)
    assert pictures.picture(arr, width=50) == {"image": arr, "width": 50}
    assert pictures.picture("assets/x.png") == {"image": "assets/x.png", "width": "content"}
