"""Safe image input: decode anything a user drops in, or explain plainly why not.

`load_image` never returns a half-decoded picture and never lets Pillow's own
exceptions escape: every failure is an `ImageLoadError` (a `ValueError`) whose
message a user understands. This module imports only Pillow and numpy, so the
sidebar can use it before torch is imported.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

MAX_BYTES = 25 * 1024 * 1024  # matches .streamlit/config.toml server.maxUploadSize
MAX_PIXELS = 40_000_000  # well under Pillow's own bomb limit (~89 MP)
SUPPORTED = ("png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff")
ASSETS = Path(__file__).resolve().parent.parent / "assets" / "samples"

# Decode fully or fail: never accept a truncated file silently.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageLoadError(ValueError):
    """An image could not be used; the message is meant for the user."""


def _read_bytes(data: bytes | str | Path, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.is_file():
            raise ImageLoadError(f"No such file: {path.name}.")
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageLoadError(
                f"{path.name} is {size / 1e6:.1f} MB, above the {max_bytes / 1e6:.0f} MB limit."
            )
        return path.read_bytes(), path.name
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageLoadError(f"Expected image bytes or a path, got {type(data).__name__}.")
    raw = bytes(data)
    if len(raw) > max_bytes:
        raise ImageLoadError(
            f"The file is {len(raw) / 1e6:.1f} MB, above the {max_bytes / 1e6:.0f} MB limit."
        )
    return raw, "the file"


def _flatten_alpha(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Composite an image with alpha over a solid background (alpha is not just dropped)."""
    rgba = im.convert("RGBA")
    base = Image.new("RGBA", rgba.size, background + (255,))
    return Image.alpha_composite(base, rgba).convert("RGB")


def _rescale_high_depth(im: Image.Image) -> tuple[Image.Image, str]:
    """Map 16/32-bit integer or float images onto 0..255 by their actual range."""
    arr = np.asarray(im, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return Image.new("L", im.size, 0), f"{im.mode} image has no finite values; shown black"
    lo, hi = float(finite.min()), float(finite.max())
    arr = np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo)
    scaled = np.zeros_like(arr) if hi == lo else (arr - lo) / (hi - lo) * 255.0
    out = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    return out, f"{im.mode} image rescaled from [{lo:g}, {hi:g}] to 0-255"


def _to_mode(im: Image.Image, mode: str, background: tuple[int, int, int]) -> tuple[Image.Image, list[str]]:
    notes: list[str] = []
    src = im.mode
    if src == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        src = im.mode
    if src in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(im.getchannel("A"))
        if alpha.min() < 255:
            notes.append("transparent pixels composited over white")
        im = _flatten_alpha(im, background)
    elif src in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        im, note = _rescale_high_depth(im)
        notes.append(note)
    elif src == "1":
        im = im.convert("L")
    elif src not in ("RGB", "L"):
        if src == "CMYK":
            notes.append("CMYK converted to RGB")
        im = im.convert("RGB")
    if im.mode != mode:
        im = im.convert(mode)
    return im, notes


def load_image(
    data: bytes | str | Path,
    mode: str = "RGB",
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Decode `data` (bytes or a path) into a fully loaded RGB or L image.

    Handles EXIF orientation, palette/alpha/CMYK/16-bit/float/1-bit modes and animated
    files (first frame). Anything worth telling the user lands in `image.info["note"]`.
    Raises `ImageLoadError` with a readable message for every failure.
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', not {mode!r}")
    raw, name = _read_bytes(data, max_bytes)
    if not raw:
        raise ImageLoadError(f"{name.capitalize()} is empty (0 bytes).")
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(raw))
            w, h = im.size
            if w <= 0 or h <= 0:
                raise ImageLoadError(f"{name.capitalize()} has an empty size ({w}x{h}).")
            if w * h > max_pixels:
                raise ImageLoadError(
                    f"The image is {w}x{h} = {w * h / 1e6:.0f} MP, above the {max_pixels / 1e6:.0f} MP "
                    "limit. Downscale it before uploading."
                )
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                im.seek(0)
                notes.append(f"animated ({frames} frames): first frame used")
            im.load()
            im = ImageOps.exif_transpose(im)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(
            f"{name.capitalize()} is not an image Pillow can read (use PNG, JPEG, WebP, BMP, GIF or TIFF)."
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageLoadError("The image is too large to decode safely (a decompression bomb?).") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(f"{name.capitalize()} is truncated or corrupt ({exc}).") from None
    except Exception as exc:  # Pillow plugins raise odd things on hostile input
        raise ImageLoadError(f"{name.capitalize()} could not be decoded ({type(exc).__name__}).") from None
    original_mode = im.mode
    im, mode_notes = _to_mode(im, mode, background)
    notes.extend(mode_notes)
    im.info = {"note": "; ".join(notes), "original_mode": original_mode}
    return im


def prepare(im: Image.Image, max_side: int | None = None, crop_square: bool = False) -> Image.Image:
    """Centre-crop to a square (optional) and shrink so the longer side is at most `max_side`."""
    info = dict(im.info)
    if crop_square:
        side = min(im.size)
        im = ImageOps.fit(im, (side, side), method=Image.Resampling.BICUBIC)
    if max_side and max(im.size) > max_side:
        scale = max_side / max(im.size)
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im = im.resize(size, Image.Resampling.LANCZOS)
    im.info = info
    return im


@dataclass(frozen=True)
class Sample:
    """A sample image shipped in assets/samples."""

    key: str
    path: Path
    title: str


_TITLES = {
    "cat": "Cat (Chelsea)",
    "coffee": "Coffee",
    "astronaut": "Astronaut",
    "rocket": "Rocket",
    "brick": "Brick wall (grey)",
    "horse": "Horse (transparent)",
}


def samples() -> list[Sample]:
    """The shipped sample images, in gallery order (credits in assets/README.md)."""
    out = []
    for key, title in _TITLES.items():
        matches = sorted(ASSETS.glob(f"{key}.*"))
        if matches:
            out.append(Sample(key, matches[0], title))
    return out


def default_image(max_side: int | None = 384) -> Image.Image:
    """The default input (the cat), as RGB, shrunk to `max_side`."""
    return prepare(load_image(samples()[0].path), max_side=max_side)
