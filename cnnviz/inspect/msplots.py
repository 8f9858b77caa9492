"""Plotly figures of the Microscope page: weight histograms over epochs, per-layer series, the lesson."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import plotly.graph_objects as go

from .microscope import Histograms

_LAYOUT = {"height": 320, "margin": {"l": 10, "r": 10, "t": 36, "b": 10}, "template": "plotly_white",
           "legend": {"font": {"size": 10}}}


def histogram_heatmap(h: Histograms, layer: str) -> go.Figure:
    """Weight value (x) by epoch (y), colour = share of the layer's weights in each bin."""
    centres = [(a + b) / 2 for a, b in zip(h.edges[:-1], h.edges[1:])]
    fig = go.Figure(go.Heatmap(z=h.density, x=centres, y=[str(e) for e in h.epochs], colorscale="Viridis",
                               colorbar={"title": "share"},
                               hovertemplate="epoch %{y}<br>w = %{x:.3g}<br>share %{z:.3%}<extra></extra>"))
    fig.update_layout(title=f"Weights of {layer} per saved epoch", xaxis_title="weight value",
                      yaxis_title="epoch", yaxis_type="category", **_LAYOUT)
    return fig


def _positive(vals: Sequence[float | None]) -> list[float | None]:
    return [v if isinstance(v, (int, float)) and math.isfinite(v) and v > 0 else None for v in vals]


def layer_lines(epochs: Sequence[int], series: Mapping[str, Sequence[float | None]], title: str, ytitle: str,
                log: bool = True) -> go.Figure:
    """One line per layer over epochs (log y by default: these quantities span decades)."""
    fig = go.Figure()
    for name, vals in series.items():
        ys = _positive(vals) if log else list(vals)
        if any(v is not None for v in ys):
            fig.add_trace(go.Scatter(x=list(epochs), y=ys, mode="lines+markers", name=name, connectgaps=False))
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title=ytitle, yaxis_type="log" if log else "linear",
                      **_LAYOUT)
    return fig


def depth_bars(values: Mapping[str, Mapping[str, float]], title: str, ytitle: str) -> go.Figure:
    """Grouped bars by layer depth (x = layer, in order), one group per entry of `values`, log y."""
    fig = go.Figure()
    for label, per_layer in values.items():
        names = list(per_layer)
        fig.add_trace(go.Bar(x=list(range(1, len(names) + 1)), y=_positive(list(per_layer.values())), name=label,
                             hovertext=names))
    fig.update_layout(title=title, xaxis_title="layer (input → output)", yaxis_title=ytitle, yaxis_type="log",
                      barmode="group", **_LAYOUT)
    return fig
