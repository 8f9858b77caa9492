"""AppTest: the Microscope page on the page file itself, each view; the links from Feature maps and Runs.

Exemplars come from the built-in `shapes` test split (offline, any machine); one test uses the
real CIFAR-10 copy the shipped LeNet5 was trained on and skips where it is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnnviz.inspect.loading import shipped_checkpoints
from cnnviz.train import TrainConfig

from .runtools import train_run
from .pagetest import ok, open_page, page_path

PAGE = page_path("microscope")
SHAPES = {"ms_dataset": "shapes"}

pytestmark = pytest.mark.skipif("lenet5" not in shipped_checkpoints(),
                                reason="assets/checkpoints/lenet5-cifar10.safetensors is not shipped")


def _caption(at: AppTest, text: str) -> str:
    found = [c.value for c in at.caption if text in c.value]
    assert found, f"no caption with {text!r}: {[c.value[:80] for c in at.caption]}"
    return found[0]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVIZ_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def made_run(tmp_path_factory):
    """A finished LeNet5 run on shapes with 2 saved epochs (its epoch records carry layer stats)."""
    root = tmp_path_factory.mktemp("ms-runs")
    run_dir = train_run(root, TrainConfig(model="lenet5", dataset="shapes", epochs=2, batch_size=32, device="cpu",
                                          limit_train=256, limit_test=64))
    return root, run_dir.name


def test_default_render_shipped_lenet_all_views():
    at = open_page(PAGE, timeout=180, state=SHAPES, clean=True)
    assert at.selectbox(key="ms_model").value == "lenet5"
    assert at.radio(key="ms_source_lenet5").value == "Trained (shipped, CIFAR-10)"
    # filters: the first layer in colour, its scale in the caption
    cap = _caption(at, "`conv_unit.0` at these weights")
    assert "16 of 16 kernels (5x5x3) as RGB tiles" in cap and "full colour is ±" in cap
    # weights & gradients: histogram of the one checkpoint, dead ReLUs, the vanishing-gradient lesson
    assert "1 epoch(s)" in _caption(at, "Distribution of `conv_unit.0`")
    dead = [d.value for d in at.dataframe if "dead units %" in d.value.columns][0]
    assert list(dead["ReLU (called by)"]) == ["fc_unit.1"]
    lesson = _caption(at, "Gradient norm of each layer after one backward pass")
    assert "smaller at the input" in lesson
    # channel: 8 most and 8 least activating shapes test images, with their maps
    ex = _caption(at, "test images with the highest and the lowest peak activation of channel 0")
    assert "of 4,000 `shapes` test images" in ex and "computed in" in ex
    assert len([c for c in at.caption if c.value.startswith("#")]) == 0  # gallery captions are image captions
    assert len(at.get("image")) == 1 + 16  # the filter grid, 2 x 8 exemplars


def test_filters_of_a_deeper_layer_and_the_channel_view_controls():
    at = open_page(PAGE, timeout=180, state=SHAPES, clean=True)
    at.selectbox(key="ms_filters_layer_lenet5").set_value("conv_unit.2").run()
    ok(at)
    assert "a row per output channel (32 of 32), a tile per input channel (16 of 16)" in _caption(at, "`conv_unit.2`")
    at.selectbox(key="ms_layer_lenet5").set_value("conv_unit.2").run()
    ok(at)
    assert "computed in" in _caption(at, "peak activation of channel 0")  # a new layer: one pass
    at.number_input(key="ms_channel_lenet5_conv_unit.2").set_value(31).run()
    ok(at)
    assert "read from the cache" in _caption(at, "peak activation of channel 31")  # same layer: the same table
    assert "for all 32 channels at once" in _caption(at, "peak activation of channel 31")


def test_feature_and_class_visualisation_buttons():
    at = open_page(PAGE, timeout=180, state=SHAPES, clean=True)
    n = len(at.get("image"))
    at.button(key="ms_fv_go").click().run()
    ok(at)
    cap = _caption(at, "Maximises the mean of channel 0 of conv_unit.0")
    assert "256 steps" in cap and "seed 0" in cap
    at.selectbox(key="ms_fv_class_lenet5").set_value(3).run()
    at.button(key="ms_cv_go").click().run()
    ok(at)
    assert "logit of class 3" in _caption(at, "Maximises the logit")
    assert len(at.get("image")) == n + 2


def test_a_run_scrubs_filters_and_shows_logged_gradient_norms(made_run, monkeypatch):
    root, rid = made_run
    monkeypatch.setenv("CNNVIZ_RUNS", str(root))
    at = open_page(PAGE, timeout=180, state={**SHAPES, "ms_source_lenet5": "A training run"}, clean=True)
    assert at.selectbox(key="ms_run").value == rid
    assert at.select_slider(key=f"ms_epoch_{rid}").value == 2
    assert "`conv_unit.0` at epoch 2 of 2 saved" in _caption(at, "`conv_unit.0` at epoch")
    assert "2 epoch(s)" in _caption(at, "Distribution of `conv_unit.0`")
    assert "Logged by the trainer at the end of each of 2 epochs" in _caption(at, "Logged by the trainer")
    assert _caption(at, "Logged each epoch:")  # the update ratios the trainer logged
    at.select_slider(key=f"ms_epoch_{rid}").set_value(1).run()
    ok(at)
    assert "`conv_unit.0` at epoch 1 of 2 saved" in _caption(at, "`conv_unit.0` at epoch")
    assert "epoch 1" in [m.value for m in at.markdown if m.value.startswith("#### `conv_unit.0`")][0]


def test_hostile_budget_is_one_line_and_the_rest_of_the_page_works(monkeypatch):
    monkeypatch.setenv("CNNVIZ_SERVER_BUDGET_MB", "0.001")
    at = open_page(PAGE, timeout=180, state=SHAPES)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "over the server's budget" in errors[0] and "\n" not in errors[0]
    assert _caption(at, "`conv_unit.0` at these weights")  # the filters still show


def test_unloadable_weights_and_datasets_say_so():
    at = open_page(PAGE, timeout=180, state={"ms_dataset": "folder:/nonexistent/data"})
    assert not at.exception  # the folder is not an option: the first one is used instead
    at = open_page(PAGE, timeout=180, state={**SHAPES, "ms_source_lenet5": "Upload a checkpoint"})
    assert not at.exception and any("no checkpoint chosen yet" in i.value for i in at.info)


def test_feature_maps_opens_a_channel_in_the_microscope_and_back():
    fm = open_page(page_path("feature_maps"), timeout=180, clean=True)
    fm.selectbox(key="fm_channel_conv_unit.0").set_value(fm.selectbox(key="fm_channel_conv_unit.0").options[2])
    fm.run()
    chosen = int(fm.selectbox(key="fm_channel_conv_unit.0").value)
    fm.button(key="fm_open_microscope").click().run()
    assert not fm.exception
    hand = fm.session_state["microscope_handoff"]
    assert (hand["name"], hand["layer"], hand["channel"]) == ("lenet5", "conv_unit.0", chosen)
    assert hand["page"] == "Feature maps" and Path(hand["path"]).name == "lenet5-cifar10.safetensors"
    at = open_page(PAGE, timeout=180, state={**SHAPES, "microscope_handoff": hand}, clean=True)
    assert at.radio(key="ms_source_lenet5").value == "Opened from another page"
    assert at.number_input(key="ms_channel_lenet5_conv_unit.0").value == chosen
    assert f"channel {chosen}" in _caption(at, "peak activation of channel")
    # back: this image and these weights to Feature maps
    at.button(key="ms_open_image").click().run()
    assert not at.exception
    assert at.session_state["cnnviz_source"] == "picked"
    assert at.session_state["cnnviz_image_label"].startswith("shapes test #")
    assert Path(at.session_state["feature_maps_checkpoint"]).name == "lenet5-cifar10.safetensors"
    assert at.session_state["fm_layer_lenet5"] == "conv_unit.0"


def test_runs_opens_a_layer_in_the_microscope(made_run, monkeypatch):
    root, rid = made_run
    monkeypatch.setenv("CNNVIZ_RUNS", str(root))
    runs_page = open_page(page_path("runs"), timeout=180)
    runs_page.selectbox(key="runs_layer").set_value("conv_unit.2").run()
    runs_page.button(key="runs_open_microscope").click().run()
    assert not runs_page.exception
    hand = runs_page.session_state["microscope_handoff"]
    assert (hand["run_id"], hand["layer"]) == (rid, "conv_unit.2")
    at = open_page(PAGE, timeout=180, state={**SHAPES, "microscope_handoff": hand}, clean=True)
    assert at.radio(key="ms_source_lenet5").value == "A training run" and at.selectbox(key="ms_run").value == rid
    assert at.selectbox(key="ms_layer_lenet5").value == "conv_unit.2"


def test_exemplars_from_the_real_cifar10_test_set(cifar_jpeg):
    at = open_page(PAGE, timeout=300, clean=True)  # the shipped LeNet5's own dataset is the default
    assert at.selectbox(key="ms_dataset").value.startswith("folder:")
    assert "of 10,000 `folder:" in _caption(at, "peak activation of channel 0")


def test_a_one_channel_model_digits_lenet():
    if "lenet5" not in shipped_checkpoints(dataset="digits"):
        pytest.skip("the shipped digits LeNet5 is missing")
    at = open_page(PAGE, timeout=180, state={"ms_source_lenet5": "Trained (shipped, digits)"}, clean=True)
    assert at.selectbox(key="ms_dataset").value == "digits"
    assert "16 of 16 kernels (5x5, one input channel)" in _caption(at, "`conv_unit.0` at these weights")
    assert "of 500 `digits` test images" in _caption(at, "peak activation of channel 0")
    at.button(key="ms_fv_go").click().run()
    ok(at)
    assert "Maximises the mean of channel 0 of conv_unit.0" in _caption(at, "Maximises")
