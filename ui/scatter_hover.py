"""The picture under the mouse on a plotly scatter: `hover_pictures(box_key, sprite)`.

plotly's hover labels cannot hold an <img>, so this is a small custom component (Streamlit components
v2, scatter_hover.js/.css next to this file) mounted in the same `st.container(key=box_key)` as the
`st.plotly_chart`: it finds that chart's graph div, listens to its plotly_hover events and shows a
floating box with the point's thumbnail. The chart stays Streamlit's own, so its selections (click,
box, lasso) reach the page exactly as before. Every point's picture comes from one sprite sheet
(cnnviz.inspect.sprites): registered once per run with Streamlit's media file manager, the browser
fetches it once (by its URL, named by its content's hash) and the points name their tile (the second
column of their customdata).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import streamlit as st

from cnnviz.inspect.sprites import Sprite

_HERE = Path(__file__).resolve().parent
SIZE = 96      # the thumbnail's side on screen, in CSS pixels

_component = st.components.v2.component(
    "cnnviz.scatter_hover",
    html="",
    css=(_HERE / "scatter_hover.css").read_text(encoding="utf-8"),
    js=(_HERE / "scatter_hover.js").read_text(encoding="utf-8"),
    isolate_styles=False,   # a plain element: position: fixed relative to the window; names are prefixed
)


def _sprite_url(sprite: Sprite, coordinates: str) -> str:
    """A URL the browser can fetch the sheet from: Streamlit's media endpoint (as st.image's pictures are
    served), else a data: URL (no runtime, e.g. a bare script run)."""
    try:
        from streamlit import config
        from streamlit.runtime import get_instance

        url = get_instance().media_file_mgr.add(sprite.data, sprite.mime, coordinates)
        base = str(config.get_option("server.baseUrlPath") or "").strip("/")
        return f"/{base}{url}" if base and url.startswith("/") else url
    except Exception:  # noqa: BLE001 - the picture still gets there, only bigger on each rerun
        return f"data:{sprite.mime};base64,{base64.b64encode(sprite.data).decode('ascii')}"


def hover_pictures(box_key: str, sprite: Sprite, size: int = SIZE) -> None:
    """Thumbnails on hover for the plotly chart inside `st.container(key=box_key)` (call it in that container)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", box_key):
        raise ValueError(f"box_key must be letters, digits, _ or -: {box_key!r}")
    url = _sprite_url(sprite, f"cnnviz.scatter_hover.{box_key}")
    _component(key=f"{box_key}_hover", height="content", width="stretch",
               data={"box": box_key, "url": url, "tile": sprite.tile, "cols": sprite.cols, "rows": sprite.rows,
                     "count": sprite.count, "size": int(size)})
