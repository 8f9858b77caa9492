"""The sidebar image picker and how pages read the chosen image.

The sidebar (drawn by app.py on every page) writes the chosen, prepared image into
session state; pages call `current_image()`. A page run on its own (AppTest on the page
file) gets the default sample, so page tests need no sidebar.
"""

from __future__ import annotations

import hashlib

import streamlit as st
from PIL import Image

from cnnviz import images

KEY_IMAGE = "cnnviz_image"
KEY_LABEL = "cnnviz_image_label"
KEY_ERROR = "cnnviz_image_error"
KEY_NOTE = "cnnviz_image_note"
MAX_SIDES = [64, 128, 256, 384, 512, 768, 1024, 2048]


@st.cache_data(show_spinner=False, max_entries=16)
def _decode(raw: bytes, digest: str) -> Image.Image:  # digest keys the cache cheaply
    return images.load_image(raw)


@st.cache_data(show_spinner=False)
def _sample(path: str) -> Image.Image:
    return images.load_image(path)


def sidebar_picker() -> None:
    """Draw the shared image picker in the sidebar and publish the chosen image."""
    sb = st.sidebar
    sb.markdown("### Input image")
    gallery = images.samples()
    keys = [s.key for s in gallery]
    by_key = {s.key: s for s in gallery}
    cols = sb.columns(3)
    for i, s in enumerate(gallery):
        cols[i % 3].image(str(s.path), width="stretch")
    choice = sb.radio(
        "Sample", keys, format_func=lambda k: by_key[k].title, key="sidebar_sample",
        horizontal=True, label_visibility="collapsed",
    )
    upload = sb.file_uploader(
        "…or upload your own", type=list(images.SUPPORTED), key="sidebar_upload",
        help=f"PNG, JPEG, WebP, BMP, GIF or TIFF, up to {images.MAX_BYTES // 2**20} MB and "
             f"{images.MAX_PIXELS // 1_000_000} megapixels.",
    )
    with sb.expander("Size", expanded=False):
        max_side = st.select_slider("Max side (px)", MAX_SIDES, value=384, key="sidebar_max_side",
                                    help="Large photos are shrunk so every page stays interactive.")
        crop = st.checkbox("Centre crop to a square", value=False, key="sidebar_crop")

    error = None
    base: Image.Image
    label: str
    if upload is not None:
        raw = upload.getvalue()
        try:
            base = _decode(raw, hashlib.sha1(raw).hexdigest())
            label = upload.name
        except images.ImageLoadError as exc:
            error = f"Couldn't use '{upload.name}': {exc}"
    if upload is None or error:
        sample = by_key[choice]
        base = _sample(str(sample.path))
        label = sample.title if not error else f"{sample.title} (sample, since the upload failed)"
    prepared = images.prepare(base, max_side=max_side, crop_square=crop)
    st.session_state[KEY_IMAGE] = prepared
    st.session_state[KEY_LABEL] = label
    st.session_state[KEY_ERROR] = error
    st.session_state[KEY_NOTE] = base.info.get("note", "")
    if error:
        sb.error(error, icon=":material/error:")
    note = base.info.get("note")
    sb.caption(f"Using **{label}**, {prepared.width}x{prepared.height} px"
               + (f" (from {base.width}x{base.height})" if prepared.size != base.size else "")
               + (f". {note}." if note else "."))


def current_image() -> Image.Image:
    """The image chosen in the sidebar (RGB), or the default sample when none was chosen."""
    im = st.session_state.get(KEY_IMAGE)
    if im is None:
        im = images.prepare(_sample(str(images.samples()[0].path)), max_side=384)
        st.session_state[KEY_IMAGE] = im
        st.session_state[KEY_LABEL] = images.samples()[0].title
    return im


def current_label() -> str:
    """A short name of the current image for captions."""
    current_image()
    return st.session_state.get(KEY_LABEL, "image")


def show_input_warning() -> None:
    """On a page: repeat the sidebar's upload error, if any, as a one-line banner."""
    err = st.session_state.get(KEY_ERROR)
    if err:
        st.warning(err + " Showing the sample image instead.", icon=":material/warning:")
