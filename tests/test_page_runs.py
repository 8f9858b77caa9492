"""AppTest of pages/runs.py on a tiny run trained here: comparison, confusion matrix, mistakes, scrubber."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cnnviz.train import evaluate
from cnnviz import runs
from cnnviz.runs.layout import new_run_dir
from cnnviz.train import TrainConfig, fit

from .pagetest import open_page, page_path
from .runtools import train_run

PAGE = page_path("runs")


@pytest.fixture(scope="module")
def _made_runs(tmp_path_factory):
    """Its own runs folder with two finished tiny runs (LeNet5 on shapes, 2 epochs each)."""
    root = tmp_path_factory.mktemp("runs-page")
    made = []
    for seed in (0, 1):
        made.append(train_run(root, TrainConfig(model="lenet5", dataset="shapes", epochs=2, batch_size=32,
                                                device="cpu", seed=seed, limit_train=256, limit_test=120)).name)
    return root, made


@pytest.fixture
def runs_dir(_made_runs, monkeypatch):
    """The two runs, in the runs folder of this test ($CNNVIZ_RUNS)."""
    monkeypatch.setenv("CNNVIZ_RUNS", str(_made_runs[0]))
    return _made_runs


def _page() -> AppTest:
    return open_page(PAGE, timeout=120)


def _caption(at: AppTest, start: str) -> str:
    hits = [c.value for c in at.caption if c.value.startswith(start)]
    return hits[0] if hits else ""


def test_empty_runs_folder_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVIZ_RUNS", str(tmp_path))
    at = _page()
    assert any("No runs yet" in i.value for i in at.info)


def test_evaluation_agrees_with_the_trainers_test_accuracy(runs_dir):
    root, made = runs_dir
    run = runs.read_run(root / made[0])
    ev = evaluate.evaluate_run(run)
    assert len(ev.labels) == 120  # the run's own limit_test subset
    # the trainer scored the same weights on the same images in its own loop
    assert ev.accuracy == pytest.approx(run.epochs[-1]["test_acc"], abs=1e-9)
    cm = evaluate.confusion_matrix(ev.labels, ev.preds, len(ev.classes))
    assert cm.sum() == 120 and np.trace(cm) == round(120 * run.epochs[-1]["test_acc"])


def test_page_compares_and_inspects(runs_dir):
    root, made = runs_dir
    at = _page()
    assert set(at.multiselect(key="runs_compare").value) == set(made)
    charts = at.get("plotly_chart")
    assert len(charts) >= 4  # two comparison charts, confusion matrix, per-class accuracy
    assert len(at.dataframe) == 1
    md = " ".join(m.value for m in at.markdown)
    assert "of 120 test images right" in md
    # the comparison follows the multiselect
    at.multiselect(key="runs_compare").set_value([made[0]]).run()
    assert not at.exception
    assert _caption(at, "test accuracy (%) after each epoch").endswith("(2 epoch points in all).")
    # pick a confusion-matrix cell: the gallery caption follows it
    classes = at.selectbox(key="runs_true").options
    at.selectbox(key="runs_true").set_value(0).run()
    at.selectbox(key="runs_pred").set_value(0).run()
    assert not at.exception
    n_right = _independent_predictions(root, at.selectbox(key="runs_one").value).count((0, 0))
    cap = [c.value for c in at.caption if "predicted as" in c.value]
    info = [i.value for i in at.info if "was predicted as" in i.value]
    if n_right:
        assert cap and f"of {n_right} test images of class **{classes[0]}** predicted as **{classes[0]}**" in cap[0]
    else:
        assert info and not cap
    # normalising the matrix changes its numbers
    z_before = at.get("plotly_chart")[2].proto.spec
    at.toggle(key="runs_cm_norm").set_value(True).run()
    assert not at.exception and at.get("plotly_chart")[2].proto.spec != z_before


def test_scrubber_changes_with_the_epoch_and_layer(runs_dir):
    at = _page()
    slider = at.select_slider(key="runs_epoch")
    assert list(slider.options) == ["1", "2"] and slider.value == 2
    cap2 = _caption(at, "conv_unit.0 at epoch 2")
    assert cap2
    at.select_slider(key="runs_epoch").set_value(1).run()
    assert not at.exception and _caption(at, "conv_unit.0 at epoch 1")
    at.selectbox(key="runs_layer").set_value("conv_unit.2").run()
    assert not at.exception
    assert _caption(at, "conv_unit.2 at epoch 1").startswith("conv_unit.2 at epoch 1: 16 of 32 channels, 10x10")


def test_open_in_feature_maps_hands_over_the_checkpoint(runs_dir):
    at = _page()
    at.button(key="runs_open_fm").click().run()
    path = Path(at.session_state["feature_maps_checkpoint"])
    assert path.is_file() and path.suffix == ".safetensors"
    assert path.parent.name == at.selectbox(key="runs_one").value


def test_bundle_button_makes_a_zip_with_the_bundle_files(runs_dir):
    import io
    import zipfile

    from cnnviz.train import bundle

    at = _page()
    assert not at.get("download_button")  # nothing is exported before it is asked for
    rid = at.selectbox(key="runs_one").value
    at.button(key="runs_bundle_make").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    held = at.session_state["runs_bundle"]
    assert held["name"] == f"{rid}-bundle.zip" and held["ident"].startswith(f"{rid}|")
    names = zipfile.ZipFile(io.BytesIO(held["data"])).namelist()
    assert sorted(names) == sorted(f"{rid}-bundle/{f}" for f in bundle.FILES)
    assert len(at.get("download_button")) == 1
    cap = [c.value for c in at.caption if "largest logit difference" in c.value]
    assert cap and f"ONNX opset {bundle.ONNX_OPSET}" in cap[0]
    assert held["result"]["max_logit_diff"] <= bundle.MAX_LOGIT_DIFF
    # another run: the zip of the first is not offered for it
    other = [r for r in runs_dir[1] if r != rid][0]
    at.selectbox(key="runs_one").set_value(other).run()
    assert not at.exception and not at.get("download_button")
    assert [b.key for b in at.button if b.key == "runs_bundle_make"]


# ---- digits: the tutorial's MNIST pipeline against the digit-safe one ------------------------


@pytest.fixture(scope="module")
def digit_runs(tmp_path_factory):
    """Its own runs folder: LeNet5 on the built-in digits, one epoch each, with the tutorial's MNIST
    augmentation and with the digit-safe one (small subsets: the page, not the figures, is tested)."""
    root = tmp_path_factory.mktemp("digit-runs")
    old = os.environ.get("CNNVIZ_RUNS")
    os.environ["CNNVIZ_RUNS"] = str(root)
    made = {}
    try:
        for aug in ("tutorial-mnist", "digit-safe"):
            made[aug] = train_run(root, TrainConfig(model="lenet5", dataset="digits", augment=aug, epochs=1,
                                                    batch_size=64, device="cpu", limit_train=512, limit_test=100)).name
    finally:
        if old is None:
            os.environ.pop("CNNVIZ_RUNS", None)
        else:
            os.environ["CNNVIZ_RUNS"] = old
    return root, made


def test_runs_page_says_which_digit_run_had_label_changing_augmentation(digit_runs, monkeypatch):
    root, made = digit_runs
    monkeypatch.setenv("CNNVIZ_RUNS", str(root))
    at = _page()
    assert set(at.multiselect(key="runs_compare").value) == set(made.values())
    compare = [w.value for w in at.warning if w.value.startswith("**")]
    assert len(compare) == 1 and compare[0].startswith(f"**{made['tutorial-mnist']}** (test ")
    assert "RandomDiscreteRotation" in compare[0] and "6 upside down is a 9" in compare[0]
    at.selectbox(key="runs_one").set_value(made["tutorial-mnist"]).run()
    assert not at.exception
    (line,) = [w.value for w in at.warning if w.value.startswith("Trained with `tutorial-mnist`")]
    assert "\n" not in line and "Its most frequent confusions:" in line and " read as " in line
    # the cell gallery opens on the worst confusion
    first = line.split("Its most frequent confusions: ")[1].split(" (")[0]
    true, pred = first.split(" read as ")
    assert (at.selectbox(key="runs_true").value, at.selectbox(key="runs_pred").value) == (int(true), int(pred))
    assert any(f"class **{true}** predicted as **{pred}**" in c.value for c in at.caption)
    at.selectbox(key="runs_one").set_value(made["digit-safe"]).run()
    assert not at.exception
    assert not [w.value for w in at.warning if w.value.startswith("Trained with")]


def test_scrubber_reads_a_drawing_made_mnist_style_for_a_digits_run(digit_runs, monkeypatch):
    from PIL import Image, ImageDraw

    root, made = digit_runs
    monkeypatch.setenv("CNNVIZ_RUNS", str(root))
    im = Image.new("RGB", (196, 196), "white")
    ImageDraw.Draw(im).line((98, 35, 98, 165), fill="black", width=18)
    at = open_page(PAGE, timeout=120, state={"cnnviz_image": im, "cnnviz_image_label": "your drawing",
                                             "runs_one": made["digit-safe"]})
    assert "made MNIST-style" in _caption(at, "Prediction at epoch 1")


def _independent_predictions(root: Path, rid: str, with_index: bool = False) -> list:
    """(true, predicted) for each test image the run was scored on, by a plain forward pass: the run's
    weights with `load_state_dict`, its limit_test subset drawn as the trainer draws it (a sorted
    randperm seeded with seed + 1), normalised with its checkpoint's mean/std. With `with_index`:
    (dataset index, true, predicted, confidence) tuples."""
    import torch

    from cnnviz import data, models
    from cnnviz.models.checkpoints import load_checkpoint

    d = root / rid
    ck = load_checkpoint(d / runs.LAST_WEIGHTS)
    cfg = runs.read_run(d).config
    net = models.create(cfg["model"], len(ck.meta["classes"]), ck.meta["in_channels"])
    net.load_state_dict(ck.state_dict)
    net.eval()
    ds = data.load_dataset(cfg["dataset"], "test")
    n = len(ds.labels)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(cfg["seed"] + 1))[:cfg["limit_test"]].sort().values
    assert ds.images.shape[-1] == ck.meta["input_size"]  # shapes: no resizing to reproduce
    x = ds.images[idx].float() / 255
    x = (x - torch.tensor(ck.meta["mean"])[:, None, None]) / torch.tensor(ck.meta["std"])[:, None, None]
    with torch.no_grad():
        probs = torch.softmax(net(x), 1)
    conf, pred = probs.max(1)
    rows = list(zip(idx.tolist(), ds.labels[idx].tolist(), pred.tolist(), conf.tolist()))
    return rows if with_index else [(t, p) for _, t, p, _ in rows]


def test_cell_gallery_shows_exactly_the_test_images_of_that_cell(runs_dir):
    """For the most frequent confusion of an independent forward pass, the gallery shows those images
    (by dataset index), most confident first, and its caption counts them."""
    from collections import Counter

    root, made = runs_dir
    rid = made[0]
    rows = _independent_predictions(root, rid, with_index=True)
    off = Counter((t, p) for _, t, p, _ in rows if t != p)
    (t, p), n = off.most_common(1)[0]
    at = open_page(PAGE, timeout=120, state={"runs_one": rid})
    classes = at.selectbox(key="runs_true").options
    at.selectbox(key="runs_true").set_value(t).run()
    at.selectbox(key="runs_pred").set_value(p).run()
    assert not at.exception
    want = sorted(((i, c) for i, tt, pp, c in rows if (tt, pp) == (t, p)), key=lambda r: -r[1])
    # (the "most confident mistakes" gallery above may show some of the same images with the same captions)
    caps = {c for im in at.get("image") for c in (im.captions or [])[:1] if f": {classes[t]} → {classes[p]} (" in c}
    shown = {int(c.split(":")[0].lstrip("#")): int(c.rsplit("(", 1)[1].rstrip("%)")) for c in caps}
    assert len(shown) == len(caps) == min(n, 24)
    assert set(shown) == {i for i, _ in want[:len(shown)]}
    assert shown == {i: round(100 * c) for i, c in want[:len(shown)]}
    assert any(f"of {n} test images of class **{classes[t]}** predicted as **{classes[p]}**" in c.value
               for c in at.caption)
