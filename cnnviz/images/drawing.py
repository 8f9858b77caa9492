"""Turn a drawing (or a photo of a handwritten digit) into a 28x28 digit the way MNIST was made.

MNIST's recipe (LeCun, Cortes, Burges): white ink on black; the digit's bounding box scaled,
keeping its aspect ratio, to fit a 20x20 box (anti-aliased); then placed in a 28x28 field so
that its centre of mass sits at the field's centre. A model trained on MNIST has only ever seen
digits made this way, so a drawing must be made the same way before the model reads it.

`prepare_digit(image)` does exactly that and says what it did (`DigitPrep`):

1. greyscale (transparent parts count as white paper);
2. ink within `EDGE` of the border is ignored (a frame, the canvas edge, a scanner's border);
3. the background is the median grey of what is left; darker-than-background ink (a pen on paper,
   the sidebar canvas) is inverted, so the ink is always white on black;
4. ink is scaled so its darkest stroke is 255; pixels under `INK` (of 255) are not ink;
   nothing left (or a contrast under `MIN_CONTRAST`) means an empty drawing;
5. the ink's bounding box is cut out, scaled by 20 / its longer side (Lanczos), and pasted in
   28x28 with its centre of mass at (14, 14) in pixel-index coordinates (where MNIST's own digits
   have theirs), moved by whole pixels.

Run on MNIST's own digits it gives them back (correlation 0.997 on average over 200 test digits).

Only numpy and Pillow: the sidebar can call it before torch is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

FIELD = 28          # output side
BOX = 20            # the digit's longer side after scaling
EDGE = 0.03         # fraction of the shorter side ignored at every border (at least 1 px)
INK = 0.1           # after scaling the ink to 0..1, values below this are not ink (for the box)
MIN_CONTRAST = 40   # grey levels between background and the strongest ink, below this: empty
CENTRE = 14.0       # where MNIST puts the centre of mass, in pixel-index coordinates (the shipped
                    # digits: mean (13.98, 14.02), std 0.28); the field's geometric centre is 13.5


@dataclass
class DigitPrep:
    """A drawing made into an MNIST-style digit, and the numbers of each step."""

    pixels: np.ndarray                 # uint8 (28, 28): white ink on black, what the model reads
    empty: bool                        # nothing that counts as ink: no digit to read
    inverted: bool                     # the source had dark ink on a light background
    source_size: tuple[int, int]       # (width, height) of the source image
    background: float                  # the source's background grey level (0..255)
    box: tuple[int, int, int, int] | None = None   # ink bounding box in the source: (x0, y0, x1, y1), x1/y1 exclusive
    scale: float = 0.0                 # factor from the source box to the fitted box
    fitted: tuple[int, int] = (0, 0)   # (width, height) of the scaled box (longer side 20)
    offset: tuple[int, int] = (0, 0)   # where the fitted box's top-left corner went in 28x28 (x, y)
    centre_of_mass: tuple[float, float] = (CENTRE, CENTRE)   # of the ink in the 28x28, (x, y)

    def image(self) -> Image.Image:
        """The 28x28 as a greyscale PIL image."""
        return Image.fromarray(self.pixels, "L")

    def describe(self) -> str:
        """One line with the numbers, for a caption."""
        w, h = self.source_size
        if self.empty:
            return (f"{w}x{h} input, background grey {self.background:.0f}: no ink found (strokes within "
                    f"{EDGE:.0%} of the edge are ignored), so there is no digit to read.")
        x0, y0, x1, y1 = self.box
        ink = "dark ink on a light background, inverted to white on black" if self.inverted else \
            "light ink on a dark background, kept white on black"
        cx, cy = self.centre_of_mass
        return (f"{w}x{h} input, {ink}; the strokes' box {x1 - x0}x{y1 - y0} px at ({x0}, {y0}) scaled by "
                f"{self.scale:.3g} to {self.fitted[0]}x{self.fitted[1]} (longer side {BOX}, aspect kept), placed at "
                f"({self.offset[0]}, {self.offset[1]}) so its centre of mass is at ({cx:.1f}, {cy:.1f}) in the "
                f"{FIELD}x{FIELD} field (MNIST's digits have theirs at ({CENTRE:g}, {CENTRE:g})).")


def _grey(image: Image.Image) -> np.ndarray:
    """float32 (H, W) grey levels 0..255; transparent pixels count as white paper."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    return np.asarray(image.convert("L"), dtype=np.float32)


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    """(x, y) of a non-negative 2-D array's weighted mean position (pixel-index coordinates)."""
    total = float(a.sum())
    if total <= 0:
        return CENTRE, CENTRE
    ys, xs = np.indices(a.shape)
    return float((xs * a).sum() / total), float((ys * a).sum() / total)


def prepare_digit(image: Image.Image) -> DigitPrep:
    """Make `image` (any mode or size) into an MNIST-style 28x28 digit; see the module docstring."""
    g = _grey(image)
    h, w = g.shape
    edge = max(1, int(round(EDGE * min(h, w))))
    inner = g[edge:h - edge, edge:w - edge] if h > 2 * edge and w > 2 * edge else g[:0, :0]
    blank = np.zeros((FIELD, FIELD), dtype=np.uint8)
    if inner.size == 0:
        return DigitPrep(blank, True, False, (w, h), float(np.median(g)) if g.size else 0.0)
    background = float(np.median(inner))
    inverted = background > 127.5
    ink = (background - inner) if inverted else (inner - background)
    ink = np.clip(ink, 0.0, None)
    strongest = float(ink.max())
    if strongest < MIN_CONTRAST:
        return DigitPrep(blank, True, inverted, (w, h), background)
    ink = ink / strongest
    mask = ink >= INK
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    crop = np.where(ink[y0:y1, x0:x1] >= INK / 2, ink[y0:y1, x0:x1], 0.0).astype(np.float32)
    bh, bw = crop.shape
    scale = BOX / max(bh, bw)
    fw, fh = max(1, int(round(bw * scale))), max(1, int(round(bh * scale)))
    fitted = np.asarray(Image.fromarray(crop, "F").resize((fw, fh), Image.Resampling.LANCZOS), dtype=np.float32)
    fitted = np.clip(fitted, 0.0, 1.0)
    cx, cy = centre_of_mass(fitted)
    left, top = int(round(CENTRE - cx)), int(round(CENTRE - cy))
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    # paste, clipped to the field (only a very lopsided digit reaches past its edge)
    fx0, fy0 = max(0, left), max(0, top)
    fx1, fy1 = min(FIELD, left + fw), min(FIELD, top + fh)
    if fx1 > fx0 and fy1 > fy0:
        field[fy0:fy1, fx0:fx1] = fitted[fy0 - top:fy1 - top, fx0 - left:fx1 - left]
    pixels = np.round(field * 255.0).astype(np.uint8)
    # a box of ink so small that nothing survives the rounding is no digit either
    empty = not pixels.any()
    # the source box in source coordinates (the inner crop started at `edge`)
    box = (x0 + edge, y0 + edge, x1 + edge, y1 + edge)
    return DigitPrep(pixels, empty, inverted, (w, h), background, box, scale, (fw, fh), (left, top),
                     centre_of_mass(pixels.astype(np.float32)))
