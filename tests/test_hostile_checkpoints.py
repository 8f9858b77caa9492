"""Hostile checkpoints: metadata and tensor shapes that would size a model of tens of GB.

Each file is opened as the Feature maps page opens an upload (`loading.from_checkpoint` on the
bytes) in a child process whose real memory is measured (tests/hostile.py): the refusal is one
line and the resident set rose by less than the budget. Before the bounds, the first file made
the page build a 12.8 GB Linear layer (32 x 100,000,000 float32 weights).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save

from cnnviz import models
from cnnviz.models.checkpoints import save_checkpoint

from .hostile import measure, refused, under_budget

BUDGET_MB = 256


def _st(meta: dict, tensors: dict[str, torch.Tensor] | None = None) -> bytes:
    return save(tensors or {"w": torch.zeros(1)}, metadata={"format": "cnnviz-1", "meta": json.dumps(meta)})


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile-ckpt")
    files = {
        "classes": _st({"model": "lenet5", "num_classes": 100_000_000, "in_channels": 3}),
        "channels": _st({"model": "lenet5", "num_classes": 10, "in_channels": 1_000_000}),
        "zero_size": save({"fc_unit.2.weight": torch.zeros(100_000_000, 0)}),  # no metadata: shapes decide
        "input_size": _st({"model": "lenet5", "num_classes": 10, "in_channels": 3, "input_size": 60_000}),
        "over_budget": _st({"model": "resnet50", "num_classes": 100_000, "in_channels": 3}),  # in bounds, too big
    }
    for name, blob in files.items():
        (d / f"{name}.safetensors").write_bytes(blob)
    good = models.create("lenet5")
    save_checkpoint(good, d / "good.safetensors", {"model": "lenet5", "num_classes": 10, "in_channels": 3,
                                                    "classes": [str(i) for i in range(10)], "input_size": 32})
    setup = "from pathlib import Path\nfrom cnnviz.inspect import loading\nD = Path(%r)\n" % str(d)
    attacks = {name: f"loading.from_checkpoint((D / '{name}.safetensors').read_bytes(), 'lenet5')"
               for name in [*files, "good"]}
    attacks["good"] += ".model"
    attacks["good"] = "RESULT = sum(p.numel() for p in " + attacks["good"] + ".parameters())"
    return {"sizes": {k: len(v) for k, v in files.items()}, **measure(setup, attacks, BUDGET_MB)}


def test_num_classes_100_million_in_a_tiny_file(reports):
    assert reports["sizes"]["classes"] < 200  # a 188-byte file in the issue; this one the same idea
    msg = refused(reports["classes"], "BudgetError", "100,000,000 classes", "at most 100,000")
    assert msg.startswith("Refused: the checkpoint's metadata")
    under_budget(reports["classes"], BUDGET_MB)


def test_in_channels_from_metadata(reports):
    refused(reports["channels"], "BudgetError", "1,000,000 input channels", "at most 16")
    under_budget(reports["channels"], BUDGET_MB)


def test_zero_size_tensor_whose_shape_would_size_the_head(reports):
    refused(reports["zero_size"], "CheckpointError", "zero-size tensor", "'fc_unit.2.weight'", "(100000000, 0)")
    under_budget(reports["zero_size"], BUDGET_MB)


def test_input_size_60000_pixels(reports):
    refused(reports["input_size"], "BudgetError", "60,000 pixels of input size", "at most 1,024")
    under_budget(reports["input_size"], BUDGET_MB)


def test_sizes_in_bounds_but_a_model_over_the_budget_gives_estimate_and_budget(reports):
    msg = refused(reports["over_budget"], "BudgetError", "building resnet50 with 100,000 classes",
                  "budget of 256.0 MB per request", "CNNVIZ_SERVER_BUDGET_MB")
    est = float(msg.split("would need about ")[1].split(" MB")[0].replace(",", ""))
    assert 850 < est < 1000  # 2048 x 100,000 head + ResNet-50's 25.6 M, float32: ~880 MB
    under_budget(reports["over_budget"], BUDGET_MB)


def test_an_ordinary_checkpoint_still_loads(reports):
    assert reports["good"]["error"] is None, reports["good"]["error"]
    assert reports["good"]["result"] == 40_010
    under_budget(reports["good"], BUDGET_MB)
