"""One visual language across pages: titles, captions, error boxes."""

from __future__ import annotations

import streamlit as st

from . import image_state


def page_header(title: str, intro: str) -> None:
    """Title, one-paragraph intro, and the input-image warning banner if any."""
    st.title(title)
    st.markdown(intro)
    image_state.show_input_warning()


def user_error(message: str) -> None:
    """A one-line explanation of bad input; the page carries on."""
    st.error(message, icon=":material/error:")
