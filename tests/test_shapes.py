"""The built-in `shapes` dataset: deterministic, 10 balanced classes, 32x32 RGB, learnable but not trivial."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnviz import models
from cnnviz.data import shapes
from cnnviz.data import SHAPES_TEST, SHAPES_TRAIN, load_dataset


def test_same_seed_same_bytes_other_seed_or_stream_differs():
    a, la = shapes.generate(300, seed=3)
    b, lb = shapes.generate(300, seed=3)
    assert a.dtype == np.uint8 and a.shape == (300, 3, 32, 32)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    c, _ = shapes.generate(300, seed=4)
    assert not np.array_equal(a, c)
    d, _ = shapes.generate(300, seed=3, stream=1)   # train and test draw different images
    assert not np.array_equal(a, d)


def test_ten_balanced_classes_and_images_that_vary():
    x, y = shapes.generate(1000, seed=0)
    assert len(shapes.CLASSES) == 10 and len(set(shapes.CLASSES)) == 10
    assert np.bincount(y, minlength=10).tolist() == [100] * 10
    # not blank, not constant: every image uses a spread of values, and images differ from each other
    flat = x.reshape(len(x), -1).astype(np.int32)
    assert (flat.max(axis=1) - flat.min(axis=1) > 60).all()
    assert len({row.tobytes() for row in x[:200]}) == 200


def test_load_dataset_shapes_sizes_and_stats():
    tr = load_dataset("shapes", "train")
    te = load_dataset("shapes", "test")
    assert tr.images.shape == (SHAPES_TRAIN, 3, 32, 32) and tr.images.dtype == torch.uint8
    assert te.images.shape == (SHAPES_TEST, 3, 32, 32)
    assert tr.labels.dtype == torch.int64 and tr.classes == shapes.CLASSES
    assert tr.class_counts() == [SHAPES_TRAIN // 10] * 10
    x, y = shapes.generate(SHAPES_TEST, seed=0, stream=1)   # the test split is seed 0, stream 1
    assert torch.equal(te.images, torch.from_numpy(x)) and torch.equal(te.labels, torch.from_numpy(y))
    assert te.mean == tr.mean  # both splits report the TRAIN statistics
    xf = tr.images.float() / 255
    torch.testing.assert_close(torch.tensor(tr.mean), xf.mean(dim=(0, 2, 3)), atol=1e-5, rtol=0)


def test_bad_seed_is_a_clear_error():
    with pytest.raises(ValueError, match="integer seed"):
        load_dataset("shapes:abc")


@pytest.mark.slow
def test_lenet5_learns_shapes_in_one_epoch_but_not_perfectly():
    """A plain loop (not cnnviz.train): one epoch of LeNet5, Adam 1e-3, batch 64."""
    tr = load_dataset("shapes", "train")
    te = load_dataset("shapes", "test")
    mean = torch.tensor(tr.mean).view(1, 3, 1, 1)
    std = torch.tensor(tr.std).view(1, 3, 1, 1)

    def prep(x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255 - mean) / std

    torch.manual_seed(0)
    model = models.create("lenet5", num_classes=10, in_channels=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = torch.randperm(len(tr))
    model.train()
    for i in range(0, len(tr), 64):
        idx = order[i:i + 64]
        loss = F.cross_entropy(model(prep(tr.images[idx])), tr.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(prep(te.images)).argmax(1) == te.labels).float().mean().item()
    assert 0.35 < acc < 0.95, f"test accuracy after one epoch: {acc:.3f} (chance is 0.10)"
