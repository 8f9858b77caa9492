"""Layer-by-layer summary of a model from a real forward pass: output shapes, parameters, FLOPs.

FLOPs come from `torch.utils.flop_counter.FlopCounterMode`, which counts a multiply-add as
2 FLOPs (a k x k conv producing one value from C inputs costs 2*k*k*C); MACs = FLOPs / 2.
It counts matrix products and convolutions (the bulk of the work), not element-wise ops
such as ReLU, BatchNorm or the residual add.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class LayerRow:
    """One call of a leaf module (or of a module owning parameters directly)."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int        # counted on the module's first call only, so the column sums to the total
    flops: int         # FlopCounterMode FLOPs (1 multiply-add = 2 FLOPs)
    depth: int

    @property
    def macs(self) -> int:
        return self.flops // 2


@dataclass
class Summary:
    """Rows in forward order plus totals."""

    rows: list[LayerRow]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    total_params: int
    trainable_params: int
    total_flops: int

    @property
    def total_macs(self) -> int:
        return self.total_flops // 2

    @property
    def param_bytes(self) -> int:
        return self.total_params * 4

    def records(self) -> list[dict]:
        """Rows as plain dicts (for a table), with MACs and the shape as text."""
        out = []
        for r in self.rows:
            d = asdict(r)
            d["output_shape"] = " x ".join(str(s) for s in r.output_shape[1:]) or "-"
            d["macs"] = r.macs
            out.append(d)
        return out


def _shape(out: object) -> tuple[int, ...]:
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return tuple(out[0].shape)
    return ()


def summarize(model: nn.Module, input_shape: tuple[int, ...], device: torch.device | str | None = None) -> Summary:
    """Run `model` once on a random input of `input_shape` ((C,H,W) or (N,C,H,W)) and tabulate every layer.

    Hooks are registered inside a context manager and removed even if the forward fails.
    The model runs in eval mode (restored afterwards) under `torch.no_grad()`.
    """
    shape = tuple(input_shape) if len(input_shape) == 4 else (1, *input_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"input_shape must be (C,H,W) or (N,C,H,W) with positive sizes, got {input_shape}")
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    names = {id(m): n for n, m in model.named_modules()}
    root = type(model).__name__
    leaves = [(n, m) for n, m in model.named_modules()
              if (n and not any(True for _ in m.children())) or any(True for _ in m.parameters(recurse=False))]
    calls: list[tuple[str, nn.Module, tuple[int, ...]]] = []

    def hook(mod, _inp, out):
        calls.append((names[id(mod)], mod, _shape(out)))

    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    was = model.training
    counter = FlopCounterMode(display=False, depth=None)
    with contextlib.ExitStack() as stack:
        handles = [m.register_forward_hook(hook) for _, m in leaves]
        stack.callback(lambda: [h.remove() for h in handles])
        stack.callback(model.train, was)
        model.eval()
        with torch.no_grad(), counter:
            out = model(x)
    flops = counter.get_flop_counts()
    rows: list[LayerRow] = []
    seen: set[str] = set()
    for name, mod, out_shape in calls:
        first = name not in seen
        seen.add(name)
        own = sum(p.numel() for p in mod.parameters(recurse=not any(True for _ in mod.children())))
        f = sum(flops.get(f"{root}.{name}", {}).values()) if first else 0
        label = name or f"({root} itself)"
        f = f if name else 0  # the root's count is the whole model's
        rows.append(LayerRow(label if first else f"{label} (again)", type(mod).__name__, out_shape,
                             own if first else 0, int(f), name.count(".") + 1 if name else 0))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Summary(rows, shape, _shape(out), total, trainable, int(sum(flops.get("Global", {}).values())))


def spatial_profile(summary: Summary) -> list[dict]:
    """The input, then each row with a spatial (N,C,H,W) output: index, name, channels, height, width."""
    out = []
    if len(summary.input_shape) == 4:
        _, c, h, w = summary.input_shape
        out.append({"index": -1, "name": "input", "channels": c, "height": h, "width": w})
    out += [{"index": i, "name": r.name, "channels": r.output_shape[1], "height": r.output_shape[2],
             "width": r.output_shape[3]}
            for i, r in enumerate(summary.rows) if len(r.output_shape) == 4]
    return out


def profile_figure(summary: Summary, title: str = ""):
    """Plotly figure, two panels over depth: spatial size (top) shrinking, channel count (bottom) growing."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    prof = spatial_profile(summary)
    xs = list(range(len(prof)))
    names = [p["name"] for p in prof]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=("spatial size: height (px)", "channels"))
    fig.add_trace(go.Scatter(x=xs, y=[p["height"] for p in prof], name="height", mode="lines+markers",
                             line={"shape": "hv", "color": "#21918c"}, marker={"size": 5}, text=names,
                             customdata=[p["width"] for p in prof],
                             hovertemplate="%{text}<br>H x W = %{y} x %{customdata}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=xs, y=[p["channels"] for p in prof], name="channels", mode="lines+markers",
                             line={"shape": "hv", "color": "#d6604d"}, marker={"size": 5}, text=names,
                             hovertemplate="%{text}<br>C = %{y}<extra></extra>"), row=2, col=1)
    few = len(prof) <= 14
    fig.update_xaxes(tickmode="array" if few else "auto", tickvals=xs if few else None,
                     ticktext=names if few else None, tickangle=-45 if few else 0, row=2, col=1)
    fig.update_xaxes(title_text="" if few else "layer (forward order, spatial outputs only; 0 = input)",
                     row=2, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=2, col=1)
    fig.update_layout(title=title or None, height=380, showlegend=False,
                      margin={"l": 10, "r": 10, "t": 50 if title else 30, "b": 10})
    fig.update_annotations(font_size=13)
    return fig
