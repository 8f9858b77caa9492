"""cnnviz.images: every case of "Safe image input", each file built in memory.

Expected pixels come from independent computations (numpy rotations, the alpha-compositing
formula, the CMYK->RGB formula, a linear rescale), never from the loader itself.
"""

from __future__ import annotations

import contextlib
import io
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from cnnviz import images
from cnnviz.images import ImageLoadError, load_image, prepare

RNG = np.random.default_rng(0)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def assert_user_message(msg: str) -> None:
    """A message a user can read: a sentence, no Python class names, no object reprs."""
    assert msg and msg[0].isupper() and msg.rstrip().endswith("."), msg
    assert len(msg) < 200, msg
    assert not re.search(r"\w+(Error|Exception|Warning)\b", msg), msg
    assert "<" not in msg and "Traceback" not in msg and "PIL" not in msg, msg


def load_error(data, **kw) -> str:
    with pytest.raises(ImageLoadError) as info:
        load_image(data, **kw)
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert_user_message(msg)
    return msg


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height RGB pixels (no pixel data at all)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


# ---------------------------------------------------------------- orientation


@pytest.mark.parametrize("orientation, rotate", [(3, 2), (6, -1), (8, 1)])
def test_exif_orientation_moves_pixels(orientation, rotate):
    arr = RNG.integers(0, 256, (20, 40, 3), dtype=np.uint8)  # h=20, w=40: not square
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    raw = encode(Image.fromarray(arr), "PNG", exif=exif.tobytes())
    out = np.asarray(load_image(raw))
    # 3: rotate 180; 6: rotate 90 clockwise to display; 8: rotate 90 counter-clockwise
    np.testing.assert_array_equal(out, np.rot90(arr, k=rotate))


def test_exif_orientation_jpeg():
    arr = np.zeros((32, 64, 3), np.uint8)
    arr[:16, :16] = (255, 0, 0)  # a red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6
    out = load_image(encode(Image.fromarray(arr), "JPEG", quality=95, exif=exif.tobytes()))
    assert out.size == (32, 64)  # width and height swapped
    # 90 degrees clockwise: stored top-left lands at the displayed top-right
    r, g, b = out.getpixel((31 - 8, 8))
    assert r > 200 and g < 60 and b < 60
    assert max(out.getpixel((8, 8))) < 60


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
def test_damaged_exif_is_not_fatal():
    arr = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    raw = encode(Image.fromarray(arr), "PNG", exif=b"Exif\x00\x00MM\x00*garbage")
    out = load_image(raw)
    assert out.size == (8, 8)


# ---------------------------------------------------------------- modes


def test_palette_with_transparency_is_composited():
    p = Image.new("P", (2, 2), 0)
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    p.putpixel((1, 1), 1)
    out = load_image(encode(p, "PNG", transparency=0))  # index 0 (red) is transparent
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)  # transparent -> white background
    assert out.getpixel((1, 1)) == (0, 0, 255)
    assert "transparent" in out.info["note"]
    assert out.info["original_mode"] == "P"


def test_palette_without_transparency():
    p = Image.new("P", (3, 1), 0)
    p.putpalette([10, 20, 30] + [0] * (256 * 3 - 3))
    out = load_image(encode(p, "GIF"))
    assert out.getpixel((0, 0)) == (10, 20, 30)
    assert out.info["note"] == ""


def test_rgba_alpha_composited():
    arr = np.zeros((1, 3, 4), np.uint8)
    arr[0, 0] = (200, 100, 0, 255)  # opaque
    arr[0, 1] = (200, 100, 0, 0)  # fully transparent
    arr[0, 2] = (200, 100, 0, 128)  # half
    out = np.asarray(load_image(encode(Image.fromarray(arr, "RGBA"), "PNG"))).astype(int)
    a = 128 / 255
    expected_half = [round(c * a + 255 * (1 - a)) for c in (200, 100, 0)]
    assert out[0, 0].tolist() == [200, 100, 0]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert np.abs(out[0, 2] - expected_half).max() <= 1


def test_rgba_custom_background():
    im = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    out = load_image(encode(im, "PNG"), background=(0, 128, 0))
    assert out.getpixel((0, 0)) == (0, 128, 0)


def test_la_half_transparent_pixel():
    im = Image.new("LA", (2, 1), (0, 255))
    im.putpixel((1, 0), (0, 128))  # black at half alpha
    raw = encode(im, "PNG")
    assert Image.open(io.BytesIO(raw)).mode == "LA"
    out = load_image(raw)
    expected = round(0 * 128 / 255 + 255 * (1 - 128 / 255))  # 127: blended, not dropped (0) or white
    assert out.getpixel((0, 0)) == (0, 0, 0)
    assert all(abs(c - expected) <= 1 for c in out.getpixel((1, 0)))
    assert abs(load_image(raw, mode="L").getpixel((1, 0)) - expected) <= 1


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk(fmt):
    cmyk = np.array([[[0, 0, 0, 0], [0, 255, 255, 0], [0, 0, 0, 255], [255, 0, 0, 0]]], np.uint8)
    raw = encode(Image.fromarray(cmyk, "CMYK"), fmt, **({"quality": 100} if fmt == "JPEG" else {}))
    assert Image.open(io.BytesIO(raw)).mode == "CMYK"
    out = np.asarray(load_image(raw)).astype(int)
    c, m, y, k = (cmyk[..., i].astype(float) / 255 for i in range(4))
    expected = np.stack([255 * (1 - c) * (1 - k), 255 * (1 - m) * (1 - k), 255 * (1 - y) * (1 - k)], -1)
    tol = 0 if fmt == "TIFF" else 12  # JPEG is lossy
    assert np.abs(out - expected).max() <= tol
    assert "CMYK" in load_image(raw).info["note"]


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_is_rescaled_not_clipped(fmt):
    arr = np.linspace(1000, 3000, 5 * 8).astype(np.uint16).reshape(5, 8)
    raw = encode(Image.fromarray(arr), fmt)
    assert Image.open(io.BytesIO(raw)).mode.startswith("I;16")
    out = np.asarray(load_image(raw, mode="L")).astype(int)
    expected = np.round((arr.astype(float) - 1000) / 2000 * 255)
    assert out.min() == 0 and out.max() == 255
    assert np.abs(out - expected).max() <= 1
    rgb = load_image(raw)
    assert rgb.mode == "RGB" and rgb.getpixel((7, 4)) == (255, 255, 255)
    assert "rescaled" in rgb.info["note"] and "1000" in rgb.info["note"]


def test_32_bit_int():
    arr = np.array([[-70000, 0, 70000]], np.int32)
    raw = encode(Image.fromarray(arr), "TIFF")
    assert Image.open(io.BytesIO(raw)).mode == "I"
    out = np.asarray(load_image(raw, mode="L")).ravel().tolist()
    assert out == [0, 128, 255]  # (0 - -70000) / 140000 * 255 = 127.5 -> 128


def test_float_with_nan_and_inf():
    arr = np.array([[-1.0, 0.0, 1.0, np.nan, np.inf]], np.float32)
    raw = encode(Image.fromarray(arr), "TIFF")
    assert Image.open(io.BytesIO(raw)).mode == "F"
    out = np.asarray(load_image(raw, mode="L")).ravel().tolist()
    assert out[:3] == [0, 128, 255]
    assert out[3] == 0 and out[4] == 255  # NaN -> lowest, +inf -> highest finite value


def test_constant_16_bit_image():
    raw = encode(Image.fromarray(np.full((3, 3), 500, np.uint16)), "PNG")
    assert np.asarray(load_image(raw, mode="L")).max() == 0


def test_one_bit():
    im = Image.new("1", (4, 2), 0)
    im.putpixel((3, 1), 1)
    out = load_image(encode(im, "PNG"))
    assert out.getpixel((3, 1)) == (255, 255, 255) and out.getpixel((0, 0)) == (0, 0, 0)


def test_grey_to_rgb_and_l():
    g = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20, "L")
    raw = encode(g, "PNG")
    rgb = np.asarray(load_image(raw))
    assert rgb.shape == (3, 4, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    np.testing.assert_array_equal(np.asarray(load_image(raw, mode="L")), np.asarray(g))
    with pytest.raises(ValueError):
        load_image(raw, mode="CMYK")


# ---------------------------------------------------------------- animation


def _frames():
    return [Image.new("RGB", (8, 6), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]


@pytest.mark.parametrize("fmt, kw", [("GIF", {}), ("WEBP", {"lossless": True}), ("PNG", {})])
def test_animated_first_frame(fmt, kw):
    f = _frames()
    raw = encode(f[0], fmt, save_all=True, append_images=f[1:], duration=100, **kw)
    assert Image.open(io.BytesIO(raw)).n_frames == 3
    out = load_image(raw)
    assert out.size == (8, 6)
    assert out.getpixel((4, 3)) == (255, 0, 0)
    assert "animated (3 frames): first frame used" in out.info["note"]


def test_multipage_tiff():
    f = _frames()
    out = load_image(encode(f[0], "TIFF", save_all=True, append_images=f[1:]))
    assert out.getpixel((0, 0)) == (255, 0, 0)
    assert "first page" in out.info["note"]


# ---------------------------------------------------------------- hostile and broken input


@pytest.mark.parametrize("w, h", [(7000, 7000), (20000, 20000), (1_000_000, 1_000_000)])
def test_decompression_bomb_header_is_refused_fast(w, h, monkeypatch):
    raw = png_header_only(w, h)
    assert len(raw) < 100
    decoded = []  # refused from the header: no pixel decoded (a 1 MP^2 decode would take minutes)
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: decoded.append(im.size) or real_load(im))
    # Pillow itself warns between its limit (~89 MP) and twice that, and raises above
    with pytest.warns(Image.DecompressionBombWarning) if 89_478_485 < w * h <= 2 * 89_478_485 else contextlib.nullcontext():
        msg = load_error(raw)
    assert decoded == []
    load_image(encode(Image.new("RGB", (8, 8)), "PNG"))  # the spy does see a decode
    assert (8, 8) in decoded
    assert "MP" in msg or "too many pixels" in msg


def test_pixel_limit_is_configurable():
    raw = encode(Image.new("RGB", (100, 100)), "PNG")
    msg = load_error(raw, max_pixels=5000)
    assert "100x100" in msg and "limit" in msg
    assert load_image(raw).size == (100, 100)


def _noise_png(w=64, h=48) -> bytes:
    return encode(Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)), "PNG")


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_png(keep):
    raw = _noise_png()
    msg = load_error(raw[: int(len(raw) * keep)])
    assert "truncated or corrupt" in msg


def test_png_missing_its_end_is_refused():
    raw = _noise_png()
    assert raw.endswith(png_chunk(b"IEND", b""))
    # cut into the last data chunk's checksum: the pixels may all be there, the file is not
    load_error(raw[:-16])


def test_png_with_corrupted_data():
    raw = bytearray(_noise_png())
    idat = raw.index(b"IDAT")
    raw[idat + 40 : idat + 60] = b"\x00" * 20
    load_error(bytes(raw))


@pytest.mark.parametrize("keep", [0.3, 0.7, 0.98])
def test_truncated_jpeg(keep):
    raw = encode(Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG")
    msg = load_error(raw[: int(len(raw) * keep)])
    assert "truncated or corrupt" in msg


def test_empty_bytes():
    assert "empty" in load_error(b"")


@pytest.mark.parametrize("data", [b"hello, I am not an image", b"%PDF-1.4\n" + b"\x00" * 200, bytes(range(256)) * 4])
def test_non_image_bytes(data):
    msg = load_error(data)
    assert "not an image" in msg and "PNG" in msg


def test_unsupported_format_is_refused():
    # Pillow can read ICO, but the app only accepts the uploader's formats
    msg = load_error(encode(Image.new("RGB", (16, 16)), "ICO"))
    assert "not an image" in msg


def test_byte_size_limit(tmp_path):
    raw = _noise_png()
    msg = load_error(raw, max_bytes=len(raw) - 1)
    assert "limit" in msg
    p = tmp_path / "big.png"
    p.write_bytes(raw)
    msg = load_error(p, max_bytes=100)
    assert "big.png" in msg and "limit" in msg
    assert images.MAX_BYTES == 25 * 2**20
    assert "25 MB" in load_error(b"\x00" * (images.MAX_BYTES + 1))


def test_missing_path_and_bad_type(tmp_path):
    assert "nope.png" in load_error(tmp_path / "nope.png")
    load_error(12345)  # type: ignore[arg-type]


def test_path_and_bytes_agree(tmp_path):
    raw = _noise_png()
    p = tmp_path / "x.png"
    p.write_bytes(raw)
    np.testing.assert_array_equal(np.asarray(load_image(p)), np.asarray(load_image(str(p))))
    np.testing.assert_array_equal(np.asarray(load_image(p)), np.asarray(load_image(raw)))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"])
def test_every_uploader_format_loads(fmt):
    im = Image.new("RGB", (10, 7), (30, 160, 90))
    out = load_image(encode(im, fmt))
    assert out.mode == "RGB" and out.size == (10, 7)
    assert all(abs(a - b) <= 8 for a, b in zip(out.getpixel((5, 3)), (30, 160, 90)))
    assert out.info["format"] == fmt


# ---------------------------------------------------------------- sizes and prepare()


def test_tiny_and_extreme_aspect_load():
    one = load_image(encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"))
    assert one.size == (1, 1) and one.getpixel((0, 0)) == (1, 2, 3)
    tall = load_image(encode(Image.new("RGB", (1, 4000), (9, 9, 9)), "PNG"))
    assert tall.size == (1, 4000)
    assert prepare(tall, max_side=384).size == (1, 384)
    assert prepare(tall, max_side=384, crop_square=True).size == (1, 1)
    assert prepare(one, max_side=64, crop_square=True).size == (1, 1)


def test_prepare_max_side_keeps_aspect():
    im = Image.new("RGB", (1000, 500))
    assert prepare(im, max_side=384).size == (384, 192)
    assert prepare(im, max_side=2048).size == (1000, 500)  # never enlarges
    assert prepare(im, max_side=None).size == (1000, 500)


def test_prepare_centre_crop_takes_the_middle():
    arr = np.zeros((10, 30, 3), np.uint8)
    arr[:, 10:20] = 255  # the middle third is white
    out = prepare(Image.fromarray(arr), crop_square=True)
    assert out.size == (10, 10)
    assert np.asarray(out).min() >= 250


def test_prepare_keeps_the_note():
    im = load_image(encode(Image.new("LA", (50, 20), (0, 0)), "PNG"))
    assert prepare(im, max_side=10, crop_square=True).info["note"] == im.info["note"] != ""


def test_samples_ship_and_load():
    s = images.samples()
    assert len(s) >= 4
    assert len({x.key for x in s}) == len(s)
    for sample in s:
        im = load_image(sample.path)
        assert im.mode == "RGB" and min(im.size) >= 64
    d = images.default_image(max_side=128)
    assert max(d.size) == 128
