"""cnnviz.train.evaluate against independent computations (manual loops, plain formulas, torch's own layers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cnnviz.train import evaluate


def _manual_cm(labels, preds, k):
    cm = [[0] * k for _ in range(k)]
    for t, p in zip(labels, preds):
        cm[t][p] += 1
    return np.array(cm)


def test_confusion_matrix_matches_manual_count():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, size=500)
    preds = np.where(rng.random(500) < 0.6, labels, rng.integers(0, 7, size=500))
    cm = evaluate.confusion_matrix(labels, preds, 7)
    assert cm.shape == (7, 7)
    np.testing.assert_array_equal(cm, _manual_cm(labels, preds, 7))
    assert cm.sum() == 500


def test_confusion_matrix_rejects_bad_ids():
    with pytest.raises(ValueError):
        evaluate.confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError):
        evaluate.confusion_matrix(np.array([0, 1]), np.array([0]), 3)


def test_per_class_accuracy_formula_and_empty_class():
    labels = [0, 0, 0, 0, 1, 1, 2, 2, 2]
    preds = [0, 0, 1, 2, 1, 0, 2, 2, 2]
    cm = evaluate.confusion_matrix(np.array(labels), np.array(preds), 4)
    acc = evaluate.per_class_accuracy(cm)
    for k in range(3):
        n = sum(1 for t in labels if t == k)
        right = sum(1 for t, p in zip(labels, preds) if t == k and p == k)
        assert acc[k] == pytest.approx(right / n)
    assert math.isnan(acc[3])  # class 3 has no examples


class _Fixed(nn.Module):
    """Logits = mean of each channel, scaled: a model whose outputs we can predict by hand."""

    def forward(self, x):
        return torch.stack([x[:, 0].mean((1, 2)), x[:, 1].mean((1, 2)), x[:, 2].mean((1, 2))], 1) * 10

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))


def test_predict_normalises_resizes_and_softmaxes_like_a_manual_pipeline():
    g = torch.Generator().manual_seed(1)
    imgs = torch.randint(0, 256, (13, 3, 28, 28), dtype=torch.uint8, generator=g)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    probs = evaluate.predict(model, imgs, mean, std, input_size=32, batch_size=4)
    # manual: float, torchvision-free resize via torch's interpolate, per-channel normalisation by hand
    x = imgs.float() / 255
    x = nn.functional.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    for c in range(3):
        x[:, c] = (x[:, c] - mean[c]) / std[c]
    with torch.no_grad():
        want = torch.softmax(model(x), 1)
    assert probs.shape == (13, 5)
    torch.testing.assert_close(probs, want, rtol=1e-5, atol=1e-6)


def test_evaluation_mistakes_and_cells():
    # three images whose brightest channel decides the class; labels chosen so some are wrong
    imgs = torch.zeros(6, 3, 4, 4, dtype=torch.uint8)
    winners = [0, 1, 2, 0, 1, 2]
    strength = [250, 200, 150, 100, 60, 255]
    for i, (w, s) in enumerate(zip(winners, strength)):
        imgs[i, w] = s
    labels = torch.tensor([0, 2, 2, 1, 1, 0])  # wrong: #1 (2->1), #3 (1->0), #5 (0->2)
    ev = evaluate.evaluate_model(_Fixed(), imgs, labels, ["r", "g", "b"], (0, 0, 0), (1, 1, 1))
    np.testing.assert_array_equal(ev.preds, winners)
    assert ev.accuracy == pytest.approx(3 / 6)
    wrong = [i for i in range(6) if winners[i] != int(labels[i])]
    by_conf = sorted(wrong, key=lambda i: -float(ev.probs[i].max()))
    got = evaluate.confident_mistakes(ev, k=10)
    assert [m.index for m in got] == by_conf
    assert all(m.true != m.pred for m in got)
    assert got[0].confidence == pytest.approx(float(ev.probs[by_conf[0]].max()))
    assert [m.index for m in evaluate.confident_mistakes(ev, k=2)] == by_conf[:2]
    cell = evaluate.cell_examples(ev, true=2, pred=1)
    assert [m.index for m in cell] == [1]
    assert evaluate.cell_examples(ev, true=0, pred=1) == []
    cm = evaluate.confusion_matrix(ev.labels, ev.preds, 3)
    assert evaluate.top_confusions(cm, k=5) == sorted(
        [(int(labels[i]), winners[i], 1) for i in wrong], key=lambda t: (t[0], t[1]))


def test_evaluate_model_limit():
    imgs = torch.zeros(10, 3, 4, 4, dtype=torch.uint8)
    ev = evaluate.evaluate_model(_Fixed(), imgs, torch.zeros(10, dtype=torch.long), ["a", "b", "c"],
                                 (0,), (1,), limit=4)
    assert len(ev.labels) == 4 and ev.probs.shape == (4, 3)
    np.testing.assert_allclose(ev.probs.sum(1), 1, rtol=1e-6)


def _fake_run(tmp_path, epochs=(1, 2)):
    """A run directory with per-epoch LeNet5 checkpoints (different random weights), no training."""
    import json

    from cnnviz import models
    from cnnviz import runs
    from cnnviz.models.checkpoints import save_checkpoint

    d = tmp_path / "run-x"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model": "lenet5", "dataset": "shapes"}))
    meta = {"model": "lenet5", "num_classes": 10, "in_channels": 3, "input_size": 32,
            "classes": [f"c{i}" for i in range(10)], "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.25]}
    for e in epochs:
        torch.manual_seed(e)
        save_checkpoint(models.create("lenet5"), d / runs.epoch_checkpoint_name(e), {**meta, "epoch": e})
    return runs.read_run(d), meta


def test_scrub_maps_match_a_forward_hook_on_the_saved_weights(tmp_path):
    from PIL import Image

    from cnnviz import models
    from cnnviz.train import scrub
    from cnnviz.models.checkpoints import load_checkpoint, load_into

    run, meta = _fake_run(tmp_path)
    names = [li.name for li in scrub.scrub_layers(run)]
    assert names == ["conv_unit.0", "conv_unit.1", "conv_unit.2", "conv_unit.3"]
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    for epoch in (1, 2):
        em = scrub.maps_at(run, epoch, "conv_unit.2", image)
        # independent: bicubic 64 -> 32 (square: no crop), normalise by hand, hook the module ourselves
        im = image.resize((32, 32), Image.Resampling.BICUBIC)
        x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)
        for c in range(3):
            x[c] = (x[c] - meta["mean"][c]) / meta["std"][c]
        model = load_into(models.create("lenet5"), load_checkpoint(run.checkpoints[epoch])).eval()
        got = {}
        h = model.conv_unit[2].register_forward_hook(lambda m, i, o: got.setdefault("o", o))
        with torch.no_grad():
            probs = torch.softmax(model(x[None]), 1)[0]
        h.remove()
        assert em.epoch == epoch and em.maps.shape == (32, 10, 10)
        torch.testing.assert_close(em.maps, got["o"][0], rtol=1e-4, atol=1e-4)
        assert em.top[0][0] == int(probs.argmax()) and em.top[0][1] == f"c{int(probs.argmax())}"
    # different epochs hold different weights, so the maps differ
    assert not torch.allclose(scrub.maps_at(run, 1, "conv_unit.0", image).maps,
                              scrub.maps_at(run, 2, "conv_unit.0", image).maps)


def test_run_test_indices_match_the_trainers_subsample():
    from cnnviz.train.device_data import subsample

    labels = torch.arange(100)
    _, sub = subsample(torch.zeros(100, 1, 1, 1, dtype=torch.uint8), labels, 17, seed=3 + 1)
    np.testing.assert_array_equal(evaluate.run_test_indices(100, 17, 3), sub.numpy())
    np.testing.assert_array_equal(evaluate.run_test_indices(10, None, 0), np.arange(10))
