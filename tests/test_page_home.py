"""AppTest of the home page file: it renders, links every page, shows device and versions."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from streamlit.testing.v1 import AppTest

from ui import image_state
from ui.nav import PAGES

ROOT = Path(__file__).resolve().parent.parent
HOME = str(ROOT / "pages" / "home.py")


def _run(**state) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=60)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception
    return at


def test_home_renders_links_device_and_versions():
    at = _run()
    assert at.title[0].value == "cnnviz"
    titles = " ".join(m.value for m in at.markdown)  # alone, without st.navigation: plain titles
    assert all(f"**{p.title}**" in titles for p in PAGES[1:])
    md = " ".join(m.value for m in at.markdown)
    for section in ("Operations", "Data", "Models", "Training"):
        assert f"#### {section}" in md
    captions = " ".join(c.value for c in at.caption)
    for p in PAGES[1:]:
        assert p.blurb in captions, p.title
    # the device line: the same facts computed independently here
    success = at.success[0].value
    if torch.cuda.is_available():
        assert success.startswith("CUDA: ") and torch.cuda.get_device_name(0) in success
    else:
        assert success.startswith(("CPU: ", "MPS"))
        if success.startswith("CPU: "):
            assert f"{torch.get_num_threads()} threads" in success
    assert f"torch {torch.__version__}" in captions
    assert "streamlit " in captions and "pillow " in captions
    assert not at.warning  # no upload problem, no banner


def test_home_repeats_the_upload_error_banner():
    at = _run(**{image_state.KEY_ERROR: "Couldn't use 'x.png': The file is empty (0 bytes)."})
    assert "Couldn't use 'x.png'" in at.warning[0].value
    assert "Showing the sample image instead" in at.warning[0].value


def test_home_through_app_links_every_page():
    """Run app.py (st.navigation, sidebar included): home is the default page, with real links."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert at.title[0].value == "cnnviz"
    links = [link.proto.page for link in at.page_link]
    assert sorted(links) == sorted(p.url for p in PAGES[1:]), links
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "Using " in captions


def test_the_server_sets_a_passive_openmp_wait_policy_before_torch_is_imported():
    """`streamlit run app.py` imports app.py first: it must set OMP_WAIT_POLICY before any page
    imports torch (spinning OpenMP threads beside busy training runs made a page 30x slower)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import os, sys, app; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split()[-2:] == ["PASSIVE", "False"], out.stdout + out.stderr
