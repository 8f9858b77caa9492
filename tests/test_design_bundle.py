"""A run of a saved design leaves cnnviz as a bundle like a registry model's, even after the design file changed."""

from __future__ import annotations

import json

import torch

from cnnviz import models
from cnnviz.models import design
from cnnviz.train import TrainConfig, bundle, fit
from cnnviz import runs
from cnnviz.runs.model import load_model


def test_a_design_run_exports_a_checked_onnx_bundle(tmp_path, monkeypatch):
    designs = tmp_path / "designs"
    designs.mkdir()
    monkeypatch.setenv("CNNVIZ_DESIGNS", str(designs))
    spec = {**design.PRESETS["lenet5"], "name": "mine"}
    (designs / "mine.json").write_text(json.dumps(spec))
    run_dir = tmp_path / "run"
    cfg = TrainConfig(model="design:mine.json", dataset="shapes", epochs=1, limit_train=256, limit_test=64,
                      device="cpu")
    events = list(fit(cfg, run_dir=run_dir))
    assert events[-1].data.get("status") == "finished", events[-1].data
    # the design file changes afterwards: the bundle is still the model the run trained
    (designs / "mine.json").write_text(json.dumps({**spec, "layers": spec["layers"][:2]}))
    res = bundle.bundle_run(run_dir, tmp_path / "out")
    assert res.max_diff <= 1e-4 and res.top1_agree == res.n_checked
    assert {"model.onnx", "predict.py", "labels.json", "preprocess.json"} <= {p.name for p in (tmp_path / "out").iterdir()}
    model, meta = load_model(runs.read_run(run_dir))
    assert sum(p.numel() for p in model.parameters()) == 40_010
    x = torch.rand(1, 3, 32, 32)
    assert model(x).shape == (1, 10)
    assert models.from_design(spec).state_dict().keys() == model.state_dict().keys()
