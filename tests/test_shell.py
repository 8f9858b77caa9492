"""The app shell: server config, navigation, the no-torch-before-paint rule, requirements,
CI script, and the sidebar image picker (AppTest on a script that draws it like app.py does).
"""

from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cnnviz import images
from ui import image_state
from ui.nav import PAGES

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- .streamlit/config.toml


@pytest.fixture(scope="module")
def config() -> dict:
    return tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())


def test_server_binds_localhost_headless_safe(config):
    server = config["server"]
    assert server["address"] == "127.0.0.1"
    assert server["headless"] is True
    assert server["enableXsrfProtection"] is True
    assert server["fileWatcherType"] == "none"
    assert server["maxUploadSize"] == 25
    assert server.get("runOnSave", False) is False


def test_no_full_gc_after_every_rerun(config):
    # a gc.collect(2) after every fragment rerun held the GIL ~0.1 s a poll and slowed runs
    # watched on the Train page (bench/page_polling.py: 0.60 of the CLI's throughput with it)
    assert config["runner"]["postScriptGC"] is False


def test_no_usage_stats_and_minimal_toolbar(config):
    assert config["browser"]["gatherUsageStats"] is False
    assert config["client"]["toolbarMode"] == "minimal"


def test_config_keys_are_real_streamlit_options(config):
    from streamlit import config as st_config

    known = st_config._config_options_template  # noqa: SLF001 - the option registry
    for section, values in config.items():
        if section == "theme":
            continue
        for key in values:
            assert f"{section}.{key}" in known, f"unknown option {section}.{key}"


def test_loader_byte_limit_matches_server_upload_limit(config):
    assert images.MAX_BYTES == config["server"]["maxUploadSize"] * 2**20


# ---------------------------------------------------------------- navigation


def test_nav_pages_exist_and_are_unique():
    assert PAGES[0].url == "home" and PAGES[0].section == ""
    assert [p.section for p in PAGES if p.section] == sorted(
        (p.section for p in PAGES if p.section), key=["Operations", "Data", "Models", "Training"].index
    )
    assert {p.section for p in PAGES} == {"", "Operations", "Data", "Models", "Training"}
    for field in ("path", "url", "title"):
        values = [getattr(p, field) for p in PAGES]
        assert len(values) == len(set(values)), f"duplicate {field}"
    for p in PAGES:
        assert (ROOT / p.path).is_file(), p.path
        assert re.fullmatch(r"[a-z][a-z-]*", p.url), p.url
        assert p.icon.startswith(":material/") and p.blurb.endswith(".")
    on_disk = {f"pages/{f.name}" for f in (ROOT / "pages").glob("*.py")}
    assert on_disk == {p.path for p in PAGES}, "a page file is missing from ui/nav.py (or vice versa)"


def test_app_builds_navigation_from_nav_and_draws_sidebar():
    src = (ROOT / "app.py").read_text()
    assert "st.navigation(" in src and "from ui.nav import PAGES" in src
    assert "sidebar_picker()" in src and 'layout="wide"' in src
    assert src.index("sidebar_picker()") < src.index("page.run()")


# ---------------------------------------------------------------- paint before torch


def _top_level_imports(path: Path, stop_at: str | None = None) -> list[str]:
    """Modules imported at the top level of a script, in order, up to `stop_at` (a module)."""
    mods: list[str] = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if stop_at is not None and base == stop_at.rsplit(".", 1)[0] and any(
                a.name == stop_at.rsplit(".", 1)[1] for a in node.names
            ):
                break
            names = [f"{base}.{a.name}" if base else a.name for a in node.names]
            names = [base] + names
        else:
            continue
        mods.extend(names)
    return mods


def _modules_loaded_by(imports: list[str]) -> set[str]:
    code = (
        "import importlib, sys, json\n"
        f"for m in {imports!r}:\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except ImportError:\n"
        "        pass  # 'from x import name' where name is not a module\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    import json

    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_app_level_modules_do_not_import_torch():
    imports = ["streamlit", "ui", "ui.image_state", "ui.layout", "ui.nav", "cnnviz", "cnnviz.images"]
    imports += _top_level_imports(ROOT / "app.py")
    loaded = _modules_loaded_by(imports)
    assert "ui.image_state" in loaded and "cnnviz.images" in loaded  # the check did import them
    heavy = sorted(m for m in loaded if m.split(".")[0] in ("torch", "torchvision"))
    assert not heavy, f"app shell imports {heavy[:5]}: the home page would not paint before torch"


def test_home_page_draws_before_importing_torch():
    home = ROOT / "pages" / "home.py"
    before = _top_level_imports(home, stop_at="cnnviz.device")
    assert "cnnviz.device" not in before
    src = home.read_text()
    assert src.index("st.page_link") < src.index("from cnnviz import device")
    loaded = _modules_loaded_by(before)
    assert "torch" not in loaded


# ---------------------------------------------------------------- requirements and CI


def _reqs(name: str) -> dict[str, str]:
    out = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            m = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", line)
            out[m.group(1).lower()] = m.group(2)
    return out


def test_requirements_have_floors_and_no_upper_pins():
    run = _reqs("requirements.txt")
    for pkg, floor in {"streamlit": "1.61", "torch": "2.6", "pillow": "12.2"}.items():
        assert run[pkg] == f">={floor}", (pkg, run.get(pkg))
    for pkg in ("torchvision", "plotly", "numpy", "safetensors"):
        assert pkg in run
    for pkg in ("onnx", "onnxscript", "onnxruntime", "tensorboard"):  # bundles and TensorBoard export
        assert run.get(pkg, "").startswith(">="), (pkg, run.get(pkg))
    dev = _reqs("requirements-dev.txt")
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text()
    for pkg in ("pytest", "playwright", "pytest-timeout"):
        assert pkg in dev
    for spec in list(run.values()) + list(dev.values()):
        assert "<" not in spec and "==" not in spec, spec


def test_ci_script_runs_the_readme_test_command():
    ci = ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK), ".ci/run must be executable"
    src = ci.read_text()
    assert src.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in src
    assert "pip install -r requirements-dev.txt" in src.replace("-q ", "")
    assert "python -m pytest" in src and "apt-get install" in src and "chromium" in src
    assert re.search(r"^export CI=", src, re.M)  # browser tests must fail, not skip, in CI
    readme = (ROOT / "README.md").read_text()
    assert "pip install -r requirements-dev.txt && python -m pytest" in readme
    assert "pip install -r requirements.txt && streamlit run app.py" in readme
    out = subprocess.run(["bash", "-n", str(ci)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


# ---------------------------------------------------------------- the sidebar picker (AppTest)


def _picker_script():
    import streamlit as st

    from ui.image_state import current_image, current_label, sidebar_picker
    from ui.layout import page_header

    sidebar_picker()
    page_header("Probe", "A page that reports what it gets.")
    im = current_image()
    st.text(f"PAGE {current_label()} {im.width}x{im.height} {im.mode}")


def _page_line(at) -> str:
    return next(t.value for t in at.text if t.value.startswith("PAGE "))


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    arr = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def picker():
    at = AppTest.from_function(_picker_script, default_timeout=30)
    at.run()
    assert not at.exception
    return at


def test_picker_defaults_to_first_sample(picker):
    first = images.samples()[0]
    assert _page_line(picker).startswith(f"PAGE {first.title} ")
    w, h = map(int, _page_line(picker).split()[-2].split("x"))
    assert max(w, h) == image_state.DEFAULT_MAX_SIDE
    assert picker.sidebar.button(key=f"sidebar_sample_{first.key}").proto.type == "primary"
    assert any("Using" in c.value for c in picker.sidebar.caption)


def test_picker_sample_click_and_size(picker):
    at = picker
    at.sidebar.button(key="sidebar_sample_coffee").click().run()
    assert "PAGE Coffee " in _page_line(at)
    assert at.sidebar.button(key="sidebar_sample_coffee").proto.type == "primary"
    assert at.sidebar.button(key="sidebar_sample_cat").proto.type == "secondary"
    at.select_slider(key="sidebar_max_side").set_value(128).run()
    assert re.search(r"128x\d+ RGB$|\d+x128 RGB$", _page_line(at)), _page_line(at)
    at.checkbox(key="sidebar_crop").check().run()
    assert _page_line(at).endswith("128x128 RGB")
    assert not at.exception


def test_picker_upload_and_corrupt_upload(picker):
    at = picker
    at.sidebar.file_uploader[0].set_value(("mine.png", _png(300, 100), "image/png")).run()
    assert not at.exception
    assert _page_line(at) == "PAGE mine.png 300x100 RGB"
    assert not at.warning and not at.sidebar.error
    # a sample button is no longer highlighted while an upload is in use
    assert all(b.proto.type == "secondary" for b in at.sidebar.button if b.key.startswith("sidebar_sample_"))
    broken = _png(300, 100)
    at.sidebar.file_uploader[0].set_value(("broken.png", broken[: len(broken) // 2], "image/png")).run()
    assert not at.exception
    assert "PAGE Cat" in _page_line(at)  # falls back to the chosen sample
    assert "Couldn't use 'broken.png'" in at.sidebar.error[0].value
    assert "truncated or corrupt" in at.sidebar.error[0].value
    assert "Couldn't use 'broken.png'" in at.warning[0].value  # the page's banner
    # clicking a sample clears the upload (and the error)
    at.sidebar.button(key="sidebar_sample_rocket").click().run()
    assert "PAGE Rocket" in _page_line(at)
    assert not at.sidebar.error and not at.warning


def test_upload_of_an_animated_gif_says_first_frame(picker):
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    picker.sidebar.file_uploader[0].set_value(("anim.gif", buf.getvalue(), "image/gif")).run()
    caption = " ".join(c.value for c in picker.sidebar.caption)
    assert "anim.gif" in caption and "first frame used" in caption, caption


def test_current_image_is_a_copy_and_works_alone():
    at = AppTest.from_string(
        "import streamlit as st\n"
        "from ui.image_state import current_image, current_label\n"
        "a = current_image(); a.paste((0, 0, 0), (0, 0, a.width, a.height))\n"
        "b = current_image()\n"
        "st.text(f'{current_label()} {b.getextrema()}')\n",
        default_timeout=30,
    )
    at.run()
    assert not at.exception
    label, extrema = at.text[0].value.split(" ", 1)
    assert label == images.samples()[0].title.split()[0]
    assert extrema != "((0, 0), (0, 0), (0, 0))"  # painting a copy black left the shared image alone


# ---------------------------------------------------------------- the drawing canvas


class _FakeCanvas:
    """Stands in for streamlit_drawable_canvas in AppTest (the real one is a browser component):
    st_canvas returns what the test put in session state under 'fake_canvas'."""

    class Result:
        def __init__(self, json_data, png):
            self.json_data, self._png = json_data, png

        @property
        def image_bytes(self):
            return self._png

    def st_canvas(self, **kwargs):
        import streamlit as st

        st.session_state["fake_canvas_kwargs"] = kwargs
        json_data, png = st.session_state.get("fake_canvas", ({"objects": []}, None))
        return self.Result(json_data, png)


def _stroke(n: int = 1) -> tuple[dict, bytes]:
    """Canvas JSON with n strokes and the PNG the browser would send (black ink, transparent paper)."""
    side = image_state.CANVAS_SIDE
    im = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    from PIL import ImageDraw

    for i in range(n):
        ImageDraw.Draw(im).line((60 + 30 * i, 40, 60 + 30 * i, 150), fill=(0, 0, 0, 255), width=18)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return {"objects": [{"type": "Path", "path": [["M", 60 + 30 * i, 40], ["L", 60 + 30 * i, 150]]}
                        for i in range(n)]}, buf.getvalue()


@pytest.fixture
def drawn(monkeypatch):
    monkeypatch.setitem(sys.modules, "streamlit_drawable_canvas", _FakeCanvas())
    at = AppTest.from_function(_picker_script, default_timeout=30)
    at.run()
    assert not at.exception
    return at


def _primary_samples(at) -> list[str]:
    return [b.key for b in at.sidebar.button if b.key.startswith("sidebar_sample_") and b.proto.type == "primary"]


def test_canvas_is_offered_with_brush_width_and_an_empty_canvas_changes_nothing(drawn):
    at = drawn
    kwargs = at.session_state["fake_canvas_kwargs"]
    assert kwargs["key"] == image_state.CANVAS_KEY and kwargs["drawing_mode"] == "freedraw"
    assert kwargs["width"] == kwargs["height"] == image_state.CANVAS_SIDE and kwargs["return_image_data"]
    assert kwargs["stroke_color"] == "#000000" and kwargs["background_color"] == "#FFFFFF"
    assert kwargs["stroke_width"] == image_state.BRUSH[2]
    at.slider(key="sidebar_brush").set_value(30).run()
    assert at.session_state["fake_canvas_kwargs"]["stroke_width"] == 30
    assert _page_line(at).startswith(f"PAGE {images.samples()[0].title} ")  # still the sample
    assert at.session_state[image_state.KEY_SOURCE] == "sample"


def test_a_stroke_makes_the_drawing_the_input_until_a_sample_is_clicked(drawn):
    at = drawn
    side = image_state.CANVAS_SIDE
    at.session_state["fake_canvas"] = _stroke(1)
    at.run()
    assert not at.exception
    assert _page_line(at) == f"PAGE your drawing {side}x{side} RGB"
    assert _primary_samples(at) == []
    assert any(f"Using **your drawing**, {side}×{side} px" in c.value for c in at.sidebar.caption)
    drawing = at.session_state[image_state.KEY_DRAWING]
    assert drawing.strokes == 1 and drawing.image.getpixel((5, 5)) == (255, 255, 255)  # paper is white
    assert drawing.image.getpixel((60, 100)) == (0, 0, 0)
    # a sample click takes over; the unchanged drawing does not take it back...
    at.sidebar.button(key="sidebar_sample_coffee").click().run()
    assert "PAGE Coffee" in _page_line(at) and _primary_samples(at) == ["sidebar_sample_coffee"]
    at.run()
    assert "PAGE Coffee" in _page_line(at)
    # ...a button does, and so does a new stroke
    at.button(key="sidebar_use_drawing").click().run()
    assert _page_line(at).startswith("PAGE your drawing")
    at.sidebar.button(key="sidebar_sample_rocket").click().run()
    at.session_state["fake_canvas"] = _stroke(2)
    at.run()
    assert _page_line(at).startswith("PAGE your drawing") and at.session_state[image_state.KEY_DRAWING].strokes == 2


def test_cleared_canvas_is_an_empty_drawing_and_uploads_and_strokes_take_turns(drawn):
    at = drawn
    side = image_state.CANVAS_SIDE
    at.session_state["fake_canvas"] = _stroke(1)
    at.run()
    at.session_state["fake_canvas"] = ({"objects": []}, None)   # the bin (or undo of the last stroke)
    at.run()
    assert _page_line(at) == f"PAGE your drawing (empty) {side}x{side} RGB"
    at.sidebar.file_uploader[0].set_value(("mine.png", _png(300, 100), "image/png")).run()
    assert _page_line(at) == "PAGE mine.png 300x100 RGB"
    at.session_state["fake_canvas"] = _stroke(1)
    at.run()
    assert _page_line(at).startswith("PAGE your drawing ")
    assert not at.sidebar.error and not at.exception


def test_drawing_from_canvas_reads_the_browser_reply():
    assert image_state.drawing_from_canvas(None, None) is None            # nothing sent yet
    empty = image_state.drawing_from_canvas({"objects": []}, None)
    assert empty.strokes == 0 and empty.image.size == (image_state.CANVAS_SIDE,) * 2
    assert empty.image.getextrema() == ((255, 255), (255, 255), (255, 255))
    json_data, png = _stroke(2)
    d = image_state.drawing_from_canvas(json_data, png)
    assert d.strokes == 2 and d.image.mode == "RGB" and d.digest
    assert image_state.drawing_from_canvas(json_data, png).digest == d.digest
    assert image_state.drawing_from_canvas(json_data, b"garbage") is None   # refused like a bad upload
    assert image_state.drawing_from_canvas(json_data, None) is None
