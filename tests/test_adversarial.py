"""FGSM and PGD (cnnviz.inspect.adversarial): the shipped CIFAR-10 LeNet5 fooled at ε = 8/255 on real
test images, ε = 0 changes nothing, the attack agrees with Captum's FGSM, ε bounds, sweeps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnviz import data
from cnnviz.inspect import adversarial as Adv, loading

SHIPPED = loading.shipped_checkpoints()
needs_lenet = pytest.mark.skipif("lenet5" not in SHIPPED, reason="the shipped CIFAR-10 LeNet5 is not in assets")


@pytest.fixture(scope="module")
def lenet():
    return loading.from_checkpoint(SHIPPED["lenet5"], "lenet5")


def _correct(loaded, images, labels, n):
    net = Adv.Normalised(loaded.model, loaded.mean, loaded.std, images.shape[1])
    with torch.no_grad():
        preds = net(images[: 4 * n].float() / 255).argmax(1)
    idx = torch.nonzero(preds == labels[: 4 * n]).flatten()[:n]
    assert len(idx) == n
    return idx


@needs_lenet
def test_fgsm_eps8_flips_most_of_50_correct_cifar_test_images(lenet, cifar_jpeg, capsys):
    ds = data.load_dataset(f"folder:{cifar_jpeg}", "test")
    idx = _correct(lenet, ds.images, ds.labels, 50)
    flipped = 0
    for i in idx.tolist():
        px = ds.images[i].float() / 255
        a = Adv.fgsm(lenet.model, px, lenet.mean, lenet.std, 8)
        assert a.linf_levels <= 8 + 1e-3
        flipped += a.flipped
        zero = Adv.fgsm(lenet.model, px, lenet.mean, lenet.std, 0)
        assert torch.equal(zero.adversarial, zero.clean) and not zero.flipped   # ε = 0 changes nothing
        assert torch.equal(zero.probs_adv, zero.probs_clean)
    with capsys.disabled():
        print(f"\nFGSM ε=8/255 flips {flipped} of 50 correctly classified CIFAR-10 test images "
              f"({flipped / 50:.0%}) of the shipped LeNet5")
    assert flipped > 25


@needs_lenet
def test_fgsm_agrees_with_captum(lenet):
    from captum.robust import FGSM

    g = torch.Generator().manual_seed(0)
    px = torch.rand(3, 32, 32, generator=g)
    a = Adv.fgsm(lenet.model, px, lenet.mean, lenet.std, 6)
    net = Adv.Normalised(lenet.model, lenet.mean, lenet.std, 3)
    theirs = FGSM(net, loss_func=nn.CrossEntropyLoss(reduction="none"), lower_bound=0.0, upper_bound=1.0).perturb(
        px[None].clone(), 6 / 255, target=torch.tensor([a.label]))[0].detach()
    same = (theirs - a.adversarial).abs() < 1e-6
    # Captum leaves pixels whose gradient is below 1e-6 alone; everywhere else the two agree exactly
    assert same.float().mean() > 0.99
    assert int(net(theirs[None]).argmax()) == a.pred_adv


@needs_lenet
def test_pgd_stays_in_the_ball_and_beats_fgsm(lenet):
    g = torch.Generator().manual_seed(1)
    px = torch.rand(3, 32, 32, generator=g)
    for eps in (1, 4):
        f = Adv.fgsm(lenet.model, px, lenet.mean, lenet.std, eps)
        p = Adv.pgd(lenet.model, px, lenet.mean, lenet.std, eps, steps=10)
        assert p.linf_levels <= eps + 1e-3
        assert float(p.adversarial.min()) >= 0 and float(p.adversarial.max()) <= 1
        assert float(p.probs_adv[p.label]) <= float(f.probs_adv[f.label]) + 1e-4
    r = Adv.pgd(lenet.model, px, lenet.mean, lenet.std, 4, steps=5, random_start=True, seed=3)
    assert r.linf_levels <= 4 + 1e-3


@needs_lenet
def test_sweeps_agree_with_single_attacks(lenet):
    g = torch.Generator().manual_seed(2)
    px = torch.rand(3, 32, 32, generator=g)
    sw = Adv.fgsm_sweep(lenet.model, px, lenet.mean, lenet.std, 16)
    assert list(sw.epsilons) == list(range(17)) and sw.preds[0] == sw.pred_clean
    for eps in (0, 3, 9, 16):
        assert sw.preds[eps] == Adv.fgsm(lenet.model, px, lenet.mean, lenet.std, eps).pred_adv
    flip = sw.smallest_flip
    assert flip is not None and all(sw.preds[:flip] == sw.pred_clean) and sw.preds[flip] != sw.pred_clean
    ps = Adv.pgd_sweep(lenet.model, px, lenet.mean, lenet.std, 6, steps=5)
    assert ps.preds[5] == Adv.pgd(lenet.model, px, lenet.mean, lenet.std, 5, steps=5).pred_adv
    assert ps.smallest_flip is None or ps.smallest_flip <= (flip if flip is not None else 99)


def test_digits_model_is_fooled_too():
    path = loading.shipped_for("lenet5").get("digits")
    if path is None:
        pytest.skip("the shipped digits LeNet5 is not in assets")
    loaded = loading.from_checkpoint(path, "lenet5")
    ds = data.load_dataset("digits", "test")
    from cnnviz.train.device_data import resize_uint8

    px = resize_uint8(ds.images[:1], (32, 32))[0].float() / 255
    assert px.shape == (1, 32, 32)
    sw = Adv.fgsm_sweep(loaded.model, px, loaded.mean, loaded.std, 64)
    assert sw.pred_clean == int(ds.labels[0])
    assert sw.smallest_flip is not None  # even a confident digit flips within 64/255


def test_bad_pixels_are_refused():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Adv.fgsm(model, torch.full((3, 2, 2), 2.0), (0.5,) * 3, (0.5,) * 3, 4)
    with pytest.raises(ValueError, match="one image"):
        Adv.fgsm(model, torch.rand(2, 3, 2, 2), (0.5,) * 3, (0.5,) * 3, 4)
