"""Feature maps, hooks, receptive fields and Grad-CAM against independent computations."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from cnnviz.inspect import features
from cnnviz.models import create
from cnnviz.inspect.receptive import draw_box, trace


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_feature_maps_equal_manual_forward_lenet():
    torch.manual_seed(0)
    m = create("lenet5").eval()
    x = torch.randn(2, 3, 32, 32)
    out = features.feature_maps(m, x, ["conv_unit.0", "conv_unit.2", "fc_unit.1"])
    with torch.no_grad():
        a = m.conv_unit[0](x)
        b = m.conv_unit[2](m.conv_unit[1](a))
        h = torch.flatten(m.conv_unit[3](b), 1)
        r = torch.relu(m.fc_unit[0](h))
    torch.testing.assert_close(out["conv_unit.0"], a)
    torch.testing.assert_close(out["conv_unit.2"], b)
    torch.testing.assert_close(out["fc_unit.1"], r)
    assert _no_hooks(m)


def test_feature_maps_repeated_module_and_inplace_relu():
    """torchvision's BasicBlock reuses one in-place ReLU: 'relu' and 'relu:2' are its two calls, and the
    captured bn1 output is not clobbered by the in-place ReLU that follows it."""
    torch.manual_seed(0)
    m = create("resnet18").eval()
    blk = m.layer1[0]
    x = torch.randn(1, 3, 64, 64)
    got = features.feature_maps(m, x, ["layer1.0.bn1", "layer1.0.relu", "layer1.0.relu:2"])
    with torch.no_grad():
        stem = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        bn1 = blk.bn1(blk.conv1(stem))
        r1 = torch.relu(bn1)
        r2 = torch.relu(blk.bn2(blk.conv2(r1)) + stem)
    torch.testing.assert_close(got["layer1.0.bn1"], bn1)
    assert (got["layer1.0.bn1"] < 0).any()  # pre-ReLU values survived
    torch.testing.assert_close(got["layer1.0.relu"], r1)
    torch.testing.assert_close(got["layer1.0.relu:2"], r2)
    assert _no_hooks(m)


def test_feature_maps_3d_input_and_errors():
    m = create("lenet5")
    out = features.feature_maps(m, torch.zeros(3, 32, 32), ["conv_unit.0"])
    assert out["conv_unit.0"].shape == (16, 28, 28)
    with pytest.raises(ValueError, match="No layer named"):
        features.feature_maps(m, torch.zeros(3, 32, 32), ["nope"])
    assert _no_hooks(m)
    assert m.training  # mode restored


def test_hooks_removed_after_exception():
    m = create("lenet5")
    with pytest.raises(RuntimeError, match="boom"):
        with features.hooks(m, {"conv_unit.0": lambda *a: None, "fc_unit.2": lambda *a: None}):
            assert m.conv_unit[0]._forward_hooks
            raise RuntimeError("boom")
    assert _no_hooks(m)
    # and a forward that itself fails (wrong input size) inside feature_maps
    with pytest.raises(RuntimeError):
        features.feature_maps(m, torch.zeros(1, 3, 20, 20), ["fc_unit.2"])
    assert _no_hooks(m)


def test_list_layers_forward_order_and_shapes():
    m = create("lenet5")
    layers = features.list_layers(m, (3, 32, 32))
    names = [li.name for li in layers]
    assert names == ["conv_unit", "conv_unit.0", "conv_unit.1", "conv_unit.2", "conv_unit.3",
                     "fc_unit", "fc_unit.0", "fc_unit.1", "fc_unit.2"]
    shapes = {li.name: li.shape for li in layers}
    assert shapes["conv_unit.2"] == (1, 32, 10, 10) and shapes["fc_unit.0"] == (1, 32)
    assert _no_hooks(m) and next(m.parameters()).device.type == "cpu"


def test_receptive_field_lenet_by_hand():
    rows = {li.name: li.rf for li in trace(create("lenet5"), (3, 32, 32))}
    # conv k5: r=5, j=1; pool 2: r=6, j=2; conv k5: r=6+4*2=14; pool 2: r=16, j=4
    assert rows["conv_unit.0"].size == (5, 5) and rows["conv_unit.0"].jump == (1, 1)
    assert rows["conv_unit.1"].size == (6, 6) and rows["conv_unit.1"].jump == (2, 2)
    assert rows["conv_unit.2"].size == (14, 14)
    assert rows["conv_unit.3"].size == (16, 16) and rows["conv_unit.3"].jump == (4, 4)
    assert rows["fc_unit.0"].whole


def test_receptive_field_known_values():
    """Published receptive fields: ResNet-18's last stage 435 px, VGG-16 conv5_3 196 px, AlexNet pool5 195."""
    r18 = {li.name: li.rf for li in trace(create("resnet18"), (3, 224, 224))}
    assert r18["layer4"].size == (435, 435) and r18["layer4"].jump == (32, 32)
    vgg = {li.name: li.rf for li in trace(create("vgg16"), (3, 224, 224))}
    assert vgg["features.29"].size == (196, 196)
    alex = {li.name: li.rf for li in trace(create("alexnet"), (3, 224, 224))}
    assert alex["features.12"].size == (195, 195)


class _Branchy(nn.Module):
    """avg pools and all-ones convs with a shortcut and a concat: gradient support == receptive field."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        self.pool = nn.AvgPool2d(2)
        self.b = nn.Conv2d(1, 1, 5, padding=2, dilation=1, bias=False)
        self.c = nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False)
        self.skip = nn.Conv2d(1, 1, 1, bias=False)
        for conv in (self.a, self.b, self.c, self.skip):
            nn.init.ones_(conv.weight)

    def forward(self, x):
        h = self.pool(self.a(x))
        h = self.b(h) + self.skip(h)
        return torch.cat([self.c(h), self.c(h)], 1)


def test_receptive_field_matches_gradient_support():
    model = _Branchy()
    x = torch.zeros(1, 1, 40, 40, requires_grad=True)
    row, col = 3, 4
    model(x)[0, 0, row, col].backward()
    nz = (x.grad[0, 0].abs() > 0).nonzero()
    top, left = nz.min(0).values.tolist()
    bottom, right = nz.max(0).values.tolist()
    rf = trace(model, (1, 40, 40))[-1].rf
    l, t, r, b = rf.box(row, col)
    assert (max(0, l), max(0, t), min(39, r), min(39, b)) == (left, top, right, bottom)


def test_draw_box_scales_to_image():
    im = Image.new("RGB", (64, 64), "white")
    out = draw_box(im, (0, 0, 15, 15), (32, 32), width=1)
    px = out.load()
    assert px[0, 0] == (255, 40, 40) and px[31, 31] == (255, 40, 40) and px[40, 40] == (255, 255, 255)


def test_channel_grid_and_order():
    fmap = torch.zeros(5, 4, 4)
    for c in range(5):
        fmap[c] = c
    fmap[2, 0, 0] = 100  # channel 2 has the highest mean
    order = features.channel_order(fmap, "mean", top_k=3)
    assert order == [2, 4, 3]
    assert features.channel_order(fmap, "index") == [0, 1, 2, 3, 4]
    g = features.channel_grid(fmap, order, shared=True, columns=3, tile=8, gap=2)
    assert g.image.size == (3 * 8 + 2 * 2, 8) and g.vmax == 100
    g2 = features.channel_grid(fmap, order, shared=False, columns=2, tile=8, gap=2)
    assert g2.image.size == (18, 18)
    assert g2.image.getpixel((17, 17)) == (255, 255, 255)  # the empty 4th tile is blank


def test_preprocess_normalises():
    im = Image.new("RGB", (50, 30), (255, 0, 128))
    x, small = features.preprocess(im, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert x.shape == (1, 3, 32, 32) and small.size == (32, 32)
    torch.testing.assert_close(x[0, :, 5, 5], torch.tensor([2.0, -2.0, (128 / 255 - 0.5) / 0.25]))
    g, _ = features.preprocess(im, 28, (0.5,), (0.5,), in_channels=1)
    assert g.shape == (1, 1, 28, 28)


# ---------------------------------------------------------------- Grad-CAM on a model trained here

def _square(img, y, x):  # class 0: a horizontal bar in a 8x8 box
    img[:, y + 3:y + 5, x:x + 8] = 1.0


def _cross(img, y, x):  # class 1: a vertical bar in a 8x8 box
    img[:, y:y + 8, x + 3:x + 5] = 1.0


def _batch(gen, n, size=24):
    """Multi-label: each bar is present with p=0.5, one per half (sides random), so each logit has to
    find its own object; targets (n, 2) in {0, 1}."""
    xs = torch.rand(n, 3, size, size, generator=gen) * 0.1
    ys = torch.randint(0, 2, (n, 2), generator=gen).float()
    flip = torch.randint(0, 2, (n,), generator=gen)
    pos = torch.randint(0, size // 2 - 8 + 1, (n, 2, 2), generator=gen)
    for i in range(n):
        for k, draw in enumerate((_square, _cross)):
            if ys[i, k]:
                half = (k + int(flip[i])) % 2
                draw(xs[i], int(pos[i, k, 0]) * 2, int(pos[i, k, 1]) + half * size // 2)
    return xs, ys


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1),
                                      nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def trained_tiny():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = _Tiny()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        x, y = _batch(gen, 32)
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = _batch(gen, 200)
    with torch.no_grad():
        acc = ((model(x) > 0).float() == y).float().mean().item()
    assert acc > 0.95, f"the tiny model did not learn ({acc:.2f}); the Grad-CAM check would mean nothing"
    return model.eval()


@pytest.mark.parametrize("square_left", [True, False])
def test_grad_cam_highlights_the_right_object(trained_tiny, square_left):
    img = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(1)) * 0.1
    (_square if square_left else _cross)(img, 8, 0)
    (_cross if square_left else _square)(img, 8, 16)
    for cls in (0, 1):
        res = features.grad_cam(trained_tiny, img, "features.5", target=cls)
        assert res.cam.shape == (24, 24) and res.target == cls
        assert float(res.cam.min()) >= 0 and float(res.cam.max()) <= 1
        assert float(res.cam.max()) == pytest.approx(1.0)
        left, right = float(res.cam[:, :12].sum()), float(res.cam[:, 12:].sum())
        object_left = (cls == 0) == square_left
        peak_col = int(res.cam.flatten().argmax()) % 24
        assert (left > 1.5 * right) if object_left else (right > 1.5 * left), (cls, left, right)
        assert (peak_col < 12) == object_left
    assert _no_hooks(trained_tiny)


def test_grad_cam_default_target_and_errors(trained_tiny):
    img = torch.rand(3, 24, 24) * 0.1
    _cross(img, 3, 3)
    res = features.grad_cam(trained_tiny, img, "features.4")
    assert res.target == int(res.probs.argmax()) == 1
    assert res.probs.sum().item() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="spatial"):
        features.grad_cam(create("lenet5"), torch.zeros(3, 32, 32), "fc_unit.0")
    with pytest.raises(ValueError, match="out of range"):
        features.grad_cam(trained_tiny, img, "features.4", target=7)
    assert _no_hooks(trained_tiny)


def test_grad_cam_frozen_weights_and_resnet_inplace_layer():
    m = create("resnet_small").eval()
    for p in m.parameters():
        p.requires_grad_(False)
    res = features.grad_cam(m, torch.rand(3, 32, 32), "layers.2.0.bn2")
    assert res.cam.shape == (32, 32) and 0 <= float(res.cam.min()) <= float(res.cam.max()) <= 1


def test_predict_top5_names():
    m = create("lenet5")
    top = features.predict(m, torch.zeros(3, 32, 32), [f"c{i}" for i in range(10)], k=5)
    with torch.no_grad():
        probs = m.eval()(torch.zeros(1, 3, 32, 32)).softmax(-1)[0]
    assert [t[0] for t in top] == probs.topk(5).indices.tolist()
    assert top[0][1] == f"c{top[0][0]}"
    assert top[0][2] == pytest.approx(float(probs.max()))


def test_last_spatial_layer():
    def pick(name: str, size: int) -> str | None:
        with torch.device("meta"):
            m = create(name, num_classes=1000 if size == 224 else 10)
        return features.last_spatial_layer(features.list_layers(m, (3, size, size)))

    assert pick("lenet5", 32) == "conv_unit"         # the conv stack's output, 32x5x5
    assert pick("resnet_small", 32) == "layers"      # all stages, not the last shortcut's BatchNorm
    assert pick("resnet18", 224) == "layer4"
    assert pick("googlenet", 224) == "inception5b"
    assert pick("vgg16", 224) in ("features", "avgpool")  # both 512x7x7 at the top level
    assert features.last_spatial_layer(features.list_layers(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)),
                                                            (3, 2, 2))) is None
