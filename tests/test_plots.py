"""cnnviz.plots: the EMA against its recurrence written out, and figures carry the expected traces."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnviz import plots


def test_ema_matches_debiased_recurrence():
    vals = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    a = 0.8
    # closed form: weighted average with weights a**(t-i), normalised to sum 1
    for t in range(len(vals)):
        w = [a ** (t - i) for i in range(t + 1)]
        want = sum(wi * v for wi, v in zip(w, vals[: t + 1])) / sum(w)
        assert plots.ema(vals, a)[t] == pytest.approx(want)
    assert plots.ema(vals, 0.0) == pytest.approx(vals)
    assert plots.ema([7.0], 0.99) == pytest.approx([7.0])  # bias correction: first point unchanged


def test_ema_skips_non_finite_and_rejects_bad_smoothing():
    out = plots.ema([1.0, float("nan"), 1.0], 0.5)
    assert out[0] == 1.0 and math.isnan(out[1]) and out[2] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        plots.ema([1.0], 1.0)


def _steps(n):
    return [{"step": i + 1, "loss": 2.3 * 0.99 ** i, "lr": 1e-3, "images_per_s": 1000.0 + i} for i in range(n)]


def test_loss_figure_raw_and_smoothed():
    steps = _steps(50)
    fig = plots.loss_figure(steps, smoothing=0.9)
    names = [t.name for t in fig.data]
    assert names[0] == "loss" and names[1].startswith("smoothed")
    assert list(fig.data[0].y) == pytest.approx([s["loss"] for s in steps])
    assert list(fig.data[1].y) == pytest.approx(plots.ema([s["loss"] for s in steps], 0.9))
    assert list(fig.data[0].x) == list(range(1, 51))


def test_loss_figure_thins_long_runs_keeping_the_ends():
    fig = plots.loss_figure(_steps(plots.MAX_POINTS * 3))
    xs = list(fig.data[0].x)
    assert len(xs) == plots.MAX_POINTS and xs[0] == 1 and xs[-1] == plots.MAX_POINTS * 3


def test_accuracy_lr_and_compare_figures():
    epochs = [{"epoch": 1, "train_acc": 0.3, "test_acc": 0.35, "train_loss": 1.9},
              {"epoch": 2, "train_acc": 0.5, "test_acc": 0.45, "train_loss": 1.4}]
    fig = plots.accuracy_figure(epochs)
    assert [t.name for t in fig.data] == ["train", "test"]
    assert list(fig.data[1].y) == pytest.approx([35.0, 45.0])
    lr = plots.lr_figure(_steps(5), smoothing=0.5)
    assert [t.name for t in lr.data] == ["lr", "images/s"] and lr.data[1].yaxis == "y2"
    assert list(lr.data[1].y) == pytest.approx(plots.ema([1000.0 + i for i in range(5)], 0.5))
    assert lr.layout.yaxis.range[0] == 0 and lr.layout.yaxis.range[1] == pytest.approx(1.1e-3)
    cmp = plots.compare_figure({"a": epochs, "b": epochs[:1]}, "train_loss")
    assert [t.name for t in cmp.data] == ["a", "b"] and list(cmp.data[0].y) == pytest.approx([1.9, 1.4])
    assert len(plots.compare_loss_figure({"a": _steps(4), "b": _steps(6)}).data) == 2
    with pytest.raises(ValueError):
        plots.compare_figure({"a": epochs}, "nope")


def test_confusion_figure_counts_percent_and_click_layer():
    cm = np.array([[5, 1, 0], [2, 2, 0], [0, 0, 0]])
    fig = plots.confusion_figure(cm, ["a", "b", "c"])
    heat, cells = fig.data[0], fig.data[1]
    assert heat.type == "heatmap" and np.array(heat.z).tolist() == cm.tolist()
    assert cells.type == "scatter" and len(cells.x) == 9
    # every clickable cell marker sits on the cell its customdata names
    for x, y, (t, p) in zip(cells.x, cells.y, cells.customdata):
        assert (y, x) == (["a", "b", "c"][t], ["a", "b", "c"][p])
    pct = plots.confusion_figure(cm, ["a", "b", "c"], normalize=True, highlight=(1, 0))
    z = np.array(pct.data[0].z)
    assert z[0].tolist() == pytest.approx([500 / 6, 100 / 6, 0]) and z[2].tolist() == [0, 0, 0]
    assert len(pct.layout.shapes) == 1
    with pytest.raises(ValueError):
        plots.confusion_figure(cm, ["a", "b"])


def test_per_class_figure_marks_missing_classes():
    fig = plots.per_class_figure([0.5, float("nan")], ["x", "y"])
    assert list(fig.data[0].x) == [50.0, 0.0] and list(fig.data[0].text) == ["50.0%", "no images"]


def test_every_figure_is_a_valid_plotly_spec():
    """The live charts skip plotly's validation when built; validate their specs in full here."""
    import plotly.graph_objects as go

    steps = _steps(30)
    epochs = [{"epoch": 1, "train_acc": 0.3, "test_acc": 0.35, "train_loss": 1.9}]
    figs = [plots.loss_figure(steps), plots.accuracy_figure(epochs), plots.lr_figure(steps),
            plots.compare_figure({"a": epochs}), plots.compare_loss_figure({"a": steps}),
            plots.confusion_figure(np.eye(3, dtype=int), ["a", "b", "c"]), plots.per_class_figure([0.5], ["x"])]
    for fig in figs:
        go.Figure(fig.to_dict())  # raises ValueError on any invalid property
