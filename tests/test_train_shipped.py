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
    assert info["final_metrics"]["test_acc"] >= 0.55
    net = load_into(models.create(name, 10, 3), ck, name)
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


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
