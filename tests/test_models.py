"""The model registry: names, shapes, parameter counts against sum(numel) and published values."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from cnnviz import models
from cnnviz.models import classics

SMALL = ["lenet5", "resnet_small"]
CLASSICS = ["alexnet", "vgg11", "vgg16", "googlenet", "resnet18", "resnet50"]


def test_names_and_info():
    names = models.names()
    for n in SMALL + ["resnet18_cifar"] + CLASSICS:
        assert n in names
    assert names[0] == "lenet5"
    i = models.info("googlenet")
    assert (i.input_size, i.in_channels, i.year, i.depth) == (224, 3, 2014, 22)
    assert models.info("lenet5").input_size == 32
    assert all(models.info(n).idea for n in names)
    with pytest.raises(ValueError, match="Unknown model"):
        models.info("nope")
    with pytest.raises(ValueError):
        models.create("lenet5", num_classes=0)


def _numel(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_lenet5_exact():
    m = models.create("lenet5")
    assert _numel(m) == 40_010
    # the tutorial's layers, by hand: 3*16*25+16, 16*32*25+32, 800*32+32, 32*10+10
    assert _numel(m) == (3 * 16 * 25 + 16) + (16 * 32 * 25 + 32) + (800 * 32 + 32) + (32 * 10 + 10)
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", SMALL)
def test_small_models_forward_any_channels(name):
    m = models.create(name, num_classes=7, in_channels=1)
    s = models.info(name).input_size
    assert m(torch.zeros(2, 1, s, s)).shape == (2, 7)


def test_torchvision_resnet18_param_count_at_1000_classes():
    m = models.create("resnet18", num_classes=1000)
    assert _numel(m) == 11_689_512
    assert _numel(m) == _numel(torchvision.models.resnet18(weights=None))


@pytest.mark.parametrize("name,expected", [("googlenet", 6_624_904), ("resnet50", 25_557_032),
                                           ("alexnet", 61_100_840)])
def test_classic_param_counts_published(name, expected):
    # meta device: the structure and counts without allocating or initialising weights
    with torch.device("meta"):
        m = models.create(name, num_classes=1000)
    assert _numel(m) == expected


def test_vgg16_param_count_meta():
    with torch.device("meta"):
        m = models.create("vgg16", num_classes=1000)
    assert _numel(m) == 138_357_544


def test_classics_in_channels_replaces_first_conv():
    with torch.device("meta"):
        m = models.create("resnet50", num_classes=5, in_channels=1)
        ref = models.create("resnet50", num_classes=5, in_channels=3)
    assert m.conv1.in_channels == 1 and m.conv1.kernel_size == (7, 7) and m.conv1.stride == (2, 2)
    assert _numel(ref) - _numel(m) == 2 * 64 * 7 * 7
    g = models.create("googlenet", num_classes=3, in_channels=1).eval()
    assert g.conv1.conv.in_channels == 1
    assert g.aux1 is None
    assert g(torch.zeros(1, 1, 64, 64)).shape == (1, 3)


def test_pretrained_status_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    st = models.pretrained_status("resnet18")
    assert not st.cached and st.filename == "resnet18-f37072fd.pth"
    assert st.path == tmp_path / "checkpoints" / "resnet18-f37072fd.pth"
    assert "resnet18-f37072fd.pth" in st.how_to and str(tmp_path / "checkpoints") in st.how_to
    with pytest.raises(FileNotFoundError, match="Not in the local cache"):
        models.create_pretrained("resnet18")
    assert not any(tmp_path.rglob("*.pth"))
    with pytest.raises(ValueError, match="not a torchvision model"):
        models.pretrained_status("lenet5")


def test_pretrained_loads_from_cache(tmp_path, monkeypatch):
    """A file in the cache folder (here: random weights saved under the expected name) is used."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    st = models.pretrained_status("resnet18")
    src = torchvision.models.resnet18(weights=None)
    st.path.parent.mkdir(parents=True)
    torch.save(src.state_dict(), st.path)
    assert models.pretrained_status("resnet18").cached
    m = models.create_pretrained("resnet18")
    assert not m.training
    torch.testing.assert_close(m.fc.weight, src.fc.weight)
    assert len(models.imagenet_categories("resnet18")) == 1000


def test_pretrained_googlenet_drops_aux(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    st = models.pretrained_status("googlenet")
    with torch.device("meta"):
        pass
    src = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    st.path.parent.mkdir(parents=True)
    torch.save(src.state_dict(), st.path)
    m = models.create_pretrained("googlenet")
    assert m.transform_input and m.aux1 is None


def test_first_conv_helper():
    m = classics._replace_first_conv(torchvision.models.alexnet(weights=None), 4)
    assert m.features[0].in_channels == 4 and m(torch.zeros(1, 4, 64, 64)).shape == (1, 1000)


def test_build_count_counts():
    before = models.build_count("lenet5")
    models.create("lenet5")
    assert models.build_count("lenet5") == before + 1
    with torch.device("meta"):
        models.create("lenet5")  # shapes only: not a build
    assert models.build_count("lenet5") == before + 1
