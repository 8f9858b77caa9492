"""The sidebar image picker and how pages read the chosen image.

The sidebar (drawn by app.py on every page, before the page runs) writes the chosen,
prepared image into session state; pages call `current_image()`. A page run on its own
(AppTest on the page file) gets the default sample, so page tests need no sidebar.

Three sources: a shipped sample, an upload, or a drawing on the sidebar's canvas
(streamlit-drawable-canvas: freehand, brush width, undo/redo/clear on its toolbar). The last one
touched wins: clicking a sample, uploading a file, or drawing a stroke makes it the input.

State (all in `st.session_state`, so it survives page switches):
- `cnnviz_source`: "sample", "upload" or "drawing": which one is the input;
- `cnnviz_sample`: key of the chosen sample (a plain key, not a widget's, so it persists);
- `cnnviz_upload_gen`: bumped when a sample is clicked, which gives the uploader a new key
  and so clears an earlier upload (a clicked sample always wins over an old upload);
- `cnnviz_drawing`: the canvas's last drawing (`Drawing`: strokes, digest, RGB picture), kept so
  it can be the input on every page; `cnnviz_drawing_seen` is the digest last seen, so a new
  stroke (or an undo, or a clear) is noticed as a change;
- `cnnviz_image` / `cnnviz_image_label` / `cnnviz_image_error` / `cnnviz_image_note`: what
  pages read (through `current_image()`, `current_label()`, `show_input_warning()`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import streamlit as st
from PIL import Image, ImageOps

from cnnviz import images
from ui.pictures import picture

KEY_IMAGE = "cnnviz_image"
KEY_LABEL = "cnnviz_image_label"
KEY_ERROR = "cnnviz_image_error"
KEY_NOTE = "cnnviz_image_note"
KEY_SAMPLE = "cnnviz_sample"
KEY_UPLOAD_GEN = "cnnviz_upload_gen"
KEY_UPLOAD_CACHE = "cnnviz_upload_cache"
KEY_SOURCE = "cnnviz_source"
KEY_DRAWING = "cnnviz_drawing"
KEY_DRAWING_SEEN = "cnnviz_drawing_seen"
KEY_PICKED = "cnnviz_picked"  # (image, label) a page made the input (use_image), until a sample/upload/stroke
CANVAS_KEY = "sidebar_canvas"
CANVAS_SIDE = 196   # px: fits the sidebar (206 px inside the expander); 7x MNIST's 28
BRUSH = (4, 40, 18)  # brush width slider: min, max, default (px on the canvas)
INK_COLOUR, PAPER_COLOUR = "#000000", "#FFFFFF"
DRAWING_LABEL = "your drawing"
MAX_SIDES = [64, 128, 256, 384, 512, 768, 1024, 2048]
DEFAULT_MAX_SIDE = 384
THUMB = 96  # px, square sidebar thumbnails

_SIDEBAR_CSS = """
<style>
section[data-testid="stSidebar"] [data-testid="stImage"] img { border-radius: 6px; }
section[data-testid="stSidebar"] .st-key-cnnviz_gallery [data-testid="stVerticalBlock"] { gap: 0.3rem; }
section[data-testid="stSidebar"] .st-key-cnnviz_gallery [data-testid="stElementToolbar"] { display: none; }
section[data-testid="stSidebar"] .st-key-cnnviz_gallery button { padding: 0 0.25rem; min-height: 1.9rem; }
section[data-testid="stSidebar"] .st-key-cnnviz_gallery button p { font-size: 0.8rem; white-space: nowrap; }
</style>
"""


@st.cache_data(show_spinner=False)
def _sample(path: str) -> Image.Image:
    return images.load_image(path)


@st.cache_data(show_spinner=False)
def _thumb(path: str) -> Image.Image:
    return ImageOps.fit(images.load_image(path), (THUMB, THUMB), method=Image.Resampling.LANCZOS)


def _short(title: str) -> str:
    return title.split(" (")[0]


def _choose_sample(key: str) -> None:
    """Button callback: select a sample and clear any upload (new uploader key)."""
    st.session_state[KEY_SOURCE] = "sample"
    st.session_state[KEY_SAMPLE] = key
    st.session_state[KEY_UPLOAD_GEN] = st.session_state.get(KEY_UPLOAD_GEN, 0) + 1
    st.session_state.pop(KEY_UPLOAD_CACHE, None)


def _upload_changed(key: str) -> None:
    """Uploader callback: a new file becomes the input; removing it returns to the sample."""
    st.session_state[KEY_SOURCE] = "upload" if st.session_state.get(key) is not None else "sample"


@dataclass(frozen=True)
class Drawing:
    """What the canvas holds: how many strokes, a digest of them, and the picture (RGB, paper white)."""

    strokes: int
    digest: str
    image: Image.Image


def blank_drawing() -> Drawing:
    """An empty canvas."""
    return Drawing(0, "", Image.new("RGB", (CANVAS_SIDE, CANVAS_SIDE), PAPER_COLOUR))


def drawing_from_canvas(json_data: dict | None, png: bytes | None) -> Drawing | None:
    """The canvas's reply (Fabric.js JSON and the rendered PNG) as a Drawing; None before the
    browser has sent one. Transparent pixels become paper white; the PNG is decoded with the
    same safe loader as uploads."""
    if json_data is None:
        return None
    objects = json_data.get("objects") or []
    digest = hashlib.blake2b(json.dumps(objects, sort_keys=True, default=str).encode(),
                             digest_size=12).hexdigest() if objects else ""
    if not objects:
        return Drawing(0, digest, blank_drawing().image)
    if not png:
        return None
    try:
        im = images.load_image(png, background=(255, 255, 255))
    except images.ImageLoadError:
        return None
    return Drawing(len(objects), digest, im)


def note_drawing(drawing: Drawing | None) -> None:
    """Record the canvas's state; a change (a stroke, an undo, a clear) makes the drawing the input.

    The first state seen in a session (the empty canvas as it appears) changes nothing."""
    if drawing is None:
        return
    seen = st.session_state.get(KEY_DRAWING_SEEN)
    st.session_state[KEY_DRAWING] = drawing
    st.session_state[KEY_DRAWING_SEEN] = drawing.digest
    if seen is None and not drawing.strokes:
        return
    if drawing.digest != seen:
        st.session_state[KEY_SOURCE] = "drawing"


def _use_drawing() -> None:
    st.session_state[KEY_SOURCE] = "drawing"


def _canvas(sb) -> None:
    """The drawing expander: brush width, the canvas (its toolbar has undo, redo and clear)."""
    from streamlit_drawable_canvas import st_canvas  # registers a component: needs a running app

    with sb.expander("Or draw one", expanded=False, key="sidebar_draw", icon=":material/draw:"):
        width = st.slider("Brush width (px)", BRUSH[0], BRUSH[1], BRUSH[2], step=2, key="sidebar_brush",
                          help="The pen's width on the canvas. MNIST's strokes are about a tenth of the "
                               "digit's height.")
        result = st_canvas(stroke_width=int(width), stroke_color=INK_COLOUR, background_color=PAPER_COLOUR,
                           height=CANVAS_SIDE, width=CANVAS_SIDE, drawing_mode="freedraw",
                           return_image_data=True, key=CANVAS_KEY)
        try:
            png = result.image_bytes
        except RuntimeError:
            png = None
        note_drawing(drawing_from_canvas(result.json_data, png))
        drawing = st.session_state.get(KEY_DRAWING)
        st.caption(f"{CANVAS_SIDE}x{CANVAS_SIDE} px, black ink on white. Each stroke makes the drawing the "
                   "input of every page. Hover the canvas for its toolbar: undo, redo, and the bin clears it.")
        if st.session_state.get(KEY_SOURCE) != "drawing" and drawing is not None and drawing.strokes:
            st.button("Use this drawing", key="sidebar_use_drawing", on_click=_use_drawing,
                      icon=":material/draw:")


def use_image(im: Image.Image, label: str) -> None:
    """Make `im` the input of every page (e.g. a test image the Microscope shows), as if chosen in the
    sidebar; clicking a sample, uploading or drawing replaces it."""
    st.session_state[KEY_PICKED] = (im.convert("RGB"), label)
    st.session_state[KEY_SOURCE] = "picked"
    st.session_state[KEY_IMAGE] = im.convert("RGB")
    st.session_state[KEY_LABEL] = label
    st.session_state[KEY_ERROR] = None


def is_drawing() -> bool:
    """True when the current image is the sidebar drawing (pages may read it as a digit)."""
    return st.session_state.get(KEY_SOURCE) == "drawing" and st.session_state.get(KEY_IMAGE) is not None


def _decode_upload(upload, max_side: int, crop: bool) -> tuple[Image.Image, str, tuple[int, int]]:
    """Decode and prepare an upload once per (file, size settings); kept in this session only.

    Kept in session state rather than st.cache_data: no pickling of big images on every
    rerun, and one user's upload is never shared with another session.
    """
    key = (upload.file_id, upload.size, max_side, crop)
    cached = st.session_state.get(KEY_UPLOAD_CACHE)
    if cached and cached[0] == key:
        return cached[1]
    base = images.load_image(upload.getvalue())  # ImageLoadError propagates, not cached
    result = (images.prepare(base, max_side=max_side, crop_square=crop), base.info.get("note", ""), base.size)
    st.session_state[KEY_UPLOAD_CACHE] = (key, result)
    return result


def sidebar_picker() -> None:
    """Draw the shared image picker in the sidebar and publish the chosen image."""
    gallery = images.samples()
    by_key = {s.key: s for s in gallery}
    if st.session_state.get(KEY_SAMPLE) not in by_key:
        st.session_state[KEY_SAMPLE] = gallery[0].key
    gen = st.session_state.setdefault(KEY_UPLOAD_GEN, 0)
    source = st.session_state.setdefault(KEY_SOURCE, "sample")

    sb = st.sidebar
    sb.html(_SIDEBAR_CSS)
    sb.markdown("**Input image**", help="One image for every page. Click a sample, upload your own, or draw one.")
    upload_key = f"sidebar_upload_{gen}"
    has_upload = st.session_state.get(upload_key) is not None
    if source == "upload" and not has_upload:
        source = st.session_state[KEY_SOURCE] = "sample"
    elif has_upload and source == "sample":  # an upload always beats an earlier sample
        source = st.session_state[KEY_SOURCE] = "upload"
    gallery_box = sb.container(key="cnnviz_gallery")  # filled below, once the canvas has said whether it changed
    upload = sb.file_uploader(
        "Or upload your own", type=list(images.SUPPORTED), key=upload_key,
        on_change=_upload_changed, args=(upload_key,),
        help=f"PNG, JPEG, WebP, BMP, GIF or TIFF, up to {images.MAX_BYTES // 2**20} MB and "
             f"{images.MAX_PIXELS // 1_000_000} megapixels. Click a sample to go back to it.",
    )
    _canvas(sb)
    source = st.session_state[KEY_SOURCE]
    with gallery_box:
        for row in range(0, len(gallery), 3):
            cols = st.columns(3, gap="small")
            for col, s in zip(cols, gallery[row:row + 3]):
                with col:
                    st.image(**picture(_thumb(str(s.path)), width="stretch"))
                    chosen = s.key == st.session_state[KEY_SAMPLE] and source == "sample"
                    st.button(
                        _short(s.title), key=f"sidebar_sample_{s.key}", help=s.title,
                        type="primary" if chosen else "secondary", width="stretch",
                        on_click=_choose_sample, args=(s.key,),
                    )
    max_side = st.session_state.get("sidebar_max_side", DEFAULT_MAX_SIDE)
    crop = st.session_state.get("sidebar_crop", False)
    with sb.expander(f"Size: longest side ≤ {max_side} px" + (", square crop" if crop else ""),
                     expanded=False, key="sidebar_size", icon=":material/photo_size_select_large:"):
        max_side = st.select_slider(
            "Max side (px)", MAX_SIDES, value=DEFAULT_MAX_SIDE, key="sidebar_max_side",
            help="Larger images are shrunk (never enlarged) so every page stays interactive.")
        crop = st.checkbox("Centre crop to a square", value=False, key="sidebar_crop")

    error = None
    note = ""
    prepared = None
    picked = st.session_state.get(KEY_PICKED) if source == "picked" else None
    if picked is not None:  # an image another page chose (use_image): a test image, an exemplar
        prepared = images.prepare(picked[0], max_side=max_side, crop_square=crop)
        original, label = picked[0].size, picked[1]
    elif source == "drawing":
        drawing = st.session_state.get(KEY_DRAWING) or blank_drawing()
        prepared = images.prepare(drawing.image, max_side=max_side, crop_square=crop)
        original, label = drawing.image.size, DRAWING_LABEL + ("" if drawing.strokes else " (empty)")
    elif upload is not None:
        try:
            prepared, note, original = _decode_upload(upload, max_side, crop)
            label = upload.name
        except images.ImageLoadError as exc:
            error = f"Couldn't use '{upload.name}': {exc}"
    if prepared is None:
        sample = by_key[st.session_state[KEY_SAMPLE]]
        base = _sample(str(sample.path))
        prepared = images.prepare(base, max_side=max_side, crop_square=crop)
        note, original = base.info.get("note", ""), base.size
        label = sample.title
    st.session_state[KEY_IMAGE] = prepared
    st.session_state[KEY_LABEL] = label
    st.session_state[KEY_ERROR] = error
    st.session_state[KEY_NOTE] = note
    if error:
        sb.error(error + " Using the sample instead.", icon=":material/error:")
    elif upload is not None and source == "upload":
        sb.image(**picture(prepared, width="stretch"))
    sb.caption(f"Using **{label}**, {prepared.width}×{prepared.height} px"
               + (f" (from {original[0]}×{original[1]})" if prepared.size != tuple(original) else "")
               + (f". {note[0].upper() + note[1:]}." if note else "."))


def current_image() -> Image.Image:
    """The image chosen in the sidebar (RGB), or the default sample when none was chosen.

    Returns a copy: a page may modify it freely without affecting other pages.
    """
    im = st.session_state.get(KEY_IMAGE)
    if im is None:
        sample = images.samples()[0]
        im = images.prepare(_sample(str(sample.path)), max_side=DEFAULT_MAX_SIDE)
        st.session_state[KEY_IMAGE] = im
        st.session_state[KEY_LABEL] = sample.title
    out = im.copy()
    out.info = dict(im.info)
    return out


def current_label() -> str:
    """A short name of the current image for captions."""
    if st.session_state.get(KEY_IMAGE) is None:
        current_image()
    return st.session_state.get(KEY_LABEL, "image")


def show_input_warning() -> None:
    """On a page: repeat the sidebar's upload error, if any, as a one-line banner."""
    err = st.session_state.get(KEY_ERROR)
    if err:
        st.warning(err + " Showing the sample image instead.", icon=":material/warning:")


def image_digest(im: Image.Image) -> str:
    """A short content key for caching work on an image (pixels and size)."""
    return hashlib.blake2b(im.tobytes(), digest_size=16).hexdigest() + f"{im.size}"
