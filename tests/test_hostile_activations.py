"""Models whose activations are huge: feature maps refused, evaluation batches fitted to the budget.

The issue's designs: a 1x1 conv to 4,096 channels at 1,024 px passes the designer's parameter and
FLOP caps (57k parameters) but its feature map is 17 GB; a 3x3 conv to 4,096 channels at 32 px trains
at batch 16, and the Runs page evaluated it at batch 500 (8.4 GB per activation). Both run here in a
child process whose real memory is measured (tests/hostile.py): the first is refused before the
forward pass with the estimate and the budget, the second is evaluated in batches that fit.
"""

from __future__ import annotations

import pytest

from .hostile import measure, refused, under_budget

BUDGET_MB = 256

SETUP = '''
import torch
from cnnviz import models
from cnnviz.inspect import features, memory
from cnnviz.train import evaluate

def net(size, kernel):
    return models.from_design({"name": "wide", "input": [3, size, size], "layers": [
        {"type": "conv2d", "out_channels": 4096, "kernel_size": kernel, "padding": kernel // 2},
        {"type": "adaptiveavgpool2d", "output_size": 1}, {"type": "flatten"},
        {"type": "linear", "out_features": "classes"}]}, num_classes=10).eval()

import os
budget = os.environ["CNNVIZ_SERVER_BUDGET_MB"]  # the designer itself refuses these designs under the budget:
os.environ["CNNVIZ_SERVER_BUDGET_MB"] = "1000000"  # built here as on a server with a far bigger one, then used here
wide_1024 = net(1024, 1)
wide_32 = net(32, 3)
os.environ["CNNVIZ_SERVER_BUDGET_MB"] = budget
x_1024 = torch.zeros(1, 3, 1024, 1024)
images = torch.zeros(64, 3, 32, 32, dtype=torch.uint8)
features.feature_maps(net(32, 1), torch.zeros(1, 3, 32, 32), ["conv1"])  # warm: first-call allocations
'''


@pytest.fixture(scope="module")
def reports():
    attacks = {
        "fmap_1024": "features.feature_maps(wide_1024, x_1024, ['conv1'])",
        "cam_1024": "features.grad_cam(wide_1024, x_1024, 'conv1')",
        "predict_1024": "features.predict(wide_1024, x_1024)",
        "evaluate_32": "RESULT = [evaluate.fit_batch_size(wide_32, (3, 32, 32), 64), "
                       "tuple(evaluate.predict(wide_32, images, (0.5,) * 3, (0.25,) * 3).shape)]",
        "estimate": "e = memory.estimate(wide_1024, (3, 1024, 1024)); RESULT = [e.largest, e.inference]",
    }
    return measure(SETUP, attacks, BUDGET_MB)


def test_feature_map_of_17_gb_is_refused_with_estimate_and_budget(reports):
    msg = refused(reports["fmap_1024"], "BudgetError", "the feature maps of DesignNet on 1 image(s) of 3x1024x1024",
                  "GB, over this server's memory budget of 256.0 MB")
    assert float(msg.split("about ")[1].split(" GB")[0]) > 16  # 4,096 x 1,024 x 1,024 float32 = 16 GB, and more
    under_budget(reports["fmap_1024"], BUDGET_MB)
    e = reports["estimate"]["result"]
    assert e[0] == 4096 * 1024 * 1024 * 4 and e[1] >= e[0]


def test_grad_cam_and_prediction_are_refused_too(reports):
    refused(reports["cam_1024"], "BudgetError", "Grad-CAM")
    refused(reports["predict_1024"], "BudgetError", "the prediction")
    for k in ("cam_1024", "predict_1024"):
        under_budget(reports[k], BUDGET_MB)


def test_evaluation_batch_is_fitted_to_the_budget(reports):
    r = reports["evaluate_32"]
    assert r["error"] is None, r["error"]
    batch, shape = r["result"]
    assert 1 <= batch < 16  # 4,096 x 32 x 32 float32 = 16 MB per image per activation; 500 would be 8 GB
    assert shape == [64, 10]
    under_budget(r, BUDGET_MB)


def test_the_feature_maps_page_says_so_in_one_line(tmp_path, monkeypatch):
    """The page opening a checkpoint of the 1,024 px wide design: one error line, no exception (run
    in this process under an address-space limit, so a failed guard fails the test, not the machine)."""
    import resource

    from cnnviz import models
    from cnnviz.models import design as Dz
    from cnnviz.models.checkpoints import save_checkpoint

    from .pagetest import open_page, page_path

    spec = {"name": "wide", "input": [3, 1024, 1024], "layers": [
        {"type": "conv2d", "out_channels": 4096, "kernel_size": 1}, {"type": "adaptiveavgpool2d", "output_size": 1},
        {"type": "flatten"}, {"type": "linear", "out_features": "classes"}]}
    monkeypatch.setenv("CNNVIZ_SERVER_BUDGET_MB", "1000000")  # made where the budget was far bigger
    model = models.from_design(spec, num_classes=10)
    save_checkpoint(model, tmp_path / "wide.safetensors", {"model": "design:wide.json", "num_classes": 10,
                                                           "in_channels": 3, **Dz.checkpoint_meta(model)})
    monkeypatch.setenv("CNNVIZ_SERVER_BUDGET_MB", str(BUDGET_MB))
    with open("/proc/self/status") as f:
        size = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + 3 * 2**30, hard))
    try:
        at = open_page(page_path("feature_maps"), timeout=120, clean=True)
        at.radio(key="fm_source_lenet5").set_value("Upload a checkpoint").run()
        at.file_uploader(key="fm_upload").set_value(("wide.safetensors", (tmp_path / "wide.safetensors").read_bytes(),
                                                     "application/octet-stream")).run()
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert "budget" in errors[0] or "memory" in errors[0], errors
