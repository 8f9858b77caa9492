"""cnnviz.ops.batchnorm against hand formulas and nn.BatchNorm2d."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from cnnviz.ops import OpError, batchnorm


@pytest.fixture(scope="module")
def feats() -> torch.Tensor:
    return torch.randn(6, 3, 5, 7, generator=torch.Generator().manual_seed(0)) * 2 + 0.7


def test_train_output_is_the_formula_by_hand(feats):
    s = batchnorm.BNSettings(eps=1e-3, momentum=0.2, gamma=[1.5, -0.5, 2.0], beta=[0.1, 0.2, -1.0])
    res = batchnorm.train_then_eval(feats, s, passes=1)
    mean = feats.mean((0, 2, 3), keepdim=True)
    var = ((feats - mean) ** 2).mean((0, 2, 3), keepdim=True)  # biased
    g = torch.tensor([1.5, -0.5, 2.0]).view(1, 3, 1, 1)
    b = torch.tensor([0.1, 0.2, -1.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(res.y_train, g * (feats - mean) / torch.sqrt(var + 1e-3) + b, atol=1e-5, rtol=1e-5)
    for i, row in enumerate(batchnorm.stats_rows(res)):
        assert row["mean after (train)"] == pytest.approx([0.1, 0.2, -1.0][i], abs=1e-5)
        assert row["mean before"] == pytest.approx(float(mean[0, i]), abs=1e-6)


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_running_stats_follow_the_momentum_rule(feats, momentum):
    k = 4
    res = batchnorm.train_then_eval(feats, batchnorm.BNSettings(momentum=momentum), passes=k)
    n = feats.shape[0] * feats.shape[2] * feats.shape[3]
    mean = feats.mean((0, 2, 3))
    var_u = feats.var((0, 2, 3), unbiased=True)
    rm, rv = torch.zeros(3), torch.ones(3)
    for t in range(1, k + 1):
        m = 1 / t if momentum is None else momentum
        rm = (1 - m) * rm + m * mean
        rv = (1 - m) * rv + m * var_u
        torch.testing.assert_close(res.passes[t - 1].running_mean, rm)
        torch.testing.assert_close(res.passes[t - 1].running_var, rv)
        assert res.passes[t - 1].factor == pytest.approx(m)
    assert res.before.count == n
    # eval mode uses the running statistics
    ref = (feats - rm.view(1, 3, 1, 1)) / torch.sqrt(rv.view(1, 3, 1, 1) + 1e-5)
    torch.testing.assert_close(res.y_eval, ref, atol=1e-5, rtol=1e-5)
    assert res.max_abs_diff == pytest.approx(float((res.y_train - res.y_eval).abs().max()), abs=1e-6)
    text = batchnorm.momentum_text(0.0, 0.5, 0.05, 0.1)
    assert text == "running_mean ← (1 − 0.1)·0.0000 + 0.1·0.5000 = 0.0500"


def test_matches_a_plain_torch_layer(feats):
    s = batchnorm.BNSettings(eps=1e-2, momentum=0.3, affine=True, gamma=[2, 1, 1], beta=[0, 1, 0])
    res = batchnorm.train_then_eval(feats, s, passes=3)
    ref = nn.BatchNorm2d(3, eps=1e-2, momentum=0.3)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor([2.0, 1, 1]))
        ref.bias.copy_(torch.tensor([0.0, 1, 0]))
        for _ in range(3):
            y = ref(feats)
        ref.eval()
        y_eval = ref(feats)
    torch.testing.assert_close(res.y_train, y)
    torch.testing.assert_close(res.y_eval, y_eval)
    torch.testing.assert_close(res.layer.running_var, ref.running_var)


def test_worked_pixel_equals_torch(feats):
    res = batchnorm.train_then_eval(feats, batchnorm.BNSettings(gamma=[0.5, 2, 1], beta=[1, 0, -1]), passes=2)
    for mode in ("train", "eval"):
        wp = batchnorm.worked_pixel(feats, res, 3, 1, 2, 4, mode)
        assert wp.y == pytest.approx(wp.y_torch, abs=1e-5)
        assert wp.x == pytest.approx(float(feats[3, 1, 2, 4]))
        assert wp.gamma == 2.0 and wp.beta == 0.0
        assert f"{wp.y:.6f}" in wp.text
    assert batchnorm.worked_pixel(feats, res, 0, 0, 0, 0, "eval").mean == pytest.approx(
        float(res.layer.running_mean[0]))
    with pytest.raises(OpError):
        batchnorm.worked_pixel(feats, res, 6, 0, 0, 0)


def test_without_running_stats_eval_equals_train(feats):
    res = batchnorm.train_then_eval(feats, batchnorm.BNSettings(track_running_stats=False, affine=False), passes=2)
    torch.testing.assert_close(res.y_eval, res.y_train)
    assert res.passes == [] and res.eval_uses_batch_stats
    wp = batchnorm.worked_pixel(feats, res, 1, 2, 3, 4, "eval")
    assert wp.y == pytest.approx(wp.y_torch, abs=1e-5)


def test_layer_state_lists_what_vars_holds(feats):
    res = batchnorm.train_then_eval(feats, batchnorm.BNSettings(), passes=2)
    state = batchnorm.layer_state(res.layer)
    v = vars(res.layer)
    assert set(state["_parameters"]) == set(v["_parameters"]) == {"weight", "bias"}
    assert set(state["_buffers"]) == set(v["_buffers"]) == {"running_mean", "running_var", "num_batches_tracked"}
    assert state["_buffers"]["num_batches_tracked"]["values"] == 2
    assert state["hyper-parameters"]["eps"] == 1e-5 and state["hyper-parameters"]["training"] is False
    assert state["_buffers"]["running_mean"]["values"] == pytest.approx(res.layer.running_mean.tolist(), abs=1e-6)


def test_batch_and_features_are_seeded():
    ims = [Image.new("RGB", (40, 30), (200, 10, 10)), Image.effect_mandelbrot((50, 50), (-2, -1.5, 1, 1.5), 50)]
    before = torch.random.get_rng_state()
    b1 = batchnorm.make_batch(ims, size=16, crops_per_image=2, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert b1.shape == (6, 3, 16, 16) and 0 <= float(b1.min()) and float(b1.max()) <= 1
    assert torch.equal(b1, batchnorm.make_batch(ims, size=16, crops_per_image=2, seed=3))
    assert not torch.equal(b1, batchnorm.make_batch(ims, size=16, crops_per_image=2, seed=4))
    torch.testing.assert_close(b1[0], torch.tensor([200 / 255, 10 / 255, 10 / 255]).view(3, 1, 1).expand(3, 16, 16))
    f1 = batchnorm.conv_features(b1, channels=5, seed=1)
    assert f1.shape == (6, 5, 16, 16)
    assert torch.equal(f1, batchnorm.conv_features(b1, channels=5, seed=1))
    with pytest.raises(OpError):
        batchnorm.make_batch([], size=16)


def test_bad_settings_are_clear():
    with pytest.raises(OpError, match="eps must be positive"):
        batchnorm.BNSettings(eps=0).build(3)
    with pytest.raises(OpError, match="more than one value per channel"):
        batchnorm.train_then_eval(torch.rand(1, 2, 1, 1), batchnorm.BNSettings())
    counts, edges = batchnorm.histogram(torch.arange(10.0), bins=5)
    assert counts.tolist() == [2, 2, 2, 2, 2] and len(edges) == 6


def test_layer_state_rows_are_readable(feats):
    res = batchnorm.train_then_eval(feats, batchnorm.BNSettings(), passes=3)
    rows = {r["name"]: r for r in batchnorm.layer_state_rows(res.layer)}
    assert rows["running_mean"]["kind"] == "buffer" and rows["running_mean"]["shape"] == "(3,)"
    assert rows["weight"]["kind"] == "parameter" and rows["weight"]["requires_grad"] == "True"
    assert rows["num_batches_tracked"]["value"] == "3"
    assert rows["eps"]["value"] == "1e-05"
