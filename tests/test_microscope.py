"""The Microscope's backend: filter grids, top-k exemplars, feature visualisation, per-layer stats."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cnnviz.inspect import featurevis, layerstats, microscope, topk
from cnnviz.train import TrainConfig, fit


# ------------------------------------------------------------------ top-k exemplars
from cnnviz import runs


# ------------------------------------------------------------------ top-k exemplars
CROSS = torch.tensor([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float32)


class _CrossNet(nn.Module):
    """Channel 0 responds to a bright '+' (its kernel is the zero-mean cross), channel 1 to brightness."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 2, 3, bias=False)
        with torch.no_grad():
            k = CROSS - CROSS.mean()
            self.conv.weight[0] = k.expand(in_channels, 3, 3) / in_channels
            self.conv.weight[1] = 1.0 / (9 * in_channels)
        self.head = nn.Linear(2, 2)

    def forward(self, x):
        return self.head(F.relu(self.conv(x)).amax(dim=(2, 3)))


def _planted(n: int = 300, channels: int = 3, seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """Noisy grey images; a few carry a white '+' somewhere. Returns (uint8 images, planted indices)."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, channels, 16, 16, generator=g) * 120).to(torch.uint8)
    planted = sorted(torch.randperm(n, generator=g)[:12].tolist())
    for i in planted:
        r, c = (int(v) for v in torch.randint(0, 13, (2,), generator=g))
        x[i, :, r:r + 3, c:c + 3] = torch.where(CROSS.bool(), 255, int(x[i].float().mean())).to(torch.uint8)
    return x, planted


@pytest.mark.parametrize("channels", [3, 1])
def test_top_k_finds_the_images_that_hold_the_pattern(channels):
    x, planted = _planted(channels=channels)
    model = _CrossNet(channels).eval()
    kw = dict(mean=[0.0] * channels, std=[1.0] * channels, size=16, in_channels=channels)
    sc = topk.channel_scores(model, x, "conv", **kw)
    assert sc.values.shape == (300, 2)
    assert sorted(i for i, _ in sc.top(0, len(planted))) == planted
    assert not set(i for i, _ in sc.bottom(0, 50)) & set(planted)
    # a tiny budget forces many small batches: the same numbers
    per = topk.bytes_per_image(model, "conv", (channels, 16, 16))
    small = topk.channel_scores(model, x, "conv", budget=7 * per / 2**20, **kw)
    assert small.batch == 7 and torch.equal(small.values, sc.values)
    maps = topk.channel_maps(model, x, planted[:3], "conv", 0, **kw)
    assert maps.shape == (3, 14, 14) and float(maps.amax()) == pytest.approx(sc.top(0, 1)[0][1], rel=0.2)


def test_scores_are_cached_on_disk_per_weights_and_layer(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVIZ_CACHE", str(tmp_path / "cache"))
    x, planted = _planted()
    model = _CrossNet().eval()
    kw = dict(dataset_key="planted", mean=[0.0] * 3, std=[1.0] * 3, size=16, in_channels=3)
    first = topk.cached_scores(model, x, "conv", **kw)
    again = topk.cached_scores(model, x, "conv", **kw)
    assert not first.cached and again.cached and torch.equal(first.values, again.values)
    assert [p.suffix for p in (tmp_path / "cache" / "microscope").iterdir()] == [".safetensors"]
    with torch.no_grad():
        model.conv.weight.mul_(2)  # other weights: not the cached table
    other = topk.cached_scores(model, x, "conv", **kw)
    assert not other.cached and torch.allclose(other.values, 2 * first.values)


def test_a_layer_too_big_for_the_budget_is_refused_in_one_line(monkeypatch):
    model = _CrossNet().eval()
    monkeypatch.setenv("CNNVIZ_SERVER_BUDGET_MB", "0.001")
    with pytest.raises(ValueError) as exc:
        topk.channel_scores(model, torch.zeros(4, 3, 64, 64, dtype=torch.uint8), "conv", mean=[0] * 3, std=[1] * 3,
                            size=64, in_channels=3)
    msg = str(exc.value)
    assert "\n" not in msg and "budget of 0 MB" in msg and "CNNVIZ_SERVER_BUDGET_MB" in msg
    with pytest.raises(ValueError, match="Channel 5 does not exist"):
        topk.Scores("conv", torch.zeros(3, 2)).top(5)
    with pytest.raises(ValueError, match="non-empty batch"):
        topk.channel_scores(model, torch.zeros(0, 3, 16, 16, dtype=torch.uint8), "conv", mean=[0] * 3, std=[1] * 3,
                            size=16, in_channels=3)


# ------------------------------------------------------------------ feature visualisation
def _lenet(seed: int = 0, in_channels: int = 3):
    from cnnviz import models

    torch.manual_seed(seed)
    return models.create("lenet5", num_classes=10, in_channels=in_channels).eval()


@pytest.mark.parametrize("in_channels", [3, 1])
def test_feature_vis_raises_the_channel_and_is_reproducible(in_channels):
    model = _lenet(in_channels=in_channels)
    kw = dict(input_size=32, in_channels=in_channels, mean=[0.5] * in_channels, std=[0.25] * in_channels,
              settings=featurevis.Settings(steps=256, seed=3))
    before = [p.detach().clone() for p in model.parameters()]
    v = featurevis.visualise(model, ("channel", "conv_unit.0", 2), **kw)
    assert v.final > 10 * abs(v.start), (v.start, v.final)  # from noise's ~0.1 to over 1
    assert v.pixels.shape == (in_channels, 32, 32) and 0 <= float(v.pixels.min()) <= float(v.pixels.max()) <= 1
    assert v.image.size == (32, 32) and len(v.history) == 256
    again = featurevis.visualise(model, ("channel", "conv_unit.0", 2), **kw)
    assert torch.equal(v.pixels, again.pixels)
    other = featurevis.visualise(model, ("channel", "conv_unit.0", 2), **{**kw, "settings": featurevis.Settings(
        steps=256, seed=4)})
    assert not torch.equal(v.pixels, other.pixels)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "the model's weights changed"
    assert all(p.grad is None for p in model.parameters())


def test_class_visualisation_raises_the_logit():
    model = _lenet()
    v = featurevis.visualise(model, ("class", 3), input_size=32, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3,
                             settings=featurevis.Settings(steps=256, param="pixel"), num_classes=10)
    assert v.target == "logit of class 3" and v.final > 10 * abs(v.start), (v.start, v.final)  # 0.11 -> 1.39


def test_feature_vis_hostile_targets_give_one_line_messages():
    model = _lenet()
    kw = dict(input_size=32, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3)
    for target, text in [(("channel", "conv_unit.0", 16), "Channel 16 does not exist: conv_unit.0 has 16"),
                         (("channel", "nope", 0), "No layer named 'nope'"),
                         (("class", 12), "Class 12 does not exist"),
                         (("neuron",), "Unknown target")]:
        with pytest.raises(ValueError) as exc:
            featurevis.visualise(model, target, num_classes=10, **kw)
        assert text in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ValueError, match="1- or 3-channel"):
        featurevis.check_target(model, ("class", 0), (5, 32, 32))
    # a 1x1 feature map (a pooled layer) is a fine target: its one value rises
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    v = featurevis.visualise(net, ("channel", "1", 1), input_size=8, in_channels=3, mean=[0.5] * 3, std=[0.5] * 3,
                             settings=featurevis.Settings(steps=32))
    assert "1x1 map" in v.target and v.final > v.start


# ------------------------------------------------------------------ filters and histograms
def test_filter_grids_rgb_signed_and_hostile_shapes():
    w = torch.randn(16, 3, 5, 5)
    g = microscope.filter_grid(w)
    assert g.mode == "rgb" and g.out_shown == 16 and g.scale == pytest.approx(float(w.abs().max()))
    px = g.image.getpixel((g.tile // 2 // 5 * 0 + 1, 1))  # the top-left weight of kernel 0
    expect = ((w[0, :, 0, 0] / (2 * g.scale) + 0.5) * 255).round().int().tolist()
    assert list(px) == pytest.approx(expect, abs=1)
    deep = microscope.filter_grid(torch.randn(40, 20, 3, 3), max_out=8)
    assert deep.mode == "signed" and (deep.out_shown, deep.in_shown) == (8, 20)
    assert "a row per output channel (8 of 40)" in deep.describe()
    one = microscope.filter_grid(torch.randn(6, 1, 1, 1))  # 1-channel model, 1x1 kernels
    assert one.mode == "signed" and one.columns * math.ceil(6 / one.columns) >= 6
    assert microscope.filter_grid(torch.randn(4, 3, 3, 3), scale=10.0).scale == 10.0
    with pytest.raises(ValueError, match="4 dimensions"):
        microscope.filter_grid(torch.randn(3, 3))
    with pytest.raises(ValueError, match="NaN"):
        microscope.filter_grid(torch.full((2, 3, 3, 3), float("nan")))
    huge = microscope.filter_grid(torch.randn(2048, 512, 3, 3))  # capped tiles, bounded picture
    assert huge.image.width <= 2 * microscope.GRID_PX and huge.image.height <= 2 * microscope.GRID_PX


def test_histograms_and_norms_across_epochs():
    w1, w2 = torch.randn(8, 3, 3, 3) * 0.1, torch.randn(8, 3, 3, 3) * 0.3
    h = microscope.weight_histograms({1: w1, 2: w2}, bins=20)
    assert h.density.shape == (2, 20) and h.density.sum(axis=1) == pytest.approx([1, 1])
    assert h.edges[-1] == pytest.approx(float(torch.cat([w1, w2]).abs().max()))
    assert h.std[1] > h.std[0]
    eps, norms, ratios = microscope.checkpoint_norms({1: {"c.weight": w1}, 2: {"c.weight": w2}}, {"c": "c.weight"})
    assert eps == [1, 2] and norms["c"][1] == pytest.approx(float(w2.norm()))
    assert ratios["c"][0] is None and ratios["c"][1] == pytest.approx(float((w2 - w1).norm() / w1.norm()))
    assert microscope.shared_scale([w1, w2]) == pytest.approx(float(torch.cat([w1, w2]).abs().max()))


# ------------------------------------------------------------------ per-layer stats
def test_logged_gradient_norms_match_a_hand_computation():
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]))
        model[0].bias.copy_(torch.tensor([0.5, 0.5]))
        model[2].weight.copy_(torch.tensor([[3.0, -1.0]]))
    x = torch.tensor([[1.0, 2.0, 3.0]])
    model(x).sum().backward()
    # by hand: h = relu(W1 x + b) = [1.5, 4.5] (both active); y = 3*h0 - h1
    # dy/dW2 = h = [1.5, 4.5]; dy/db1 = W2 = [3, -1]; dy/dW1 = W2^T x^T = [[3, 6, 9], [-1, -2, -3]]
    g1 = math.sqrt(9 + 36 + 81 + 1 + 4 + 9 + 9 + 1)
    g2 = math.sqrt(1.5 ** 2 + 4.5 ** 2)
    stats = layerstats.epoch_layer_stats(model)
    assert set(stats) == {"0", "2"}
    assert stats["0"]["grad_norm"] == pytest.approx(g1) and stats["2"]["grad_norm"] == pytest.approx(g2)
    assert stats["0"]["weight_norm"] == pytest.approx(math.sqrt(1 + 4 + 0.25 + 0.25))
    assert stats["0"]["update_ratio"] is None  # the first look at this model
    with torch.no_grad():
        model[2].weight.add_(torch.tensor([[0.3, 0.4]]))  # an update of norm 0.5
    again = layerstats.epoch_layer_stats(model)
    assert again["2"]["update_ratio"] == pytest.approx(0.5 / math.sqrt(10)) and again["0"]["update_ratio"] == 0.0


def test_the_trainer_logs_layer_stats_in_each_epoch_record(tmp_path):
    cfg = TrainConfig(model="lenet5", dataset="shapes", epochs=2, batch_size=64, device="cpu", limit_train=256,
                      limit_test=64)
    events = list(fit(cfg, run_dir=tmp_path / "run"))
    assert events[-1].kind == "done" and events[-1].data["status"] == "finished", events[-1].data
    info = runs.read_run(tmp_path / "run")
    assert len(info.epochs) == 2
    layers = info.epochs[0]["layers"]
    assert set(layers) == {"conv_unit.0", "conv_unit.2", "fc_unit.0", "fc_unit.2"}
    for rec in layers.values():
        assert rec["grad_norm"] > 0 and rec["weight_norm"] > 0 and rec["update_ratio"] is None
    assert all(0 < r["update_ratio"] < 10 for r in info.epochs[1]["layers"].values())
    nums, series = layerstats.layer_series(info.epochs)
    assert nums == [1, 2] and len(series["grad_norm"]["conv_unit.0"]) == 2
    assert series["update_ratio"]["fc_unit.2"][0] is None and series["update_ratio"]["fc_unit.2"][1] > 0


def test_a_deep_plain_net_has_vanishing_gradients_and_shortcuts_cure_them():
    plain = list(layerstats.gradient_lesson(20, shortcuts=False).values())
    res = list(layerstats.gradient_lesson(20, shortcuts=True).values())
    assert len(plain) == len(res) == 21  # 20 convs and the head
    assert plain[0] < 1e-4 * plain[19], (plain[0], plain[19])       # first conv vs last conv
    assert res[0] > 0.05 * res[19], (res[0], res[19])
    with pytest.raises(ValueError, match="depth must be"):
        layerstats.gradient_lesson(1)


def test_dead_relus_on_a_probe_batch_modules_and_functional():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.act = nn.ReLU()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            h = self.act(self.conv(x))
            return F.relu(self.fc(h.mean(dim=(2, 3))))

    net = Net()
    with torch.no_grad():
        net.conv.bias.copy_(torch.tensor([-1e6, -1e6, 1e6, 0.0]))  # channels 0, 1 dead; 2 always on
        net.fc.bias.copy_(torch.tensor([-1e9, 0.0, 0.0]))
    found = {d.layer: d for d in layerstats.dead_relu_fraction(net, torch.randn(8, 1, 6, 6))}
    assert set(found) == {"act", "(model)"}
    assert found["act"].dead_channels == 2 and found["act"].channels == 4
    assert found["act"].units == 4 * 36 and found["act"].dead >= 2 * 36
    assert found["(model)"].units == 3 and found["(model)"].dead >= 1


def test_a_busy_cpu_runs_the_pass_on_one_thread_and_restores_the_count(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr("os.getloadavg", lambda: (1000.0, 1000.0, 1000.0))
    with topk.cpu_threads_for_load(torch.device("cpu")) as n:
        assert n == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before
    monkeypatch.setattr("os.getloadavg", lambda: (0.0, 0.0, 0.0))
    with topk.cpu_threads_for_load(torch.device("cpu")) as n:
        assert n == before
    x, planted = _planted(n=40)
    sc = topk.channel_scores(_CrossNet().eval(), x, "conv", mean=[0.0] * 3, std=[1.0] * 3, size=16, in_channels=3)
    assert sc.threads == before
