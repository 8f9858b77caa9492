"""The projector backend (cnnviz.inspect.projector): separable classes give separated clusters in PCA,
stratified samples, features of any layer, t-SNE and UMAP, hover data and selections mapping back
to image indices, the epoch basis, background jobs and the memory budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnviz import models
from cnnviz.inspect import projector as P
from cnnviz.limits import BudgetError

from . import synthetic as S


@pytest.fixture(scope="module")
def separable():
    """Penultimate features of the quadrant-task LeNet5 (two classes it tells apart) on fresh images."""
    model, acc = S.train_quadrant_model()
    assert acc > 0.95
    imgs, labels = S.quadrant_images(600, seed=9)
    f = P.extract(model, imgs, S.MEAN, S.STD)
    return f, labels.numpy()


def test_two_separable_classes_make_two_clusters_in_pca(separable):
    f, labels = separable
    assert f.vectors.shape == (600, 32) and "penultimate" in f.layer and "fc_unit.2" in f.layer
    assert (f.preds == labels).mean() > 0.95
    proj = P.reduce(f.vectors, "PCA", 2)
    assert proj.coords.shape == (600, 2) and 0 < proj.explained[0] <= 1 and proj.explained[0] >= proj.explained[1]
    assert P.silhouette(proj.coords, labels) > 0.5
    assert P.silhouette(proj.coords, np.random.default_rng(0).integers(0, 2, 600)) < 0.1  # random labels: none


def test_pca_is_the_principal_axes():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 6)).astype(np.float32) * np.array([10, 5, 1, 1, 1, 1], np.float32)
    basis = P.fit_pca(x, 2)
    # the axes are the first two coordinates (up to sign), explaining most of the variance
    assert abs(basis.axes[0, 0]) > 0.99 and abs(basis.axes[1, 1]) > 0.99
    assert basis.explained.sum() > 0.9
    again = P.fit_pca(x, 2)
    assert np.allclose(basis.project(x), again.project(x), atol=1e-4)  # same data, same picture


def test_stratified_sample_keeps_class_shares():
    labels = np.repeat(np.arange(3), [6000, 3000, 1000])
    idx = P.sample_indices(labels, 1000, seed=1)
    assert len(idx) == 1000 and len(np.unique(idx)) == 1000 and (np.diff(idx) > 0).all()
    assert list(np.bincount(labels[idx])) == [600, 300, 100]
    assert np.array_equal(idx, P.sample_indices(labels, 1000, seed=1))
    assert np.array_equal(P.sample_indices(labels[:500], 1000), np.arange(500))  # fewer: all of them


def test_any_layer_pooled_and_bounded_batches():
    model = models.create("resnet_small").eval()
    imgs = torch.randint(0, 255, (70, 3, 32, 32), dtype=torch.uint8)
    seen = []
    f = P.extract(model, imgs, (0.5,) * 3, (0.25,) * 3, layer="layers.1", batch_size=32,
                  progress=lambda a, m: seen.append(a))
    assert f.vectors.shape == (70, 32) and "averaged over positions" in f.layer
    assert len(seen) == 3 and seen[-1] == 1.0    # 32 + 32 + 6
    pen = P.extract(model, imgs, (0.5,) * 3, (0.25,) * 3)
    assert pen.vectors.shape == (70, 64)
    # the penultimate vectors are what the last layer classifies: fc(vectors) gives the predictions
    with torch.no_grad():
        logits = model.fc(torch.from_numpy(pen.vectors))
    assert np.array_equal(logits.argmax(1).numpy(), pen.preds)
    with pytest.raises(ValueError, match="No layer named"):
        P.extract(model, imgs, (0.5,) * 3, (0.25,) * 3, layer="nope")


def test_budget_refuses_before_allocating(monkeypatch):
    monkeypatch.setenv("CNNVIZ_SERVER_BUDGET_MB", "0.01")
    model = models.create("lenet5").eval()
    with pytest.raises(BudgetError) as err:
        P.extract(model, torch.zeros(1000, 3, 32, 32, dtype=torch.uint8), (0.5,) * 3, (0.25,) * 3)
    assert "\n" not in str(err.value) and "CNNVIZ_SERVER_BUDGET_MB" in str(err.value)


def _blobs(n=240, d=20, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1, 2], n // 3)
    centres = rng.standard_normal((3, d)) * 6
    return (centres[labels] + rng.standard_normal((n, d))).astype(np.float32), labels


@pytest.mark.parametrize("method,dim", [("t-SNE", 2), ("t-SNE", 3), ("UMAP", 2)])
def test_tsne_and_umap_separate_blobs_with_progress(method, dim):
    x, labels = _blobs()
    seen = []
    proj = P.reduce(x, method, dim, progress=lambda a, m: seen.append((a, m)))
    assert proj.coords.shape == (240, dim) and np.isfinite(proj.coords).all()
    assert P.silhouette(proj.coords, labels) > 0.5
    fractions = [a for a, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) >= 4, seen


def test_epochs_share_the_last_epochs_axes():
    x, _ = _blobs()
    rng = np.random.default_rng(1)
    early = (x + rng.standard_normal(x.shape) * 5).astype(np.float32)
    coords, basis = P.epochs_in_last_basis({1: early, 3: x}, 2)
    assert list(coords) == [1, 3]
    assert np.allclose(coords[3], P.fit_pca(x, 2).project(x), atol=1e-4)
    assert np.allclose(coords[1], basis.project(early))


def test_hover_and_selection_map_back_to_image_indices():
    n = 50
    rng = np.random.default_rng(3)
    coords = rng.standard_normal((n, 2))
    indices = np.arange(1000, 1000 + n) * 7           # dataset positions, not 0..n-1
    labels = rng.integers(0, 3, n)
    preds = np.where(rng.random(n) < 0.8, labels, (labels + 1) % 3)
    conf = rng.random(n)
    classes = ["cat", "dog", "frog"]
    for colour in P.COLOUR_BY:
        fig = P.scatter(coords, indices, labels, preds, conf, classes, colour)
        seen = []
        for trace in fig.data:
            for k, (cd, text) in enumerate(zip(trace.customdata, trace.hovertext)):
                pos = int(np.nonzero(indices == int(cd[0]))[0][0])
                assert int(cd[1]) == pos                      # its tile in a sprite sheet of the same images
                assert text.startswith(f"#{indices[pos]}: {classes[labels[pos]]}")
                assert f"predicted {classes[preds[pos]]}" in text
                assert (trace.x[k], trace.y[k]) == (coords[pos, 0], coords[pos, 1])
                seen.append(int(cd[0]))
        assert sorted(seen) == sorted(indices.tolist())
    # a selection event as st.plotly_chart returns it: points with their trace's customdata
    fig = P.scatter(coords, indices, labels, preds, conf, classes, "true class")
    points = [{"curve_number": c, "point_index": i, "customdata": list(fig.data[c].customdata[i])}
              for c in range(len(fig.data)) for i in range(0, len(fig.data[c].x), 3)]
    event = {"selection": {"points": points, "box": [], "lasso": []}}
    got = P.selected_indices(event)
    assert got == [int(fig.data[p["curve_number"]].customdata[p["point_index"]][0]) for p in points]
    assert set(got) <= set(indices.tolist())
    # Streamlit sends each point's customdata row as {"0": value}
    as_sent = {"selection": {"points": [{"curve_number": 0, "point_index": 0, "customdata": {"0": 7021}},
                                        {"curve_number": 1, "point_index": 2, "customdata": {"0": 7000}}]}}
    assert P.selected_indices(as_sent) == [7021, 7000]
    assert P.selected_indices(None) == [] and P.selected_indices({"selection": {"points": []}}) == []
    fig3 = P.scatter(rng.standard_normal((n, 3)), indices, labels, preds, conf, classes, "right / wrong")
    assert {t.name.split(" (")[0] for t in fig3.data} <= {"right", "wrong"} and fig3.data[0].type == "scatter3d"


def test_jobs_report_results_and_errors():
    def ok(progress, cancelled):
        progress(0.5, "half")
        return 42

    def bad(progress, cancelled):
        raise ValueError("no such dataset\nsecond line")

    a, b = P.Job(ok, "ok"), P.Job(bad, "bad")
    c = P.Job(ok, "after", after=b)
    P.wait_jobs(60)
    assert a.done and a.wait() == 42 and a.fraction == 1.0
    assert b.error == "no such dataset"
    with pytest.raises(ValueError, match="no such dataset"):
        b.wait(1)
    assert c.wait(1) == 42
