"""One visual language across pages: titles, captions, error boxes."""

from __future__ import annotations

import streamlit as st

from . import image_state


def _ensure_app_navigation() -> None:
    """Run the page through app.py's navigation, even on a fresh server's first request.

    Streamlit treats an app with a `pages/` folder as an old-style (v1) multipage app until
    `st.navigation` has been called once in the process: until then a first request for
    /train runs pages/training.py on its own, without app.py's menu, sidebar or wide layout.
    Here, in that case, we switch the process to `st.navigation` mode and rerun, which runs
    app.py and resolves the same address to the same page.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def page_header(title: str, intro: str) -> None:
    """Title, one-paragraph intro, and the input-image warning banner if any."""
    _ensure_app_navigation()
    st.title(title)
    st.markdown(intro)
    image_state.show_input_warning()


def user_error(message: str) -> None:
    """A one-line explanation of bad input; the page carries on."""
    st.error(message, icon=":material/error:")
