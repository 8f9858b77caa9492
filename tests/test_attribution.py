"""Attribution methods (cnnviz.inspect.attribution): every method on every kind of model, cnnviz's
Grad-CAM against pytorch-grad-cam's, the quadrant task whose answer is known, the cascading
randomisation sanity check, deletion/insertion curves, and refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnviz import models
from cnnviz.images import load_image, samples
from cnnviz.inspect import attribution as A, features, loading
from cnnviz.limits import BudgetError

from . import synthetic as S

SHIPPED = loading.shipped_checkpoints()
needs_shipped = pytest.mark.skipif(not {"lenet5", "resnet_small"} <= set(SHIPPED),
                                   reason="the shipped CIFAR-10 checkpoints are not in assets/checkpoints")


def _cat(loaded) -> torch.Tensor:
    im = load_image(samples()[0].path)
    x, _ = features.preprocess(im, loaded.input_size, loaded.mean, loaded.std, loaded.in_channels)
    return x


def _model(kind: str):
    if kind == "lenet5":
        return loading.from_checkpoint(SHIPPED["lenet5"], "lenet5")
    if kind == "resnet_small":
        return loading.from_checkpoint(SHIPPED["resnet_small"], "resnet_small")
    if kind == "digits":
        return loading.from_checkpoint(loading.shipped_for("lenet5")["digits"], "lenet5")
    torch.manual_seed(0)
    model = models.from_design(models.design.PRESETS["resnet_small"], num_classes=10).eval()
    info = models.info("lenet5")
    return loading.Loaded(model, "design", False, [str(i) for i in range(10)], info.mean, info.std, 32, 3, "design")


@needs_shipped
@pytest.mark.parametrize("kind", ["lenet5", "resnet_small", "design", "digits"])
def test_every_method_on_each_kind_of_model(kind):
    loaded = _model(kind)
    x = _cat(loaded)
    assert x.shape[1] == (1 if kind == "digits" else 3)
    for method in A.METHODS:
        a = A.attribute(loaded.model, x, method, 3, mean=loaded.mean, std=loaded.std)
        assert a.map.shape == (32, 32), method
        assert torch.isfinite(a.map).all() and float(a.map.min()) >= 0 and float(a.map.max()) <= 1, method
        assert a.target == 3
    # no gradients are left on the weights (pytorch-grad-cam calls backward())
    assert all(p.grad is None for p in loaded.model.parameters())


@needs_shipped
@pytest.mark.parametrize("kind", ["lenet5", "resnet_small"])
def test_cnnviz_grad_cam_equals_pytorch_grad_cam(kind):
    """cnnviz's own Grad-CAM (the Feature maps page's) and the library's give the same map, up to their
    scaling (the library subtracts the minimum before resizing with OpenCV): so one is kept."""
    loaded = _model(kind)
    x = _cat(loaded)
    for target in (0, 3, 7):
        ours = A.attribute(loaded.model, x, "Grad-CAM", target).map.numpy()
        lib = A.attribute(loaded.model, x, "Grad-CAM (pytorch-grad-cam)", target).map.numpy()

        def minmax(m):
            return (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else m

        assert np.abs(minmax(ours) - minmax(lib)).max() < 0.03, (kind, target)
        assert np.corrcoef(ours.ravel(), lib.ravel())[0, 1] > 0.999


@pytest.fixture(scope="module")
def quadrant():
    model, acc = S.train_quadrant_model()
    assert acc > 0.95, f"the quadrant model learned only {acc:.0%}"
    imgs, labels = S.quadrant_images(40, seed=5)
    keep = labels == 1
    return model, S.normalise(imgs[keep])


@pytest.mark.parametrize("method", ["Grad-CAM", "Integrated Gradients", "Occlusion"])
def test_quadrant_task_maps_point_at_the_deciding_quadrant(quadrant, method):
    model, x = quadrant
    params = {"baseline": "mean colour"} if method == "Integrated Gradients" else None
    mass = [A.quadrant_mass(A.attribute(model, x[i:i + 1], method, 1, params=params).map, S.QUADRANT)
            for i in range(len(x))]
    assert np.median(mass) > 0.5, (method, np.round(mass, 2))   # a uniform map would give 0.25
    assert np.mean(mass) > 0.5


def test_quadrant_task_faithfulness_beats_random_order(quadrant):
    model, x = quadrant
    for method in ("Grad-CAM", "Occlusion"):
        dele, ins, dele_r, ins_r = [], [], [], []
        for i in range(6):
            a = A.attribute(model, x[i:i + 1], method, 1)
            # insertion starts from the mean colour: a blurred copy still shows the bright square here
            f = A.faithfulness(model, x[i:i + 1], a.map, 1, mean=S.MEAN, std=S.STD, insertion_baseline="mean colour")
            assert f.deletion[0] == pytest.approx(f.insertion[-1], abs=1e-5)  # both the untouched image
            dele.append(f.deletion_auc)
            ins.append(f.insertion_auc)
            dele_r.append(A.Faithfulness.area(f.deletion_random, f.fractions))
            ins_r.append(A.Faithfulness.area(f.insertion_random, f.fractions))
        assert np.mean(dele) < np.mean(dele_r), method
        assert np.mean(ins) > np.mean(ins_r), method


@needs_shipped
def test_sanity_check_randomised_maps_correlate_less_than_repeats():
    loaded = _model("lenet5")
    x = _cat(loaded)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    progress = []
    res = A.sanity_check(loaded.model, x, list(A.METHODS), mean=loaded.mean, std=loaded.std,
                         progress=lambda f, m: progress.append(f))
    # the model itself is untouched: the check works on a copy
    assert all(torch.equal(before[k], v) for k, v in loaded.model.state_dict().items())
    assert [g[0] for g in res.layers] == ["fc_unit.2", "fc_unit.0", "conv_unit.2", "conv_unit.0"]  # top down
    assert progress[-1] == 1.0 and progress == sorted(progress)
    for m in A.METHODS:
        assert len(res.maps[m]) == len(res.layers) + 1 and res.rho[m][0] == pytest.approx(1.0)
        if not res.defined(m):
            continue
        assert res.rho[m][-1] < res.rho_repeat[m], (m, res.rho[m], res.rho_repeat[m])
    assert res.rho_repeat["SmoothGrad"] < 1.0          # noise: two runs differ
    assert res.rho_repeat["Occlusion"] == pytest.approx(1.0)
    # the check computes a deterministic method's repeat by comparing it with itself: that holds
    # only if two runs really give the same map (the seed differs, as for the stochastic ones)
    for m in A.METHODS:
        if not A.METHODS[m].stochastic:
            one, two = (A.attribute(loaded.model, x, m, mean=loaded.mean, std=loaded.std, seed=s).map for s in (0, 1))
            assert torch.allclose(one, two, atol=1e-6), m
    assert res.passes("Occlusion"), res.verdict("Occlusion")
    assert res.verdict("Occlusion").startswith("passes")


def test_spearman_and_quadrant_mass():
    a = torch.arange(16.0).view(4, 4)
    assert A.spearman(a, a * 3 + 1) == pytest.approx(1.0)
    assert A.spearman(a, -a) == pytest.approx(-1.0)
    assert A.spearman(a, torch.zeros(4, 4)) == 0.0
    m = torch.zeros(4, 4)
    m[:2, :2] = 1
    assert A.quadrant_mass(m, 0) == 1.0 and A.quadrant_mass(m, 3) == 0.0


def test_refusals_are_one_line(monkeypatch):
    model = models.create("lenet5").eval()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="Unknown method"):
        A.attribute(model, x, "Magic")
    with pytest.raises(ValueError, match="one image at a time"):
        A.attribute(model, torch.randn(2, 3, 32, 32), "Saliency")
    with pytest.raises(ValueError, match="No layer named"):
        A.attribute(model, x, "Grad-CAM++", layer="nope")
    monkeypatch.setenv("CNNVIZ_SERVER_BUDGET_MB", "0.001")
    with pytest.raises(BudgetError) as err:
        A.attribute(model, x, "Integrated Gradients")
    assert "\n" not in str(err.value) and "CNNVIZ_SERVER_BUDGET_MB" in str(err.value)
