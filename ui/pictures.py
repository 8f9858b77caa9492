"""Pictures encoded once, not on every rerun: `st.image(**picture(im), caption=...)`.

Given a PIL image, st.image encodes it in the script thread on EVERY rerun (JPEG at quality 100, or
PNG when the image may have an alpha channel), and when the image is wider than it is shown it
decodes that, shrinks it and encodes it again (the same steps are done here, on a miss). On the pages' warm reruns that was most of the
server's CPU (issue 26). `picture` does exactly what st.image would have done, once per distinct
picture: the encoded bytes are kept in one process-wide LRU (every session shares it) keyed by a
digest of the pixels, the mode and the width shown, and handed to st.image as bytes in their final
format, which st.image then sends as they are (it only reads their header). An unchanged picture
costs a hash of its pixels instead of an encode. The LRU holds at most MAX_BYTES of encoded images.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from typing import Any

from PIL import Image

MAX_BYTES = 128 * 2**20
MAX_CONTENT_WIDTH = 2 * 730  # streamlit.elements.lib.image_utils.MAXIMUM_CONTENT_WIDTH: wider is shrunk

_lock = threading.Lock()
_cache: OrderedDict[tuple, tuple[bytes, str]] = OrderedDict()
_held = 0


def _format(im: Image.Image) -> str:
    """st.image's choice for output_format="auto": PNG when there may be alpha, GIF for a GIF, else JPEG."""
    if im.format == "GIF":
        return "GIF"
    return "PNG" if im.mode in {"RGBA", "LA", "P"} else "JPEG"


def _encode(im: Image.Image, fmt: str, width: int | None) -> bytes:
    """The bytes st.image would send, made the way it makes them: encoded at quality 100; then, if
    wider than shown, those bytes decoded, shrunk (bilinear) and encoded again at quality 90."""
    if fmt == "JPEG" and im.mode in {"RGBA", "LA", "P"}:
        im = im.convert("RGB")
    buf = io.BytesIO()
    im.save(buf, format=fmt, quality=100)
    if width is None:
        return buf.getvalue()
    decoded = Image.open(io.BytesIO(buf.getvalue()))
    small = decoded.resize((width, int(1.0 * decoded.height * width / decoded.width)),
                           resample=Image.Resampling.BILINEAR)
    out = io.BytesIO()
    small.save(out, format=fmt, quality=90)
    return out.getvalue()


def encoded(im: Image.Image, width: int | str = "content") -> tuple[bytes, str]:
    """(bytes, format) of `im` as st.image(im, width=width) would send it; cached by its pixels."""
    global _held
    shown = width if isinstance(width, int) and width > 0 else MAX_CONTENT_WIDTH
    shown = shown if im.width > shown else None
    fmt = _format(im)
    digest = hashlib.blake2b(im.tobytes(), digest_size=16).digest()
    key = (digest, im.mode, im.size, fmt, shown)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    data = _encode(im, fmt, shown)
    with _lock:
        if key not in _cache:
            _cache[key] = (data, fmt)
            _held += len(data)
            while _held > MAX_BYTES and len(_cache) > 1:
                _, (old, _fmt) = _cache.popitem(last=False)
                _held -= len(old)
    return data, fmt


def picture(im: Any, width: int | str = "content") -> dict[str, Any]:
    """Keyword arguments for st.image showing `im` at `width` (st.image's own width argument, passed
    through): `st.image(**picture(im, width=168), caption=...)`. Anything but a PIL image (an array,
    a path, bytes) is passed to st.image untouched."""
    if not isinstance(im, Image.Image):
        return {"image": im, "width": width}
    data, fmt = encoded(im, width)
    return {"image": data, "width": width, "output_format": fmt}
