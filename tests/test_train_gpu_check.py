"""bench/gpu_check.py's CPU-sized equivalent: the same plan and code path, tiny data, no GPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_plan_is_valid_and_uses_bf16_channels_last_on_cuda():
    gc = _load()
    plan = gc.plan("folder:/x", "cuda", quick=False)
    assert [cfg.model for _, cfg in plan] == ["lenet5", "resnet_small", "resnet18_cifar", "airbench"]
    for _, cfg in plan:
        assert cfg.channels_last and cfg.precision in ("auto", "bf16") and cfg.device == "cuda"
    speed = plan[-1][1]
    assert speed.optimizer == "sgd" and speed.nesterov and speed.schedule == "onecycle"
    assert speed.label_smoothing > 0 and speed.augment == "cifar-standard"


@pytest.mark.slow
def test_quick_cpu_run_of_the_whole_check(tmp_path):
    pytest.importorskip("cnnviz.augment.batch")
    gc = _load()
    out = tmp_path / "r.json"
    res = gc.main(["--dataset", "shapes", "--device", "cpu", "--quick", "--out", str(out),
                   "--runs-dir", str(tmp_path / "runs")])
    assert [r["status"] for r in res["runs"]] == ["finished"] * 4
    for r in res["runs"]:
        assert r["epochs"][0]["images_per_s"] > 0 and 0 <= r["epochs"][0]["test_acc"] <= 1
    assert json.loads(out.read_text())["runs"][3]["config"]["model"] == "airbench"


def test_speedrun_preset_validates():
    from cnnviz.train import preset_config

    pytest.importorskip("cnnviz.augment")
    preset_config("speedrun").validate()
    preset_config("tutorial").validate()


@pytest.mark.slow
def test_live_path_check_runs_on_cpu(tmp_path, monkeypatch):
    """bench/gpu_live.py (part of gpu_check.sh): a queued run process watched through cnnviz.runs.snapshot, then stopped."""
    from tests.runtools import kill_runs_under

    spec = importlib.util.spec_from_file_location("gpu_live", ROOT / "bench" / "gpu_live.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setenv("CNNVIZ_MAX_RUNS", "1")
    monkeypatch.setenv("CNNVIZ_RUNS", str(tmp_path))  # restored after the test (main() sets it)
    monkeypatch.setattr(mod.tempfile, "mkdtemp", lambda prefix="": str(tmp_path))
    try:
        out = mod.main(["--device", "cpu", "--seconds", "3", "--model", "lenet5", "--out", str(tmp_path / "l.json")])
    finally:
        kill_runs_under(tmp_path)
    assert out["final_status"] == "stopped", out
    assert out["snapshots"] and all(s["device"].startswith("CPU") for s in out["snapshots"])
    assert any(s["memory"] for s in out["snapshots"]) and any(s["images_per_s"] for s in out["snapshots"])
