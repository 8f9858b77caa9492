"""cnnviz.ops runs on whatever device its input lives on and gives the CPU's numbers there (CUDA or MPS; skipped
where there is no second device: comparing the CPU with itself would prove nothing)."""

from __future__ import annotations

import pytest
import torch

from cnnviz.ops import batchnorm, conv, kernels, pool, resample

def _second_devices() -> list:
    """Devices other than the CPU to compare it with; a skipped case says none is here."""
    if torch.cuda.is_available():
        return ["cuda"]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return ["mps"]
    return [pytest.param("cuda", marks=pytest.mark.skip(reason="no second device (CUDA or MPS) to compare "
                                                               "the CPU with"))]


@pytest.mark.parametrize("device", _second_devices())
def test_every_op_on_device_matches_cpu(device):
    x_cpu = torch.rand(3, 12, 10, generator=torch.Generator().manual_seed(0))
    x = x_cpu.to(device)
    k = kernels.make("sobel y", 3)
    for mode in conv.PADDING_MODES:
        res = conv.convolve(x, k, padding=1, padding_mode=mode, stride=2)
        assert res.output.device.type == device
        torch.testing.assert_close(res.output.cpu(), conv.convolve(x_cpu, k, padding=1, padding_mode=mode,
                                                                   stride=2).output, atol=1e-5, rtol=1e-5)
        rf = conv.receptive_field(res, 1, 1, 2)
        assert rf.total == pytest.approx(rf.output, abs=1e-5)
    up = resample.upsample(x, "bicubic", scale=2, align_corners=True)
    assert up.output.device.type == device
    tr = resample.transposed_upsample(x, 2)
    torch.testing.assert_close(tr.output.cpu(), resample.transposed_upsample(x_cpu, 2).output, atol=1e-5, rtol=1e-5)
    p = pool.pool(x, "max", kernel=3, stride=2, padding=1)
    assert int(pool.winner_counts(p.indices, (12, 10)).sum()) == 3 * p.output.shape[1] * p.output.shape[2]
    p_cpu = pool.pool(x_cpu, "max", kernel=3, stride=2, padding=1)
    torch.testing.assert_close(p.output.cpu(), p_cpu.output)
    assert pool.round_trip(x, p, "max unpool").mse == pytest.approx(pool.round_trip(x_cpu, p_cpu, "max unpool").mse,
                                                                    rel=1e-5)
    torch.testing.assert_close(up.output.cpu(), resample.upsample(x_cpu, "bicubic", scale=2, align_corners=True).output,
                               atol=1e-5, rtol=1e-5)
    feats = torch.randn(4, 2, 5, 5, generator=torch.Generator().manual_seed(1)).to(device)
    res = batchnorm.train_then_eval(feats, batchnorm.BNSettings(gamma=[2.0, 1.0]), passes=3)
    wp = batchnorm.worked_pixel(feats, res, 1, 0, 2, 2, "eval")
    assert wp.y == pytest.approx(wp.y_torch, abs=1e-5)
    ref = batchnorm.train_then_eval(feats.cpu(), batchnorm.BNSettings(gamma=[2.0, 1.0]), passes=3)
    assert wp.y_torch == pytest.approx(batchnorm.worked_pixel(feats.cpu(), ref, 1, 0, 2, 2, "eval").y_torch, abs=1e-5)
