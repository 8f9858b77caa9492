"""The sidebar image picker and how pages read the chosen image.

The sidebar (drawn by app.py on every page, before the page runs) writes the chosen,
prepared image into session state; pages call `current_image()`. A page run on its own
(AppTest on the page file) gets the default sample, so page tests need no sidebar.

State (all in `st.session_state`, so it survives page switches):
- `cnnviz_sample`: key of the chosen sample (a plain key, not a widget's, so it persists);
- `cnnviz_upload_gen`: bumped when a sample is clicked, which gives the uploader a new key
  and so clears an earlier upload (a clicked sample always wins over an old upload);
- `cnnviz_image` / `cnnviz_image_label` / `cnnviz_image_error` / `cnnviz_image_note`: what
  pages read (through `current_image()`, `current_label()`, `show_input_warning()`).
"""

from __future__ import annotations

import hashlib

import streamlit as st
from PIL import Image, ImageOps

from cnnviz import images

KEY_IMAGE = "cnnviz_image"
KEY_LABEL = "cnnviz_image_label"
KEY_ERROR = "cnnviz_image_error"
KEY_NOTE = "cnnviz_image_note"
KEY_SAMPLE = "cnnviz_sample"
KEY_UPLOAD_GEN = "cnnviz_upload_gen"
KEY_UPLOAD_CACHE = "cnnviz_upload_cache"
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
    st.session_state[KEY_SAMPLE] = key
    st.session_state[KEY_UPLOAD_GEN] = st.session_state.get(KEY_UPLOAD_GEN, 0) + 1
    st.session_state.pop(KEY_UPLOAD_CACHE, None)


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

    sb = st.sidebar
    sb.html(_SIDEBAR_CSS)
    sb.markdown("**Input image**", help="One image for every page. Click a sample or upload your own.")
    upload_key = f"sidebar_upload_{gen}"
    has_upload = st.session_state.get(upload_key) is not None
    with sb.container(key="cnnviz_gallery"):
        for row in range(0, len(gallery), 3):
            cols = st.columns(3, gap="small")
            for col, s in zip(cols, gallery[row:row + 3]):
                with col:
                    st.image(_thumb(str(s.path)), width="stretch")
                    chosen = s.key == st.session_state[KEY_SAMPLE] and not has_upload
                    st.button(
                        _short(s.title), key=f"sidebar_sample_{s.key}", help=s.title,
                        type="primary" if chosen else "secondary", width="stretch",
                        on_click=_choose_sample, args=(s.key,),
                    )
    upload = sb.file_uploader(
        "Or upload your own", type=list(images.SUPPORTED), key=upload_key,
        help=f"PNG, JPEG, WebP, BMP, GIF or TIFF, up to {images.MAX_BYTES // 2**20} MB and "
             f"{images.MAX_PIXELS // 1_000_000} megapixels. Click a sample to go back to it.",
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
    if upload is not None:
        try:
            prepared, note, original = _decode_upload(upload, max_side, crop)
            label = upload.name
        except images.ImageLoadError as exc:
            error = f"Couldn't use '{upload.name}': {exc}"
    if upload is None or error:
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
    elif upload is not None:
        sb.image(prepared, width="stretch")
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
