"""summarize(): shapes, parameters and FLOPs against hand counts and torch's own numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnviz.models import create
from cnnviz.inspect.summary import profile_figure, spatial_profile, summarize


def conv_flops(k, cin, cout, hout, wout):
    return 2 * k * k * cin * cout * hout * wout


def test_lenet5_rows_params_flops_by_hand():
    m = create("lenet5")
    s = summarize(m, (3, 32, 32))
    rows = {r.name: r for r in s.rows}
    assert [r.name for r in s.rows] == ["conv_unit.0", "conv_unit.1", "conv_unit.2", "conv_unit.3",
                                        "fc_unit.0", "fc_unit.1", "fc_unit.2"]
    assert rows["conv_unit.0"].output_shape == (1, 16, 28, 28)
    assert rows["conv_unit.3"].output_shape == (1, 32, 5, 5)
    assert rows["conv_unit.0"].flops == conv_flops(5, 3, 16, 28, 28) == 1_881_600
    assert rows["conv_unit.2"].flops == conv_flops(5, 16, 32, 10, 10) == 2_560_000
    assert rows["fc_unit.0"].flops == 2 * 800 * 32
    assert rows["fc_unit.2"].flops == 2 * 32 * 10
    assert rows["conv_unit.1"].flops == 0 and rows["fc_unit.1"].params == 0
    assert s.total_flops == 1_881_600 + 2_560_000 + 51_200 + 640
    assert s.total_macs == s.total_flops // 2
    assert s.total_params == 40_010 == sum(r.params for r in s.rows) == sum(p.numel() for p in m.parameters())
    assert s.output_shape == (1, 10) and s.input_shape == (1, 3, 32, 32)
    assert m.training  # mode restored
    assert all(not mod._forward_hooks for mod in m.modules())


def test_resnet18_totals_and_shared_relu():
    m = create("resnet18", num_classes=1000)
    s = summarize(m, (3, 224, 224))
    assert s.total_params == 11_689_512 == sum(r.params for r in s.rows)
    # torchvision's published 1.81 GMACs
    assert s.total_macs == pytest.approx(1.81e9, rel=0.01)
    again = [r for r in s.rows if r.name.endswith("(again)")]
    assert again and all(r.type == "ReLU" for r in again)
    assert sum(r.flops for r in s.rows) == s.total_flops


def test_hooks_removed_when_forward_fails():
    m = create("lenet5")
    with pytest.raises(RuntimeError):
        summarize(m, (3, 20, 20))  # 800 features no longer match
    assert all(not mod._forward_hooks for mod in m.modules())
    assert m.training


def test_module_with_direct_parameter():
    class WithScale(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return self.conv(x) * self.scale

    s = summarize(WithScale(), (1, 8, 8))
    assert s.total_params == 1 + 2 * 9 + 2 == sum(r.params for r in s.rows)


def test_bad_shape():
    with pytest.raises(ValueError):
        summarize(create("lenet5"), (3, 0, 32))


def test_profile_and_figure():
    s = summarize(create("lenet5"), (3, 32, 32))
    prof = spatial_profile(s)
    # input, then 32-5+1 = 28, pool /2 = 14, 14-5+1 = 10, pool /2 = 5
    assert [p["height"] for p in prof] == [32, 28, 14, 10, 5]
    assert [p["channels"] for p in prof] == [3, 16, 16, 32, 32]
    assert prof[0]["name"] == "input"
    fig = profile_figure(s)
    assert list(fig.data[0].y) == [32, 28, 14, 10, 5] and list(fig.data[1].y) == [3, 16, 16, 32, 32]
