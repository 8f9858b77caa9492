"""Plotly figure builders for training curves, run comparisons and confusion matrices.

Pure functions from lists of metric dicts (as in a job snapshot or a run's metrics.jsonl)
to `plotly.graph_objects.Figure`s. No streamlit, no torch: the Training page calls these
every poll, so they stay cheap (long step lists are thinned before plotting).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

# One palette for every run-coloured chart (plotly's default qualitative colours).
PALETTE = ["#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880",
           "#FF97FF", "#FECB52"]
MAX_POINTS = 2000  # raw step points drawn per trace; more are thinned evenly
_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), height=320, legend=dict(orientation="h", y=-0.25),
               hovermode="x unified")


def ema(values: Sequence[float], smoothing: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction (as TensorBoard's smoothing).

    s_t = smoothing * s_{t-1} + (1 - smoothing) * v_t, divided by (1 - smoothing**t) so the
    first points are not pulled towards zero. Non-finite values are carried through unchanged
    and do not poison later points. smoothing=0 returns the values.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    out: list[float] = []
    acc, n = 0.0, 0
    for v in values:
        v = float(v)
        if not math.isfinite(v):
            out.append(v)
            continue
        n += 1
        acc = smoothing * acc + (1.0 - smoothing) * v
        out.append(acc / (1.0 - smoothing ** n))
    return out


def _thin(xs: list, *ys: list, max_points: int = MAX_POINTS) -> tuple[list, ...]:
    """Keep at most `max_points` evenly spaced points (always the last one)."""
    n = len(xs)
    if n <= max_points:
        return (xs, *ys)
    idx = np.linspace(0, n - 1, max_points).round().astype(int)
    return ([xs[i] for i in idx], *[[y[i] for i in idx] for y in ys])


def _steps_xy(steps: Sequence[Mapping], key: str) -> tuple[list, list]:
    xs, ys = [], []
    for i, s in enumerate(steps):
        if key in s and s[key] is not None:
            xs.append(s.get("step", i + 1))
            ys.append(float(s[key]))
    return xs, ys


def _figure(data: list[dict], layout: dict) -> go.Figure:
    """A Figure from plain trace/layout dicts without plotly's per-property validation.

    The Training page rebuilds its three charts every second while a run trains; validation is
    ~90% of the cost of building them (~30 ms a chart), and it competes with the training thread
    for the GIL. The specs here are fixed and covered by tests that validate them in full."""
    spec = {"data": data, "layout": layout}
    try:
        return go.Figure(spec, _validate=False)
    except TypeError:  # a plotly without the private switch: validate
        return go.Figure(spec)


def loss_figure(steps: Sequence[Mapping], smoothing: float = 0.9, title: str = "Training loss per step"
                ) -> go.Figure:
    """Loss per step: the raw values (faint) and their EMA (solid). Traces 'loss' and 'smoothed'."""
    xs, ys = _steps_xy(steps, "loss")
    sm = ema(ys, smoothing)
    xs_t, ys_t, sm_t = _thin(xs, ys, sm)
    return _figure(
        [dict(type="scatter", x=xs_t, y=ys_t, name="loss", mode="lines",
              line=dict(color=PALETTE[0], width=1), opacity=0.35),
         dict(type="scatter", x=xs_t, y=sm_t, name=f"smoothed (EMA {smoothing:g})", mode="lines",
              line=dict(color=PALETTE[0], width=2.5))],
        dict(title=dict(text=title), xaxis=dict(title=dict(text="step")),
             yaxis=dict(title=dict(text="cross-entropy loss")), **_LAYOUT))


def accuracy_figure(epochs: Sequence[Mapping], title: str = "Accuracy per epoch") -> go.Figure:
    """Train and test accuracy (in %) per epoch. Traces 'train' and 'test'."""
    data = []
    for key, name, color in (("train_acc", "train", PALETTE[0]), ("test_acc", "test", PALETTE[1])):
        xs = [e.get("epoch", i + 1) for i, e in enumerate(epochs) if e.get(key) is not None]
        ys = [100.0 * float(e[key]) for e in epochs if e.get(key) is not None]
        data.append(dict(type="scatter", x=xs, y=ys, name=name, mode="lines+markers", line=dict(color=color)))
    xaxis = dict(title=dict(text="epoch"))
    if len(epochs) <= 20:
        xaxis["dtick"] = 1
    return _figure(data, dict(title=dict(text=title), xaxis=xaxis,
                              yaxis=dict(title=dict(text="accuracy (%)"), range=[0, 100]), **_LAYOUT))


def lr_figure(steps: Sequence[Mapping], title: str = "Learning rate and throughput", smoothing: float = 0.9
              ) -> go.Figure:
    """Learning rate per step (left axis, from 0) and images/s smoothed with `ema` (right axis).
    Traces 'lr' and 'images/s'."""
    xs, lr = _steps_xy(steps, "lr")
    xs_t, lr_t = _thin(xs, lr)
    xi, ips = _steps_xy(steps, "images_per_s")
    xi_t, ips_t = _thin(xi, ema(ips, smoothing))
    top = max(lr, default=0.0)
    return _figure(
        [dict(type="scatter", x=xs_t, y=lr_t, name="lr", mode="lines", line=dict(color=PALETTE[2])),
         dict(type="scatter", x=xi_t, y=ips_t, name="images/s", mode="lines", yaxis="y2",
              line=dict(color=PALETTE[4], width=1), opacity=0.6)],
        dict(title=dict(text=title), xaxis=dict(title=dict(text="step")),
             yaxis=dict(title=dict(text="learning rate"), exponentformat="e",
                        range=[0, 1.1 * top if top > 0 else 1]),
             yaxis2=dict(title=dict(text="images/s"), overlaying="y", side="right", showgrid=False), **_LAYOUT))


METRIC_LABELS = {
    "test_acc": "test accuracy (%)", "train_acc": "train accuracy (%)",
    "train_loss": "train loss", "test_loss": "test loss", "images_per_s": "images/s",
}


def compare_figure(runs: Mapping[str, Sequence[Mapping]], metric: str = "test_acc") -> go.Figure:
    """One line per run of an epoch metric (`runs`: label -> epoch dicts). Accuracies in %."""
    if metric not in METRIC_LABELS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRIC_LABELS)}")
    scale = 100.0 if metric.endswith("_acc") else 1.0
    fig = go.Figure()
    for i, (label, epochs) in enumerate(runs.items()):
        pts = [(e.get("epoch", j + 1), scale * float(e[metric])) for j, e in enumerate(epochs)
               if e.get(metric) is not None]
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], name=label,
                                 mode="lines+markers", line=dict(color=PALETTE[i % len(PALETTE)])))
    fig.update_layout(title=f"{METRIC_LABELS[metric]} per epoch", xaxis_title="epoch",
                      yaxis_title=METRIC_LABELS[metric], **_LAYOUT)
    return fig


def compare_loss_figure(runs: Mapping[str, Sequence[Mapping]], smoothing: float = 0.9) -> go.Figure:
    """Smoothed loss per step, one line per run (`runs`: label -> step dicts)."""
    fig = go.Figure()
    for i, (label, steps) in enumerate(runs.items()):
        xs, ys = _steps_xy(steps, "loss")
        xs_t, sm_t = _thin(xs, ema(ys, smoothing))
        fig.add_trace(go.Scatter(x=xs_t, y=sm_t, name=label, mode="lines",
                                 line=dict(color=PALETTE[i % len(PALETTE)])))
    fig.update_layout(title=f"Training loss per step (EMA {smoothing:g})", xaxis_title="step",
                      yaxis_title="cross-entropy loss", **_LAYOUT)
    return fig


def sweep_figure(rows: Sequence[Mapping], params: Sequence[str], metric: str = "test_acc") -> go.Figure:
    """Parallel coordinates of a sweep: one line per finished run, an axis per swept setting and the
    final `metric` last (accuracies in %); text settings get categorical axes. The best run is drawn
    in the top colour of the scale and named in the title."""
    done = [r for r in rows if r.get(metric) is not None]
    scale = 100.0 if metric.endswith("_acc") else 1.0
    dims = []
    for name in params:
        vals = [r.get(name) for r in done]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals) and vals:
            log = min(vals) > 0 and max(vals) / min(vals) >= 20  # learning rates: a log axis reads better
            shown = [math.log10(v) for v in vals] if log else list(vals)
            uniq = sorted(set(shown))
            dims.append(dict(label=f"log10 {name}" if log else name, values=shown, tickvals=uniq,
                             ticktext=[f"{v:g}" for v in sorted(set(vals))]))
        else:
            cats = sorted({str(v) for v in vals})
            dims.append(dict(label=name, values=[cats.index(str(v)) for v in vals],
                             tickvals=list(range(len(cats))), ticktext=cats))
    ys = [scale * float(r[metric]) for r in done]
    dims.append(dict(label=METRIC_LABELS.get(metric, metric), values=ys))
    best = max(range(len(done)), key=lambda i: ys[i]) if done else None
    fig = go.Figure(go.Parcoords(dimensions=dims, line=dict(color=ys, colorscale="Viridis", showscale=False)))
    title = "Settings against the final score"
    if best is not None:
        title += f": best {ys[best]:.2f} ({done[best].get('run_id', '')})"
    fig.update_layout(title=title, height=380, margin=dict(l=70, r=70, t=90, b=30))
    return fig


def confusion_figure(cm: np.ndarray, classes: Sequence[str], normalize: bool = False,
                     highlight: tuple[int, int] | None = None) -> go.Figure:
    """Confusion matrix heatmap: rows = true class, columns = predicted class.

    Cells show counts (or row-normalised % with `normalize`). Trace 0 is the heatmap; trace 1 is an
    invisible marker at every cell centre that carries the hover text and makes a click select a cell
    (plotly selection events do not fire on heatmaps); its customdata is [true, pred]. `highlight`
    outlines one cell.
    """
    cm = np.asarray(cm)
    k = cm.shape[0]
    if cm.shape != (k, k) or len(classes) != k:
        raise ValueError(f"confusion matrix of shape {cm.shape} does not fit {len(classes)} classes")
    labels = [str(c) for c in classes]
    counts = cm.astype(np.int64)
    if normalize:
        rows = counts.sum(axis=1, keepdims=True)
        z = np.where(rows > 0, 100.0 * counts / np.maximum(rows, 1), 0.0)
        text = [[f"{z[i, j]:.0f}" for j in range(k)] for i in range(k)]
        ztitle = "% of true class"
    else:
        z = counts.astype(float)
        text = [[str(counts[i, j]) for j in range(k)] for i in range(k)]
        ztitle = "images"
    fig = go.Figure()
    fig.add_trace(go.Heatmap(
        z=z, x=labels, y=labels, text=text, texttemplate="%{text}" if k <= 20 else None,
        colorscale="Viridis", colorbar=dict(title=ztitle),
        hoverinfo="skip",
    ))
    ii, jj = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    fig.add_trace(go.Scatter(
        x=[labels[j] for j in jj.ravel()], y=[labels[i] for i in ii.ravel()], mode="markers",
        marker=dict(size=max(8, 300 // k), opacity=0.0, symbol="square"),
        customdata=np.stack([ii.ravel(), jj.ravel()], axis=1).tolist(), text=[str(v) for v in counts.ravel()],
        hovertemplate="true %{y}<br>predicted %{x}<br>%{text} images<extra></extra>",
        showlegend=False, name="cells",
    ))
    if highlight is not None:
        t, p = highlight
        fig.add_shape(type="rect", x0=p - 0.5, x1=p + 0.5, y0=t - 0.5, y1=t + 0.5,
                      line=dict(color="#FF4B4B", width=3))
    fig.update_layout(title="Confusion matrix (rows: true class, columns: predicted)",
                      xaxis=dict(title="predicted", side="bottom", type="category"),
                      yaxis=dict(title="true", autorange="reversed", type="category"),
                      margin=dict(l=10, r=10, t=40, b=10), height=max(360, 36 * k + 120),
                      clickmode="event+select", dragmode=False)
    return fig


def per_class_figure(acc: Sequence[float], classes: Sequence[str]) -> go.Figure:
    """Per-class accuracy as horizontal bars (in %); NaN (no test images) is drawn as 0 and marked."""
    vals = [float(a) for a in acc]
    shown = [0.0 if not math.isfinite(v) else 100.0 * v for v in vals]
    text = ["no images" if not math.isfinite(v) else f"{100.0 * v:.1f}%" for v in vals]
    fig = go.Figure(go.Bar(x=shown, y=[str(c) for c in classes], orientation="h", text=text,
                           textposition="auto", marker_color=PALETTE[0], name="accuracy"))
    fig.update_layout(title="Accuracy per true class", xaxis=dict(title="accuracy (%)", range=[0, 100]),
                      yaxis=dict(autorange="reversed", type="category"),
                      margin=dict(l=10, r=10, t=40, b=10), height=max(300, 26 * len(vals) + 100))
    return fig


def labels_for(run_ids: Iterable[str], configs: Mapping[str, Mapping]) -> dict[str, str]:
    """Short legend labels 'run-id (model, dataset)' for overlaid charts."""
    out = {}
    for rid in run_ids:
        c = configs.get(rid, {})
        out[rid] = f"{rid} ({c.get('model', '?')}, {c.get('dataset', '?')})"
    return out
