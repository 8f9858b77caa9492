"""`python -m cnnviz export` writes a standalone script that runs without cnnviz."""

from __future__ import annotations

import ast
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cnnviz.train.export import export_script, model_source
from cnnviz.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parent.parent


def _tiny_folder(root: Path, n: int = 12) -> Path:
    for split in ("train", "test"):
        for c, colour in enumerate([(220, 30, 30), (30, 30, 220), (30, 200, 30)]):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n if split == "train" else 4):
                img = Image.new("RGB", (32, 32), colour)
                img.putpixel((i % 32, i % 32), (255, 255, 255))
                img.save(d / f"{i}.png")
    return root


def _clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["CNNVIZ_EXPORT_MAX_STEPS"] = "2"
    return env


@pytest.mark.parametrize("model, augment", [("lenet5", "none"), ("resnet_small", "cifar-standard")])
def test_exported_script_runs_without_cnnviz(tmp_path, model, augment):
    if augment != "none":
        pytest.importorskip("cnnviz.augment")
    data = _tiny_folder(tmp_path / "data")
    cfg = TrainConfig(model=model, dataset=f"folder:{data}", augment=augment, batch_size=8, epochs=1,
                      device="cpu", optimizer="sgd", momentum=0.9, nesterov=True, schedule="onecycle", lr=0.05)
    evs = list(fit(cfg, run_dir=tmp_path / "run"))
    assert evs[-1].data["status"] == "finished", evs[-1].data
    script = export_script(tmp_path / "run", tmp_path / "out" / "repro.py")
    text = script.read_text()
    ast.parse(text)
    assert not re.search(r"^\s*(from|import)\s+(cnnviz|\.)", text, re.M)
    work = tmp_path / "elsewhere"  # not the repo: cnnviz is not importable from here
    work.mkdir()
    p = subprocess.run([sys.executable, "-I", str(script), "--epochs", "1", "--save", str(work / "w.pt")],
                       cwd=work, env=_clean_env(), capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "epoch 1: train loss" in p.stdout and (work / "w.pt").stat().st_size > 1000


def test_cli_export(tmp_path):
    data = _tiny_folder(tmp_path / "data", n=4)
    cfg = TrainConfig(dataset=f"folder:{data}", batch_size=4, device="cpu")
    list(fit(cfg, run_dir=tmp_path / "run"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "cnnviz", "export", str(tmp_path / "run"), "--script",
                        str(tmp_path / "s.py")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "s.py").is_file()
    p = subprocess.run([sys.executable, "-m", "cnnviz", "export", str(tmp_path / "nope"), "--script",
                        str(tmp_path / "t.py")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "No run directory" in p.stderr


@pytest.mark.parametrize("name", ["lenet5", "resnet_small", "resnet18_cifar", "airbench"])
def test_model_source_is_the_registry_model(name):
    import torch

    from cnnviz import models

    src, builder, _ = model_source(name)
    ns: dict = {}
    exec(compile("from __future__ import annotations\nimport torch\nfrom torch import nn\n" + src, "m", "exec"), ns)
    ours, theirs = ns[builder](num_classes=10, in_channels=3), models.create(name)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, v.shape) for k, v in theirs.state_dict().items()]
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 32, 32)
    ours.eval(), theirs.eval()
    assert torch.allclose(ours(x), theirs(x))


def test_exported_script_of_a_digits_run_reads_the_digits_with_cnnvizs_split(tmp_path):
    """A run on the built-in digits exports a script that reads the shipped npz itself (no cnnviz)
    and cuts the same 4,500 / 500 split."""
    import importlib.util

    from cnnviz import data

    cfg = TrainConfig(model="lenet5", dataset="digits", augment="digit-safe", batch_size=32, epochs=1,
                      device="cpu", limit_train=64, limit_test=32)
    evs = list(fit(cfg, run_dir=tmp_path / "run"))
    assert evs[-1].data["status"] == "finished", evs[-1].data
    script = export_script(tmp_path / "run", tmp_path / "out" / "digits_repro.py")
    work = tmp_path / "elsewhere"
    work.mkdir()
    p = subprocess.run([sys.executable, "-I", str(script), "--epochs", "1"], cwd=work, env=_clean_env(),
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "epoch 1: train loss" in p.stdout
    spec = importlib.util.spec_from_file_location("digits_repro", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    train, test = mod.make_datasets(None)
    assert len(train) == 4500 and len(test) == 500
    ours = data.load_dataset("digits", "test")
    assert [test[k][1] for k in range(20)] == ours.labels[:20].tolist()
