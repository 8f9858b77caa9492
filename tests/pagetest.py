"""Shared helpers for the AppTests of single page files (pages/<name>.py run on their own).

A page run alone gets the default sample image (ui.image_state), so no sidebar is needed;
state a test wants (an image, a preset widget value) goes in `state` before the first run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest

PAGES_DIR = Path(__file__).resolve().parent.parent / "pages"


def page_path(name: str) -> str:
    """Absolute path of pages/<name>.py ("convolution" or "convolution.py")."""
    return str(PAGES_DIR / (name if name.endswith(".py") else f"{name}.py"))


def ok(at: AppTest) -> None:
    """No exception and no error box on the page."""
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def open_page(name: str, *, timeout: float = 120, state: dict[str, Any] | None = None,
              run: bool = True, clean: bool = False) -> AppTest:
    """An AppTest of pages/<name>.py with `state` preset, run once (no exception allowed;
    with `clean`, no error box either)."""
    at = AppTest.from_file(page_path(name), default_timeout=timeout)
    for key, value in (state or {}).items():
        at.session_state[key] = value
    if run:
        at.run()
        assert not at.exception, at.exception
        if clean:
            ok(at)
    return at


LARGE_MODELS = ["alexnet", "vgg11", "vgg16", "googlenet", "resnet18", "resnet50", "resnet18_cifar"]


def large_builds() -> dict[str, int]:
    """How often each large model was built with real weights so far (see models.build_count):
    compare before and after a page run to show it built nothing nobody asked for."""
    from cnnviz import models

    return {n: models.build_count(n) for n in LARGE_MODELS}
