"""The shipped trained checkpoints (assets/checkpoints/): complete meta, loadable, and as good as they say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnviz import models
from cnnviz.models.checkpoints import load_checkpoint, load_into

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "checkpoints"
SHIPPED = ["lenet5", "resnet_small"]
EVAL_SUBSET = ASSETS.parent / "cifar10-eval" / "cifar10-test-500.npz"  # scripts/build_cifar_eval.py


def _shipped_subset():
    """The 500 shipped CIFAR-10 test images (50 per class, their original JPEG bytes) and labels."""
    import io

    import numpy as np
    from PIL import Image

    with np.load(EVAL_SUBSET, allow_pickle=False) as z:
        raw, off, labels, classes = z["jpeg"].tobytes(), z["offsets"], z["labels"], [str(c) for c in z["classes"]]
    ims = [Image.open(io.BytesIO(raw[off[i]:off[i + 1]])).convert("RGB") for i in range(len(labels))]
    return ims, torch.from_numpy(labels), classes


def _accuracy(name: str, ims, labels) -> float:
    """Plain torchvision transforms and a forward pass (not cnnviz's trainer or evaluator)."""
    from torchvision import transforms

    ck = load_checkpoint(ASSETS / f"{name}-cifar10.safetensors")
    net = models.create(name, 10, 3)
    net.load_state_dict(ck.state_dict)
    net.eval()
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(ck.meta["mean"], ck.meta["std"])])
    x = torch.stack([tf(im) for im in ims])
    with torch.no_grad():
        return (net(x).argmax(1) == labels).float().mean().item()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_loads_with_meta_and_info(name):
    w, js = ASSETS / f"{name}-cifar10.safetensors", ASSETS / f"{name}-cifar10.json"
    assert w.is_file() and js.is_file()
    assert w.stat().st_size < 5 * 2**20
    ck = load_checkpoint(w)
    for key in ("model", "num_classes", "in_channels", "input_size", "classes", "mean", "std", "epoch",
                "run_id", "dataset"):
        assert key in ck.meta, key
    assert ck.meta["model"] == name and len(ck.meta["classes"]) == 10 and ck.meta["classes"][0] == "airplane"
    info = json.loads(js.read_text())
    assert info["config"]["model"] == name and info["final_metrics"]["epoch"] == ck.meta["epoch"]
    net = load_into(models.create(name, 10, 3), ck, name)
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_accuracy_measured_on_the_shipped_cifar10_test_subset(name):
    """Runs in any checkout: the checkpoint scored on the 500 shipped CIFAR-10 test images (every 20th of
    the test split, 50 per class) reaches the accuracy its JSON states, within 0.06 (about three
    standard errors of a 500-image estimate), and well above chance."""
    ims, labels, classes = _shipped_subset()
    assert len(ims) == 500 and labels.bincount().tolist() == [50] * 10 and ims[0].size == (32, 32)
    assert classes == load_checkpoint(ASSETS / f"{name}-cifar10.safetensors").meta["classes"]
    acc = _accuracy(name, ims, labels)
    claimed = json.loads((ASSETS / f"{name}-cifar10.json").read_text())["final_metrics"]["test_acc"]
    assert acc >= 0.55 and acc > claimed - 0.06, (acc, claimed)


def test_the_shipped_subset_is_the_real_test_images(cifar_jpeg):
    """Where the real CIFAR-10 JPEG copy is present: the subset holds exactly its every-20th test images."""
    from torchvision import datasets

    ims, labels, classes = _shipped_subset()
    ds = datasets.ImageFolder(str(cifar_jpeg / "test"))
    assert ds.classes == classes
    for k in (0, 1, 137, 499):
        im, y = ds[20 * k]
        assert y == int(labels[k]) and list(im.getdata()) == list(ims[k].getdata())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_accuracy_on_real_cifar_with_an_independent_loader(name, cifar_jpeg):
    from torchvision import datasets, transforms

    ck = load_checkpoint(ASSETS / f"{name}-cifar10.safetensors")
    net = load_into(models.create(name, 10, 3), ck, name).eval()
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(ck.meta["mean"], ck.meta["std"])])
    ds = datasets.ImageFolder(str(cifar_jpeg / "test"), transform=tf)
    assert ds.classes == ck.meta["classes"]
    idx = range(0, len(ds), 20)  # 500 images, every class
    x = torch.stack([ds[i][0] for i in idx])
    y = torch.tensor([ds[i][1] for i in idx])
    with torch.no_grad():
        acc = (net(x).argmax(1) == y).float().mean().item()
    claimed = json.loads((ASSETS / f"{name}-cifar10.json").read_text())["final_metrics"]["test_acc"]
    assert acc > claimed - 0.06, (acc, claimed)


# ---- the digits checkpoint (the built-in digits are shipped, so this always runs) --------------

DIGITS = ASSETS / "lenet5-digits.safetensors"


def test_shipped_digits_checkpoint_meta_and_stated_recipe():
    ck = load_checkpoint(DIGITS)
    meta = ck.meta
    assert meta["model"] == "lenet5" and meta["dataset"] == "digits" and meta["augment"] == "digit-safe"
    assert meta["classes"] == [str(d) for d in range(10)] and meta["in_channels"] == 1 and meta["input_size"] == 32
    info = json.loads(DIGITS.with_suffix(".json").read_text())
    assert info["config"]["augment"] == "digit-safe" and info["config"]["epochs"] == 30
    assert info["final_metrics"]["epoch"] == meta["epoch"] == 30
    assert info["final_metrics"]["test_acc"] >= 0.96
    stated = f"{100 * info['final_metrics']['test_acc']:.1f}%"
    for readme in (ASSETS / "README.md", ASSETS.parent / "README.md"):
        assert stated in readme.read_text(), readme   # the figure the READMEs state is the file's
    assert "--augment tutorial-mnist" in (ASSETS.parent / "README.md").read_text()


def test_shipped_digits_checkpoint_reaches_its_stated_accuracy_on_the_test_digits():
    """An independent evaluation: plain torch on the 500 test digits, resized 28 -> 32 and normalised
    with the checkpoint's own mean/std, not through cnnviz's trainer or evaluator."""
    from torch.nn import functional as F

    from cnnviz import data

    ck = load_checkpoint(DIGITS)
    net = load_into(models.create("lenet5", 10, 1), ck, "lenet5").eval()
    test = data.load_dataset("digits", "test")
    x = F.interpolate(test.images.float(), size=(32, 32), mode="bilinear", antialias=True).round() / 255
    x = (x - ck.meta["mean"][0]) / ck.meta["std"][0]
    with torch.no_grad():
        acc = (net(x).argmax(1) == test.labels).float().mean().item()
    stated = json.loads(DIGITS.with_suffix(".json").read_text())["final_metrics"]["test_acc"]
    assert acc >= 0.96 and abs(acc - stated) <= 0.004, (acc, stated)   # 0.004 = two digits of 500


def test_shipped_digits_checkpoint_reads_digits_made_mnist_style():
    """The test digits passed through prepare_digit (what a drawing goes through) are still read."""
    from PIL import Image

    from cnnviz import data
    from cnnviz.images import prepare_digit
    from cnnviz.inspect import features

    ck = load_checkpoint(DIGITS)
    net = load_into(models.create("lenet5", 10, 1), ck, "lenet5").eval()
    test = data.load_dataset("digits", "test")
    xs = [features.digit_input(prepare_digit(Image.fromarray(im[0].numpy())).pixels, 32, ck.meta["mean"],
                               ck.meta["std"])[0] for im in test.images]
    with torch.no_grad():
        acc = (net(torch.cat(xs)).argmax(1) == test.labels).float().mean().item()
    assert acc >= 0.95, acc
