"""Plotly figures of a search sweep (cnnviz.runs.search): the optimisation history, each trial's test
accuracy per epoch with where the pruner stopped it, and the settings' importances.

Pure functions from `TrialInfo`-like objects (number, state, value, scores, pruned_at, params) to
figures; no streamlit, no optuna.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import plotly.graph_objects as go

from .plots import PALETTE

STATE_STYLE = {  # state -> (marker symbol, colour, legend name)
    "complete": ("circle", "#636EFA", "finished (final score)"),
    "pruned": ("x", "#EF553B", "pruned (last score)"),
    "fail": ("triangle-down", "#7F7F7F", "failed (no score)"),
}


def params_text(params: Mapping) -> str:
    """Settings as `lr=0.003, batch_size=64` (floats to 3 significant digits)."""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def best_so_far(trials: Sequence) -> list[tuple[int, float]]:
    """(trial number, best final score among the completed trials up to it), in trial order."""
    out, best = [], None
    for t in sorted(trials, key=lambda t: t.number):
        if t.state == "complete" and t.value is not None:
            best = t.value if best is None else max(best, t.value)
        if best is not None:
            out.append((t.number, best))
    return out


def history_figure(trials: Sequence) -> go.Figure:
    """Each ended trial's score (%) against its number, by outcome, and the best so far as a step line."""
    fig = go.Figure()
    for state, (symbol, colour, name) in STATE_STYLE.items():
        ts = [t for t in trials if t.state == state]
        if not ts:
            continue
        ys = [100 * (t.value if state == "complete" else (t.last_score if t.last_score is not None else 0.0))
              for t in ts]
        fig.add_trace(go.Scatter(
            x=[t.number for t in ts], y=ys, mode="markers", name=name,
            marker=dict(symbol=symbol, color=colour, size=10),
            text=[f"trial {t.number}: {params_text(t.params)}" + (f"; pruned after epoch {t.pruned_at}"
                                                                    if t.pruned_at else "") for t in ts],
            hovertemplate="%{text}<br>%{y:.2f}%<extra></extra>"))
    best = best_so_far(trials)
    if best:
        fig.add_trace(go.Scatter(x=[n for n, _ in best], y=[100 * v for _, v in best], mode="lines",
                                 line=dict(shape="hv", color="#00CC96", width=2), name="best so far",
                                 hovertemplate="best after trial %{x}: %{y:.2f}%<extra></extra>"))
    fig.update_layout(title="Optimisation history", xaxis_title="trial", yaxis_title="test accuracy (%)",
                      margin=dict(l=10, r=10, t=40, b=10), height=340, legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(dtick=1 if len(trials) <= 20 else None)
    return fig


def curves_figure(trials: Sequence) -> go.Figure:
    """Each trial's test accuracy (%) per epoch, as reported to the pruner; a pruned trial's line ends in an
    X at the epoch after which it was stopped."""
    fig = go.Figure()
    for i, t in enumerate(sorted(trials, key=lambda t: t.number)):
        if not t.scores:
            continue
        eps = sorted(t.scores)
        colour = PALETTE[i % len(PALETTE)]
        dash = "dot" if t.state == "pruned" else "solid"
        fig.add_trace(go.Scatter(x=eps, y=[100 * t.scores[e] for e in eps], mode="lines+markers",
                                 name=f"trial {t.number}", line=dict(color=colour, dash=dash),
                                 hovertemplate=f"trial {t.number}, epoch %{{x}}: %{{y:.2f}}%<extra></extra>"))
        if t.state == "pruned":
            e = t.pruned_at if t.pruned_at in t.scores else eps[-1]
            fig.add_trace(go.Scatter(x=[e], y=[100 * t.scores[e]], mode="markers", showlegend=False,
                                     marker=dict(symbol="x", size=14, color="#EF553B"),
                                     hovertemplate=f"trial {t.number} pruned after epoch {e}<extra></extra>"))
    fig.update_layout(title="Test accuracy per epoch (X: pruned there)", xaxis_title="epoch",
                      yaxis_title="test accuracy (%)", margin=dict(l=10, r=10, t=40, b=10), height=340,
                      legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(dtick=1)
    return fig


def importance_figure(importances: Mapping[str, float]) -> go.Figure:
    """Horizontal bars: each searched setting's share of the score's variance (fANOVA), largest on top."""
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h",
                           marker_color="#AB63FA", text=[f"{v:.2f}" for _, v in items], textposition="auto",
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(title="Setting importance (fANOVA)", xaxis_title="importance (sums to 1)",
                      margin=dict(l=10, r=10, t=40, b=10), height=80 + 40 * max(1, len(items)))
    fig.update_xaxes(range=[0, 1])
    return fig
