"""A drawing made into an MNIST-style digit (cnnviz.images.drawing), against hand-made cases, and
the model input made from it (cnnviz.inspect.features.digit_input)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from cnnviz.images import drawing as G
from cnnviz.images import prepare_digit
from cnnviz.inspect import features

SIDE = 196  # the sidebar canvas


def _canvas(paper="white") -> tuple[Image.Image, ImageDraw.ImageDraw]:
    im = Image.new("RGB", (SIDE, SIDE), paper)
    return im, ImageDraw.Draw(im)


def _ink_box(a: np.ndarray, level: int = 0) -> tuple[int, int]:
    """(height, width) of the pixels above `level`."""
    rows, cols = np.nonzero((a > level).any(1))[0], np.nonzero((a > level).any(0))[0]
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def test_a_centred_dot_fills_the_20px_box_with_its_centre_of_mass_at_14_14():
    """(14, 14) within half a pixel: MNIST moves digits by whole pixels, and a symmetric 20x20 patch
    has its centre of mass at 9.5."""
    im, d = _canvas()
    d.ellipse((88, 88, 108, 108), fill="black")
    p = prepare_digit(im)
    assert not p.empty and p.inverted and p.background == 255
    assert p.pixels.shape == (28, 28) and p.pixels.dtype == np.uint8
    assert p.box == (88, 88, 109, 109) and p.fitted == (20, 20)
    assert p.scale == pytest.approx(20 / 21)
    cx, cy = G.centre_of_mass(p.pixels.astype(float))
    assert abs(cx - 14) <= 0.5 and abs(cy - 14) <= 0.5
    assert 19 <= _ink_box(p.pixels, 20)[0] <= 20 and 19 <= _ink_box(p.pixels, 20)[1] <= 20
    assert p.pixels.max() == 255 and p.pixels[0].max() == 0 and p.pixels[:, 0].max() == 0  # black margins
    assert "inverted to white on black" in p.describe() and "scaled by 0.952 to 20x20" in p.describe()


def test_an_off_centre_stroke_is_scaled_and_centred_like_the_same_stroke_in_the_middle():
    corner, d = _canvas()
    d.line((30, 20, 30, 90), fill="black", width=12)        # top left, 71 px tall
    middle, d = _canvas()
    d.line((98, 60, 98, 130), fill="black", width=12)
    a, b = prepare_digit(corner), prepare_digit(middle)
    assert np.array_equal(a.pixels, b.pixels)                # only the strokes count, not where they are
    assert a.box[1] == 20 and a.box[3] == 91 and a.box[0] < 30 < a.box[2]   # the box is where it was drawn
    assert a.fitted[1] == 20 and a.fitted[0] < 6             # the long side becomes 20, aspect kept
    h, w = _ink_box(a.pixels, 20)
    assert h in (19, 20) and w <= 6
    cx, cy = G.centre_of_mass(a.pixels.astype(float))
    assert abs(cx - 14) <= 0.5 and abs(cy - 14) <= 0.5


def test_an_empty_canvas_is_empty():
    im, _ = _canvas()
    p = prepare_digit(im)
    assert p.empty and not p.pixels.any() and p.box is None
    assert "no ink found" in p.describe()


def test_a_canvas_with_only_a_border_is_empty():
    for width in (1, 3, 5):
        im, d = _canvas()
        d.rectangle((0, 0, SIDE - 1, SIDE - 1), outline="black", width=width)
        assert prepare_digit(im).empty, width
    # ...but a stroke inside the frame is read, the frame ignored
    im, d = _canvas()
    d.rectangle((0, 0, SIDE - 1, SIDE - 1), outline="black", width=4)
    d.line((98, 60, 98, 130), fill="black", width=12)
    plain, d = _canvas()
    d.line((98, 60, 98, 130), fill="black", width=12)
    assert np.array_equal(prepare_digit(im).pixels, prepare_digit(plain).pixels)


def test_faint_noise_is_no_digit_and_light_ink_on_black_is_kept():
    rng = np.random.default_rng(0)
    grey = Image.fromarray((128 + rng.integers(-10, 11, (SIDE, SIDE))).astype(np.uint8), "L")
    assert prepare_digit(grey).empty
    dark, d = _canvas("black")
    d.line((98, 60, 98, 130), fill="white", width=12)
    light, d = _canvas()
    d.line((98, 60, 98, 130), fill="black", width=12)
    p = prepare_digit(dark)
    assert not p.inverted and np.array_equal(p.pixels, prepare_digit(light).pixels)


def test_transparent_paper_counts_as_white():
    rgba = Image.new("RGBA", (SIDE, SIDE), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).line((98, 60, 98, 130), fill=(0, 0, 0, 255), width=12)
    white, d = _canvas()
    d.line((98, 60, 98, 130), fill="black", width=12)
    assert np.array_equal(prepare_digit(rgba).pixels, prepare_digit(white).pixels)


def test_mnists_own_digits_come_back_unchanged():
    """MNIST made its digits this way, so preparing one of them again changes (almost) nothing."""
    from cnnviz import data

    test = data.load_dataset("digits", "test")
    corr = []
    for x in test.images[:, 0].numpy():
        y = prepare_digit(Image.fromarray(x)).pixels
        corr.append(np.corrcoef(x.ravel().astype(float), y.ravel().astype(float))[0, 1])
    assert np.mean(corr) > 0.98 and np.median(corr) > 0.995


def test_digit_input_is_resized_and_normalised_like_training():
    from cnnviz.train.device_data import Normalizer, resize_uint8

    im, d = _canvas()
    d.ellipse((50, 30, 150, 170), outline="black", width=16)
    p = prepare_digit(im)
    x, small = features.digit_input(p.pixels, 32, (0.1307,), (0.3081,))
    assert tuple(x.shape) == (1, 1, 32, 32) and small.size == (32, 32)
    batch = resize_uint8(torch.from_numpy(p.pixels)[None, None], (32, 32))
    want = Normalizer((0.1307,), (0.3081,), torch.device("cpu")).from_uint8(batch)
    assert torch.allclose(x, want, atol=1e-5)
    same, _ = features.digit_input(p.pixels, 28, (0.5,), (0.5,))
    assert torch.allclose(same[0, 0], torch.from_numpy(p.pixels).float() / 255 * 2 - 1)
    three, _ = features.digit_input(p.pixels, 32, (0.1, 0.2, 0.3), (1.0, 1.0, 1.0), in_channels=3)
    assert tuple(three.shape) == (1, 3, 32, 32) and not torch.equal(three[0, 0], three[0, 2])
