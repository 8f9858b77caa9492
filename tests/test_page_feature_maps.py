"""AppTest: the Feature maps page on the page file itself.

Default render with the shipped trained LeNet5 (grid, channel, receptive field, top-5, Grad-CAM),
controls that change the pictures, no large model built before it is chosen, and uploads that
must be refused (a pickle that would run code, garbage, another architecture's weights).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from cnnviz import models
from cnnviz.inspect.loading import shipped_checkpoints

from .pagetest import large_builds, ok, open_page, page_path

PAGE = page_path("feature_maps")
UPLOAD = "Upload a checkpoint"

pytestmark = pytest.mark.skipif("lenet5" not in shipped_checkpoints(),
                                reason="assets/checkpoints/lenet5-cifar10.safetensors is not shipped")


class _Evil:
    """Unpickling this opens (creates) a file: it stands in for arbitrary code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _urls(at: AppTest) -> list[str]:
    return [im.value[0] for im in at.get("image")]


def _caption(at: AppTest, text: str) -> str:
    found = [c.value for c in at.caption if text in c.value]
    assert found, f"no caption with {text!r}: {[c.value[:80] for c in at.caption]}"
    return found[0]


def _top5(at: AppTest):
    """The top-5 table (class, probability), or None when the page shows none."""
    found = [d.value for d in at.dataframe if "probability" in d.value.columns]
    return found[0] if found else None


@pytest.fixture()
def at() -> AppTest:
    return open_page(PAGE, timeout=120, clean=True)


def test_default_render_trained_lenet_with_top5_and_gradcam():
    before = large_builds()
    at = open_page(PAGE, timeout=120, clean=True)
    assert large_builds() == before, "a large model was built before anyone asked for it"
    assert at.selectbox(key="fm_model").value == "lenet5"
    assert at.radio(key="fm_source_lenet5").value == "Trained (shipped, CIFAR-10)"
    # grid, channel large, channel over the input, receptive-field box, Grad-CAM
    assert len(at.get("image")) == 5
    assert "16 of the 16 channels of `conv_unit.0`" in _caption(at, "channels of")
    rf = _caption(at, "Receptive field of cell")
    assert "5x5 input pixels" in rf and "1 px apart" in rf  # one 5x5 conv, stride 1
    top5 = _top5(at)
    assert len(top5) == 5 and set(top5["class"]) <= {"airplane", "automobile", "bird", "cat", "deer", "dog",
                                                     "frog", "horse", "ship", "truck"}
    assert top5["probability"].is_monotonic_decreasing and 0 < top5["probability"].sum() <= 1.0001
    cam = _caption(at, "Grad-CAM for")
    assert f"**{top5['class'].iloc[0]}**" in cam  # explains the top class by default
    assert "`conv_unit`" in cam  # the conv stack's output: the last spatial maps
    assert "cifar10-jpeg" in _caption(at, "normalised with mean") or "CIFAR" in _caption(at, "normalised with mean")


def test_layer_channel_and_grid_options_change_the_pictures(at):
    grid0, big0, over0, box0, cam0 = _urls(at)
    grid_caption = _caption(at, "channels of")

    at.radio(key="fm_order").set_value("index").run()
    ok(at)
    assert _urls(at)[0] != grid0 and "in index order" in _caption(at, "channels of")
    assert "channel numbers 0, 1, 2, 3" in _caption(at, "channels of")

    at.radio(key="fm_scale").set_value("shared").run()
    ok(at)
    assert "one shared scale from" in _caption(at, "channels of")

    at.slider(key="fm_topk_16").set_value(4).run()
    ok(at)
    assert "4 of the 16 channels" in _caption(at, "channels of")

    channel = at.selectbox(key="fm_channel_conv_unit.0")
    other = [c for c in channel.options if c != channel.value][0]
    channel.set_value(int(other.split()[1])).run()
    ok(at)
    urls = _urls(at)
    assert urls[1] != big0 and urls[2] != over0
    assert at.get("image")[1].captions[0].startswith(f"channel {int(other.split()[1])}, 28x28")

    at.slider(key="fm_row_28").set_value(0).run()
    at.slider(key="fm_col_28").set_value(0).run()
    ok(at)
    assert _urls(at)[3] != box0 and "cell (0, 0)" in _caption(at, "Receptive field of cell")

    at.selectbox(key="fm_layer_lenet5").set_value("conv_unit.2").run()
    ok(at)
    new_grid = _caption(at, "channels of")
    assert new_grid != grid_caption and "of the 32 channels of `conv_unit.2` (Conv2d, 10x10 each)" in new_grid
    rf = _caption(at, "Receptive field of cell")
    assert "14x14 input pixels" in rf and "2 px apart" in rf  # 5 + (2-1)*1 + (5-1)*2 = 14, stride 2
    assert _urls(at)[0] != grid0

    at.selectbox(key="fm_layer_lenet5").set_value("fc_unit.2").run()  # a vector, no spatial map
    ok(at)
    assert "outputs a vector of 10 values" in at.info[0].value


def test_gradcam_class_choice(at):
    cam_url = _urls(at)[-1]
    first = _top5(at)["class"].iloc[0]
    choice = at.selectbox(key="fm_cam_class_lenet5")
    target = next(i for i, label in enumerate(choice.options) if label != first)
    choice.set_value(target).run()
    ok(at)
    cam = _caption(at, "Grad-CAM for")
    assert f"**{first}**" not in cam
    assert _urls(at)[-1] != cam_url
    at.selectbox(key="fm_cam_layer_lenet5").set_value("conv_unit.0").run()
    ok(at)
    assert "`conv_unit.0`" in _caption(at, "Grad-CAM for")


def test_sidebar_image_is_the_input():
    """Pages read the image ui/image_state publishes in session state; another image, other maps."""
    def render(img: Image.Image | None, label: str) -> AppTest:
        state = {"cnnviz_image": img, "cnnviz_image_label": label} if img is not None else None
        return open_page(PAGE, state=state, clean=True)

    a = render(None, "")
    half = Image.new("RGB", (64, 64), (20, 20, 200))
    half.paste((250, 250, 20), (32, 0, 64, 64))
    b = render(half, "two halves")
    assert "two halves" in _caption(b, "normalised with mean")
    assert _urls(a)[0] != _urls(b)[0] and _urls(a)[-1] != _urls(b)[-1]


def test_random_weights_hide_predictions(at):
    at.radio(key="fm_source_lenet5").set_value("Random weights").run()
    ok(at)
    assert "random weights (seed 0)" in _caption(at, "normalised with mean")
    assert any("These are random weights" in i.value for i in at.info)
    assert _top5(at) is None
    grid = _urls(at)[0]
    at.number_input(key="fm_seed").set_value(3).run()
    ok(at)
    assert "seed 3" in _caption(at, "normalised with mean") and _urls(at)[0] != grid


def _upload(at: AppTest, name: str, raw: bytes) -> AppTest:
    at.radio(key="fm_source_lenet5").set_value(UPLOAD).run()
    ok(at)
    at.file_uploader(key="fm_upload").set_value((name, raw, "application/octet-stream")).run()
    assert not at.exception, at.exception
    return at


def _one_error(at: AppTest) -> str:
    assert len(at.error) == 1, [e.value for e in at.error]
    msg = at.error[0].value
    assert "\n" not in msg and "Traceback" not in msg
    assert "random weights (seed 0) while the weights could not be loaded" in _caption(at, "Showing lenet5")
    return msg


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_malicious_pickle_upload_is_refused_and_does_not_run(at, tmp_path, how):
    target = tmp_path / "pwned"
    payload = {"state_dict": models.create("lenet5").state_dict(), "evil": _Evil(str(target))}
    buf = io.BytesIO()
    if how == "torch.save":
        torch.save(payload, buf)
    else:
        pickle.dump(payload, buf)
    probe = tmp_path / "probe"  # sanity: a plain unpickle of such an object does touch the file
    pickle.loads(pickle.dumps(_Evil(str(probe))))
    assert probe.exists()

    _upload(at, "evil.pt", buf.getvalue())
    msg = _one_error(at)
    assert "Refused" in msg and "nothing in the file was run" in msg
    assert not target.exists()


def test_garbage_upload_says_so(at):
    _upload(at, "notes.pth", b"these are not the weights you are looking for" * 10)
    assert "Not a PyTorch or safetensors checkpoint" in _one_error(at)


def test_other_architecture_names_the_mismatch(at):
    buf = io.BytesIO()
    torch.save(models.create("resnet_small").state_dict(), buf)
    _upload(at, "resnet_small.pt", buf.getvalue())
    msg = _one_error(at)
    assert "does not fit lenet5" in msg
    assert "missing: conv_unit.0.weight" in msg and "unexpected: fc.bias, fc.weight" in msg


def test_good_upload_is_used(at):
    torch.manual_seed(5)
    buf = io.BytesIO()
    torch.save(models.create("lenet5").state_dict(), buf)
    _upload(at, "mine.pt", buf.getvalue())
    ok(at)
    assert "uploaded mine.pt" in _caption(at, "normalised with mean")
    assert any("names no classes" in w.value for w in at.warning)
    assert len(_top5(at)) == 5  # trained = came from a file: predictions shown


def test_torchvision_weights_not_cached_says_how(tmp_path, monkeypatch):
    """Choosing ResNet-18 builds only ResNet-18; its ImageNet weights are offered with a how-to, never fetched."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.run()
    before = large_builds()
    at.selectbox(key="fm_model").set_value("resnet18").run()
    ok(at)
    after = large_builds()
    assert after["resnet18"] - before["resnet18"] <= 1  # built once (random weights) unless cached from before
    assert {k: v for k, v in after.items() if k != "resnet18"} == {k: v for k, v in before.items() if k != "resnet18"}
    radio = at.radio(key="fm_source_resnet18")
    assert "torchvision ImageNet weights" in radio.options[-1] and "not downloaded" in radio.options[-1]
    radio.set_value("torchvision ImageNet weights").run()
    assert not at.exception
    warn = at.warning[0].value
    assert "resnet18-f37072fd.pth" in warn and str(tmp_path / "checkpoints") in warn
    assert "ImageNet weights not cached" in _caption(at, "Showing resnet18")
    assert not any(tmp_path.rglob("*.pth"))
    assert "64 channels of `conv1` (Conv2d, 112x112 each)" in _caption(at, "channels of")


def test_torchvision_weights_from_the_cache_give_imagenet_top5(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    st = models.pretrained_status("resnet18")
    st.path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(models.create("resnet18", num_classes=1000).state_dict(), st.path)  # stands in for the real file
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.session_state["fm_model"] = "resnet18"
    at.session_state["fm_source_resnet18"] = "torchvision ImageNet weights"
    at.run()
    ok(at)
    assert "in the local cache" in at.radio(key="fm_source_resnet18").options[-1]
    assert "torchvision ImageNet weights (resnet18-f37072fd.pth)" in _caption(at, "normalised with mean")
    top5 = _top5(at)
    assert len(top5) == 5 and "Top-5 of 1000 classes" in _caption(at, "Top-5")
    assert "layer4" in _caption(at, "Grad-CAM for")


def test_no_training_run_yet_says_where_to_make_one(at, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVIZ_RUNS", str(tmp_path / "no-runs"))
    at.radio(key="fm_source_lenet5").set_value("A training run").run()
    ok(at)
    assert any("No training run with a checkpoint yet" in i.value for i in at.info)
    assert "while no checkpoint chosen yet" in _caption(at, "Showing lenet5")


# ---- weights from a training run (chosen here, or handed over by the Runs page) ---------------

SHAPE_CLASSES = {"circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon", "heart", "arrow"}


@pytest.fixture(scope="module")
def _shapes_run_module(tmp_path_factory):
    """A tiny finished LeNet5 run on `shapes` in its own runs folder."""
    from cnnviz.train import TrainConfig

    from .runtools import train_run

    root = tmp_path_factory.mktemp("fm-runs")
    return train_run(root, TrainConfig(model="lenet5", dataset="shapes", epochs=2, batch_size=32, device="cpu",
                                       limit_train=256, limit_test=64))


@pytest.fixture
def shapes_run(_shapes_run_module, monkeypatch) -> Path:
    """That run, in the runs folder of this test ($CNNVIZ_RUNS)."""
    monkeypatch.setenv("CNNVIZ_RUNS", str(_shapes_run_module.parent))
    return _shapes_run_module


def _top5_classes(at: AppTest) -> set[str]:
    top = _top5(at)
    assert top is not None, "no top-5 table"
    return set(top["class"])


def test_weights_from_a_training_run(shapes_run):
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    at.radio(key="fm_source_lenet5").set_value("A training run").run()
    ok(at)
    run = at.selectbox(key="fm_run").value
    assert run.run_id == shapes_run.name
    top = _top5_classes(at)
    assert len(top) == 5 and top <= SHAPE_CLASSES, top  # the run's own class names, not CIFAR-10's
    assert any("Grad-CAM for" in c.value for c in at.caption)


def test_checkpoint_handed_over_by_the_runs_page(shapes_run):
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["feature_maps_checkpoint"] = str(shapes_run / "last.safetensors")
    at.run()
    ok(at)
    assert at.radio(key="fm_source_lenet5").value == "From the Runs page"
    assert _top5_classes(at) <= SHAPE_CLASSES
    at.button(key="fm_clear_handoff").click().run()
    ok(at)
    assert "feature_maps_checkpoint" not in at.session_state
    assert _top5_classes(at) <= {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                 "ship", "truck"}  # back to the shipped CIFAR-10 weights


def test_shipped_weights_bundle(at):
    import io
    import zipfile

    from cnnviz.train import bundle

    assert at.radio(key="fm_source_lenet5").value == "Trained (shipped, CIFAR-10)"
    at.button(key="fm_bundle_make").click().run()
    ok(at)
    held = at.session_state["fm_bundle"]
    assert held["name"] == "lenet5-cifar10-bundle.zip"
    names = zipfile.ZipFile(io.BytesIO(held["data"])).namelist()
    assert sorted(names) == sorted(f"lenet5-cifar10-bundle/{f}" for f in bundle.FILES)
    assert len(at.get("download_button")) == 1


# ---- a drawing read by the shipped digits model ----------------------------------------------

DIGITS_WEIGHTS = "Trained (shipped, digits)"


def _drawing(kind: str):
    """A sidebar-canvas-like picture (black ink on white, 196x196): 'one', 'zero' or 'empty'."""
    from PIL import ImageDraw

    im = Image.new("RGB", (196, 196), "white")
    d = ImageDraw.Draw(im)
    if kind == "one":
        d.line((98, 35, 98, 165), fill="black", width=18)
    elif kind == "zero":
        d.ellipse((45, 25, 150, 175), outline="black", width=18)
    return im


def _drawn(kind: str, **state) -> AppTest:
    return open_page(PAGE, clean=True, state={"cnnviz_image": _drawing(kind), "cnnviz_image_label": "your drawing",
                                              "cnnviz_source": "drawing", **state})


def _reads(at: AppTest) -> str | None:
    found = [m.value for m in at.metric if m.label == "The model reads"]
    return found[0] if found else None


@pytest.mark.parametrize("kind, digit", [("one", "1"), ("zero", "0")])
def test_a_drawing_is_read_by_the_shipped_digits_model(kind, digit):
    at = _drawn(kind)
    assert at.radio(key="fm_source_lenet5").value == DIGITS_WEIGHTS  # switched to, for the drawing
    assert _reads(at) == digit
    assert _top5(at)["class"].iloc[0] == digit and set(_top5(at)["class"]) <= {str(d) for d in range(10)}
    assert "lenet5-digits.safetensors" in _caption(at, "normalised with mean")
    assert "made into a 28x28 MNIST-style digit" in _caption(at, "normalised with mean")
    seen = [im for im in at.get("image") if im.proto.imgs[0].caption.startswith("what the model reads: 28x28")]
    assert len(seen) == 1
    assert "inverted to white on black" in _caption(at, "196x196 input")
    assert f"Grad-CAM for **{digit}**" in _caption(at, "Grad-CAM for")


def test_the_reading_follows_the_drawing_and_an_empty_canvas_gets_a_hint():
    at = _drawn("one")
    assert _reads(at) == "1"
    at.session_state["cnnviz_image"] = _drawing("zero")     # what the sidebar does after a stroke
    at.run()
    ok(at)
    assert _reads(at) == "0"
    at.session_state["cnnviz_image"] = _drawing("empty")    # cleared
    at.run()
    ok(at)
    assert _reads(at) is None and _top5(at) is None
    infos = [i.value for i in at.info]
    assert any("Nothing to read yet" in i for i in infos) and any("No predictions for an empty canvas" in i
                                                                 for i in infos)
    assert "no ink found" in _caption(at, "196x196 input")


def test_weights_chosen_while_drawing_are_kept_and_mnist_preparation_can_be_switched_off():
    at = _drawn("one")
    at.radio(key="fm_source_lenet5").set_value("Trained (shipped, CIFAR-10)").run()
    ok(at)
    assert at.radio(key="fm_source_lenet5").value == "Trained (shipped, CIFAR-10)"   # the user's choice stays
    assert _reads(at) is None and "centre-cropped and resized" in _caption(at, "normalised with mean")
    at.radio(key="fm_source_lenet5").set_value(DIGITS_WEIGHTS).run()
    assert _reads(at) == "1"
    at.toggle(key="fm_mnist").set_value(False).run()
    ok(at)
    assert _reads(at) is None                               # the plain path: resized as for photos
    assert "centre-cropped and resized to 1x32x32" in _caption(at, "normalised with mean")


def test_without_a_drawing_the_cifar_weights_stay_the_default_and_digits_weights_say_to_draw():
    at = open_page(PAGE, clean=True)
    assert at.radio(key="fm_source_lenet5").value == "Trained (shipped, CIFAR-10)"
    assert DIGITS_WEIGHTS in at.radio(key="fm_source_lenet5").options
    at.radio(key="fm_source_lenet5").set_value(DIGITS_WEIGHTS).run()
    ok(at)
    assert "draw one in the sidebar" in _caption(at, "This model was trained on handwritten digits")
    assert _reads(at) in {str(d) for d in range(10)}         # the cat, made MNIST-style, still gets read


def test_top5_is_the_models_softmax_on_the_centre_cropped_normalised_image():
    """The top-5 table against an independent forward pass: the shipped CIFAR-10 LeNet5's weights loaded with
    plain `load_state_dict`, the sidebar image centre-cropped and resized by PIL, normalised with the
    checkpoint's mean/std, softmax by torch."""
    import numpy as np
    from PIL import ImageOps

    from cnnviz.models.checkpoints import load_checkpoint

    at = open_page(PAGE, timeout=120, clean=True)
    top5 = _top5(at)
    ck = load_checkpoint(shipped_checkpoints()["lenet5"])
    net = models.create("lenet5", 10, 3)
    net.load_state_dict(ck.state_dict)
    net.eval()
    im = ImageOps.fit(at.session_state["cnnviz_image"].convert("RGB"), (32, 32), method=Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)
    x = (x - torch.tensor(ck.meta["mean"])[:, None, None]) / torch.tensor(ck.meta["std"])[:, None, None]
    with torch.no_grad():
        probs = torch.softmax(net(x[None]), 1)[0]
    p, i = probs.topk(5)
    assert list(top5["class"]) == [ck.meta["classes"][j] for j in i.tolist()]
    assert np.allclose(top5["probability"].to_numpy(), p.numpy(), atol=1e-5), (top5, p)
