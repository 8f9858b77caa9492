"""Safe image input: decode anything a user drops in, or explain plainly why not.

`load_image` never returns a half-decoded picture and never lets Pillow's own
exceptions escape: every failure is an `ImageLoadError` (a `ValueError`) whose
message a user understands. This module imports only Pillow and numpy, so the
sidebar can use it before torch is imported.
"""

from __future__ import annotations

import io
from struct import error as struct_error
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

MAX_BYTES = 25 * 1024 * 1024  # matches .streamlit/config.toml server.maxUploadSize (25 MB)
MAX_PIXELS = 40_000_000  # well under Pillow's own bomb limit (~89 MP)
SUPPORTED = ("png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff")
# Pillow decoders tried, nothing else: fewer plugins, less attack surface. (Pillow's JPEG
# opener also returns the multi-picture "MPO" JPEGs that many phones write.)
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
ASSETS = Path(__file__).resolve().parents[2] / "assets" / "samples"
_FORMATS_TEXT = "PNG, JPEG, WebP, BMP, GIF or TIFF"

# Decode fully or fail: never accept a truncated file silently (this is Pillow's default;
# set here so nothing else in the process can have turned it on for us).
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageLoadError(ValueError):
    """An image could not be used; the message is meant for the user."""


def _mb(n: int) -> str:
    """A byte count for people: '25 MB', '1.5 MB', '12 KB'."""
    if n < 2**20:
        return f"{max(1, round(n / 1024))} KB"
    return f"{n / 2**20:.1f}".removesuffix(".0") + " MB"


def _read_bytes(data: bytes | str | Path, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.is_file():
            raise ImageLoadError(f"No such file: {path.name}.")
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageLoadError(f"The file {path.name} is {_mb(size)}, above the {_mb(max_bytes)} limit.")
        return path.read_bytes(), f"the file {path.name}"
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageLoadError("Expected image bytes or a file path.")
    raw = bytes(data)
    if len(raw) > max_bytes:
        raise ImageLoadError(f"The file is {_mb(len(raw))}, above the {_mb(max_bytes)} limit.")
    return raw, "the file"


def _flatten_alpha(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Composite an image with alpha over a solid background (alpha is not just dropped)."""
    rgba = im.convert("RGBA")
    base = Image.new("RGBA", rgba.size, background + (255,))
    return Image.alpha_composite(base, rgba).convert("RGB")


def _rescale_high_depth(im: Image.Image) -> tuple[Image.Image, str]:
    """Map 16/32-bit integer or float images onto 0..255 by their actual range (no clipping)."""
    arr = np.asarray(im, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return Image.new("L", im.size, 0), f"{im.mode} image has no finite values; shown black"
    lo, hi = float(finite.min()), float(finite.max())
    arr = np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo)
    scaled = np.zeros_like(arr) if hi == lo else (arr - lo) / (hi - lo) * 255.0
    out = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    kind = "float" if im.mode == "F" else ("16-bit" if im.mode.startswith("I;16") else "32-bit")
    return out, f"{kind} image rescaled from its range [{lo:g}, {hi:g}] to 0-255"


def _to_mode(im: Image.Image, mode: str, background: tuple[int, int, int]) -> tuple[Image.Image, list[str]]:
    notes: list[str] = []
    src = im.mode
    if src == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        src = im.mode
    if src in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(im.getchannel("A"))
        if alpha.min() < 255:
            notes.append("transparent pixels composited over white" if background == (255, 255, 255)
                         else f"transparent pixels composited over {background}")
        im = _flatten_alpha(im, background)
    elif src.startswith("I;16") or src in ("I", "F"):
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


def _frames_note(im: Image.Image) -> str:
    """Say which frame of an animated / multi-page file is used ('' for a still image)."""
    if not getattr(im, "is_animated", False):
        return ""
    n = getattr(im, "n_frames", 2)
    if im.format == "MPO":  # phone JPEGs: the first picture is the photo, the rest are previews
        return ""
    if im.format == "TIFF":
        return f"multi-page TIFF ({n} pages): first page used"
    return f"animated ({n} frames): first frame used"


def _exif_transpose(im: Image.Image, notes: list[str]) -> Image.Image:
    """Apply the EXIF Orientation tag; a damaged EXIF block is ignored, not fatal."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - malformed EXIF must not lose the picture
        notes.append("EXIF orientation unreadable; shown as stored")
        return im


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
    files (first frame). Anything worth telling the user lands in `image.info["note"]`
    (the source mode in `image.info["original_mode"]`, the format in `image.info["format"]`).
    Raises `ImageLoadError` with a readable message for every failure: empty, too many
    bytes, too many pixels (checked from the header, before decoding), not an image or not
    one of PNG/JPEG/WebP/BMP/GIF/TIFF, truncated or corrupt.
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', not {mode!r}")
    raw, name = _read_bytes(data, max_bytes)
    name = name[0].upper() + name[1:]
    if not raw:
        raise ImageLoadError(f"{name} is empty (0 bytes).")
    notes: list[str] = []
    try:
        # Pillow's own bomb check (warning above ~89 MP, error above ~179 MP) runs in open();
        # ours, from the header and well below it, runs before any pixel is decoded.
        im = Image.open(io.BytesIO(raw), formats=FORMATS)
        w, h = im.size
        if w <= 0 or h <= 0:
            raise ImageLoadError(f"{name} has an empty size ({w}x{h}).")
        if w * h > max_pixels:
            raise ImageLoadError(
                f"The image is {w}x{h} = {w * h / 1e6:.0f} MP, above the {max_pixels / 1e6:.0f} MP "
                "limit. Downscale it before uploading."
            )
        fmt = im.format or ""
        frames = _frames_note(im)
        if frames:
            im.seek(0)
            notes.append(frames)
        im.load()
        if fmt == "PNG":
            # load() stops once the pixels are in; verify() checks every chunk's CRC through
            # IEND, so a cut-off or damaged PNG is refused even when the pixels looked complete.
            Image.open(io.BytesIO(raw), formats=("PNG",)).verify()
        im = _exif_transpose(im, notes)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(
            f"{name} is not an image this app can read (use {_FORMATS_TEXT})."
        ) from None
    except Image.DecompressionBombError:
        raise ImageLoadError(
            "The image has far too many pixels to decode safely (a decompression bomb?)."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, struct_error):
        raise ImageLoadError(f"{name} is truncated or corrupt: its image data ends early or is damaged.") from None
    except MemoryError:
        raise ImageLoadError(f"{name} needs more memory to decode than is available.") from None
    except Exception:  # noqa: BLE001 - Pillow plugins raise odd things on hostile input
        raise ImageLoadError(f"{name} could not be decoded: the file looks damaged.") from None
    original_mode = im.mode
    try:
        im, mode_notes = _to_mode(im, mode, background)
    except Exception:  # noqa: BLE001 - exotic modes Pillow can open but not convert
        raise ImageLoadError(
            f"{name} uses the colour mode {original_mode}, which this app can't convert to {mode}."
        ) from None
    notes.extend(mode_notes)
    im.info = {"note": "; ".join(notes), "original_mode": original_mode, "format": fmt}
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
