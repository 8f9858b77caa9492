"""AppTest: the Projector page (pages/projector.py): the shipped digits LeNet5's test set in PCA, t-SNE,
3-D and colourings (computed in the background: the test waits for the jobs, then reruns), the hover
pictures' component beside each chart (AppTest keeps it as an unknown element: its data is checked
here, what it draws in tests/browser/test_projector.py), refusals, and a run's epochs on the last
epoch's PCA axes."""

from __future__ import annotations

import json

import pytest
import streamlit as st

from cnnviz.inspect import projector, loading
from cnnviz.train import TrainConfig

from .runtools import train_run
from .pagetest import ok, open_page, page_path

PAGE = page_path("projector")
pytestmark = pytest.mark.skipif("digits" not in loading.shipped_for("lenet5"),
                                reason="assets/checkpoints/lenet5-digits.safetensors is not shipped")


def _settled(at):
    """Let the background jobs finish, then rerun: what the page's polling fragment does in a browser."""
    projector.wait_jobs(600)
    at.run()
    ok(at)
    return at


def _caption(at, text: str) -> str:
    hits = [c.value for c in at.caption if text in c.value]
    assert hits, [c.value[:90] for c in at.caption]
    return hits[0]


def _hover(at, box: str) -> dict:
    """The data the hover-pictures component got: mounted once, in the chart's own container."""
    comps = [e for e in at.get("bidi_component") if e.proto.component_name == "cnnviz.scatter_hover"]
    assert len(comps) == 1, [e.proto.component_name for e in at.get("bidi_component")]
    d = json.loads(comps[0].proto.json)
    assert d["box"] == box and comps[0].key == f"{box}_hover"
    assert "cnnviz-hover" in comps[0].proto.js_content and "plotly_hover" in comps[0].proto.js_content
    return d


def test_digits_test_set_in_pca_tsne_and_3d():
    at = open_page(PAGE, timeout=300)
    ok(at)
    _settled(at)
    cap = _caption(at, "test images")
    assert cap.startswith("500 of the 500 digits test images") and "laid out by PCA in 2-D" in cap
    assert "penultimate (the 32 inputs of `fc_unit.2`)" in cap and "right on 98.6%" in cap
    chart = at.get("plotly_chart")[0]
    assert '"customdata"' in chart.proto.spec and "scattergl" in chart.proto.spec
    # the sprite sheet of the 500 28x28 digits: 23 columns, 22 rows, served by the media endpoint
    d = _hover(at, "pj_scatter_box")
    assert (d["count"], d["tile"], d["cols"], d["rows"], d["size"]) == (500, 28, 23, 22, 96)
    assert "/media/" in d["url"] and d["url"].endswith(".png")
    at.radio(key="pj_method").set_value("t-SNE").run()
    _settled(at)
    assert "laid out by t-SNE in 2-D" in _caption(at, "test images")
    at.radio(key="pj_dim").set_value("3-D").run()
    at.radio(key="pj_colour").set_value("right / wrong").run()
    _settled(at)
    assert "laid out by t-SNE in 3-D" in _caption(at, "test images")
    assert "scatter3d" in at.get("plotly_chart")[0].proto.spec
    assert _hover(at, "pj_scatter3d_box")["url"] == d["url"]     # the same sheet: cached per test set


def test_pooled_layer_and_a_refusal():
    at = open_page(PAGE, timeout=300)
    at.selectbox(key="pj_layer_lenet5").set_value("conv_unit.2").run()
    _settled(at)
    assert "`conv_unit.2` (averaged over positions) (32 values each)" in _caption(at, "test images")
    at.selectbox(key="pj_spec").set_value("shapes").run()   # 3-channel images for a 1-channel model
    projector.wait_jobs(600)
    at.run()
    assert not at.exception
    assert any("3-channel images; this model reads 1-channel" in e.value for e in at.error)


def test_no_sprite_sheet_over_the_memory_budget_is_one_line(monkeypatch):
    """A 3 MB budget: the features fit, the 500 digits' sprite sheet (~4 MB) does not: the chart is still
    drawn and selectable, with one line saying why there are no pictures on hover."""
    monkeypatch.setenv("CNNVIZ_SERVER_BUDGET_MB", "3")
    st.cache_resource.clear()     # a sheet another test made would be reused
    try:
        at = open_page(PAGE, timeout=300)
        _settled(at)
        assert at.get("plotly_chart") and not at.get("bidi_component")
        line = _caption(at, "No pictures on hover")
        assert "\n" not in line and "Refused: a sprite sheet of 500 thumbnails" in line
    finally:
        st.cache_resource.clear()  # nor a refusal reused by the next


def test_a_runs_epochs_on_the_last_epochs_axes(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("CNNVIZ_RUNS", str(root))
    train_run(root, TrainConfig(model="lenet5", dataset="shapes", epochs=2, batch_size=32, device="cpu", seed=0,
                                limit_train=256, limit_test=120))
    at = open_page(PAGE, timeout=300, state={"pj_source_lenet5": "A training run"})
    _settled(at)
    assert "shapes test images" in _caption(at, "test images")
    at.button(key="pj_epochs_go").click().run()
    _settled(at)
    assert at.select_slider(key="pj_epoch").value == 2
    assert "fitted on the last epoch (2)" in _caption(at, "PCA axes")
    at.select_slider(key="pj_epoch").set_value(1).run()
    ok(at)
    assert _caption(at, "PCA axes").startswith("Epoch 1:")
    assert "at epoch 1" in _caption(at, "Silhouette of the true classes")


def test_an_uploaded_checkpoint_cannot_name_a_folder_to_read(tmp_path):
    """An upload's metadata naming `folder:/somewhere` is not a dataset the server reads: only the
    built-in test sets are offered."""
    from cnnviz.models.checkpoints import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(loading.shipped_for("lenet5")["digits"])
    meta = {**ckpt.meta, "dataset": f"folder:{tmp_path}"}
    path = tmp_path / "evil.safetensors"
    save_checkpoint(ckpt.state_dict, path, meta)
    at = open_page(PAGE, timeout=300, state={"pj_source_lenet5": "Upload a checkpoint"})
    at.file_uploader(key="pj_upload").set_value(("evil.safetensors", path.read_bytes(), "application/octet-stream")).run()
    ok(at)
    assert at.selectbox(key="pj_spec").options == ["digits", "shapes"]
    _settled(at)
    assert "500 of the 500 digits test images" in _caption(at, "test images")
