"""AppTest for the Augmentation studio page (pages/augmentation.py run on its own)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from streamlit.testing.v1 import AppTest

from cnnviz import augment as A

from .pagetest import open_page, page_path

PAGE = page_path("augmentation")


def _app() -> AppTest:
    return open_page(PAGE, timeout=90)


def _grid(at: AppTest, n: int = 12) -> list[str]:
    """Media URLs of the preview grid (content-hashed, so equal pictures give equal URLs)."""
    urls = [im.proto.imgs[0].url for im in at.get("image")]
    return urls[:n]


def _pipeline(at: AppTest) -> A.Pipeline:
    return A.Pipeline.from_json(at.session_state["augment_pipeline_json"])


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_renders_default_pipeline_grid_strip_and_code():
    at = _app()
    assert not _errors(at)
    assert _pipeline(at) == A.preset("tutorial-mnist")
    assert len(at.get("image")) == 12 + 7          # grid + strip (original + 6 steps)
    codes = [c.value for c in at.code]
    assert any("transform = v2.Compose([" in c for c in codes)
    assert any(json.loads(c) == A.preset("tutorial-mnist").to_dict() for c in codes if c.startswith("{"))
    assert len(at.get("download_button")) == 2
    strip_caps = [c.value for c in at.caption if c.value.startswith("**4. RandomDiscreteRotation")]
    assert strip_caps and any(a in strip_caps[0] for a in ("angle: 90", "angle: 180", "angle: 270"))


def test_same_seed_same_grid_other_seed_other_grid():
    at = _app()
    first = _grid(at)
    at.run()
    assert _grid(at) == first
    at.number_input(key="aug_seed").set_value(5).run()
    assert not at.exception
    other = _grid(at)
    assert other != first
    at.number_input(key="aug_seed").set_value(0).run()
    assert _grid(at) == first


def test_add_remove_reorder_and_edit_steps():
    at = _app()
    before = _grid(at)
    at.selectbox(key="aug_add_name").set_value("ColorJitter").run()
    at.button(key="aug_add").click().run()
    assert not at.exception and not _errors(at)
    names = [s.name for s in _pipeline(at).steps]
    assert names[-1] == "ColorJitter" and len(names) == 7
    assert _grid(at) != before                      # adding a step changes the pictures
    at.button(key="aug_rm_0").click().run()         # remove the first step (H-flip)
    assert [s.name for s in _pipeline(at).steps][0] == "RandomVerticalFlip"
    at.button(key="aug_down_1").click().run()       # V-flip moves below RandomRotation
    assert [s.name for s in _pipeline(at).steps][:2] == ["RandomRotation", "RandomVerticalFlip"]
    at.button(key="aug_up_1").click().run()
    assert [s.name for s in _pipeline(at).steps][:2] == ["RandomVerticalFlip", "RandomRotation"]
    at.slider(key="aug_w_1_p").set_value(1.0).run()  # edit V-flip's p through its generated widget
    assert _pipeline(at).steps[0].params["p"] == 1.0
    at.slider(key="aug_w_2_degrees").set_value((10.0, 40.0)).run()
    assert _pipeline(at).steps[1].params["degrees"] == [10.0, 40.0]


def test_presets_and_bad_widget_value():
    at = _app()
    at.selectbox(key="aug_preset").set_value("cifar-standard").run()
    at.button(key="aug_load_preset").click().run()
    assert _pipeline(at) == A.preset("cifar-standard")
    at.selectbox(key="aug_add_name").set_value("Normalize").run()
    at.button(key="aug_add").click().run()
    assert not at.exception and not _errors(at)
    box = [t for t in at.text_input if t.key.endswith("_mean")][0]
    box.input("0.5, abc").run()
    assert not at.exception
    assert any("not a number" in e for e in _errors(at))


def test_json_import_good_and_bad():
    at = _app()
    at.text_area(key="aug_import_text").input('{"steps": [{"name": "Rotate"}]}').run()
    at.button(key="aug_import_btn").click().run()
    assert not at.exception
    assert any("unknown transform 'Rotate'" in e for e in _errors(at))
    assert _pipeline(at) == A.preset("tutorial-mnist")   # unchanged
    at.text_area(key="aug_import_text").input("not json").run()
    at.button(key="aug_import_btn").click().run()
    assert not at.exception and any("Not valid JSON" in e for e in _errors(at))
    good = A.preset("randaugment").to_json()
    at.text_area(key="aug_import_text").input(good).run()
    at.button(key="aug_import_btn").click().run()
    assert not at.exception and not _errors(at)
    assert _pipeline(at) == A.preset("randaugment")


@dataclass
class _FakeDS:
    images: torch.Tensor
    labels: torch.Tensor
    classes: list


def test_dataset_samples_with_mixup(monkeypatch):
    import streamlit as st

    import cnnviz.data as data

    g = torch.Generator().manual_seed(0)
    fake = _FakeDS(torch.randint(0, 256, (40, 3, 32, 32), generator=g, dtype=torch.uint8),
                   torch.arange(40) % 4, ["a", "b", "c", "d"])
    monkeypatch.setattr(data, "load_dataset", lambda spec, split="train", **kw: fake)
    st.cache_resource.clear()
    at = _app()
    at.text_area(key="aug_import_text").input(
        '{"steps": [{"name": "RandomHorizontalFlip"}, {"name": "MixUp"}]}').run()
    at.button(key="aug_import_btn").click().run()
    at.radio(key="aug_source").set_value("Dataset samples").run()
    assert not at.exception and not _errors(at)
    caps = [im.proto.imgs[0].caption for im in at.get("image")][:12]
    assert all(c for c in caps) and any(" + " in c for c in caps)   # mixed soft labels
    st.cache_resource.clear()


@pytest.mark.parametrize("preset", ["autoaugment", "none"])
def test_other_presets_render(preset):
    at = _app()
    at.selectbox(key="aug_preset").set_value(preset).run()
    at.button(key="aug_load_preset").click().run()
    assert not at.exception and not _errors(at)
    assert _pipeline(at) == A.preset(preset)


def _warnings(at: AppTest) -> list[str]:
    return [w.value for w in at.warning]


def test_previewing_digits_warns_once_about_label_changing_steps():
    at = _app()
    assert not _warnings(at)                                   # the sidebar image: no dataset, no warning
    at.radio(key="aug_source").set_value("Dataset samples").run()
    assert not _warnings(at)                                   # shapes: flips keep a shape a shape
    at.selectbox(key="aug_dataset").set_value("digits").run()
    assert not at.exception and not _errors(at)
    (line,) = _warnings(at)
    assert "\n" not in line and "RandomHorizontalFlip" in line and "RandomDiscreteRotation" in line
    assert "6 upside down is a 9" in line                      # and why
    caps = [im.proto.imgs[0].caption for im in at.get("image")][:12]
    assert set(caps) <= {str(d) for d in range(10)}            # the grid shows the digits' labels
    at.selectbox(key="aug_preset").set_value("digit-safe").run()
    at.button(key="aug_load_preset").click().run()
    assert _pipeline(at) == A.preset("digit-safe")
    assert not _warnings(at) and not _errors(at)
    # one flip added to the digit-safe pipeline brings the warning back, naming that step
    at.selectbox(key="aug_add_name").set_value("RandomVerticalFlip").run()
    at.button(key="aug_add").click().run()
    (line,) = _warnings(at)
    assert "2. RandomVerticalFlip" in line and "RandomAffine" not in line
