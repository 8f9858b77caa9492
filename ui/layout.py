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


def one_line(exc: BaseException) -> str:
    """The one line a page shows for an exception: its first line, or its type when it has no text;
    an OSError as 'reason: file'."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def error_line(prefix: str, exc: BaseException) -> None:
    """user_error(f"{prefix}: {one_line(exc)}")."""
    user_error(f"{prefix}: {one_line(exc)}")
