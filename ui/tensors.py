"""Page-side caches of tensors made from the sidebar image (imports torch: pages only)."""

from __future__ import annotations

import streamlit as st
import torch
from PIL import Image

from cnnviz.images import display
from ui.image_state import image_digest


@st.cache_resource(show_spinner=False, max_entries=4)
def _input_tensor(digest: str, _im: Image.Image) -> torch.Tensor:
    return display.pil_to_tensor(_im.convert("RGB"))


def input_tensor(im: Image.Image) -> tuple[torch.Tensor, str]:
    """The image as a float (3, H, W) tensor in [0, 1], cached by content, and its digest."""
    digest = image_digest(im)
    return _input_tensor(digest, im), digest
