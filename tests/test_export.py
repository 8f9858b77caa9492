"""`python -m cnnviz export` writes a standalone script that runs without cnnviz."""

from __future__ import annotations

import ast
import json
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


# ---- the exported script's augmentation is the pipeline's, batch steps included ---------------------------
AUG_WITH_BATCH = json.dumps({"steps": [
    {"name": "RandomAffine", "params": {"degrees": 10.0, "translate": [0.1, 0.1], "scale": [0.9, 1.1]}},
    {"name": "RandomErasing", "params": {"p": 0.5}},
    {"name": "MixUp", "params": {"alpha": 0.4}}, {"name": "CutMix", "params": {"alpha": 1.0}}]})


def _import_script(path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_exported_augmentation_equals_the_pipeline_per_image_and_batch_and_the_loop_mixes(tmp_path, monkeypatch):
    """A digits run with MixUp/CutMix exports a script whose per-image transform draws exactly what
    `Pipeline.build()` draws under the same seed, whose batch step is `build_batch()`'s (soft labels),
    and whose training loop applies that batch step to every training batch."""
    import torch

    from cnnviz.augment import pipeline as P

    cfg = TrainConfig(model="lenet5", dataset="digits", augment=AUG_WITH_BATCH, batch_size=16, epochs=1,
                      device="cpu", limit_train=64, limit_test=32)
    evs = list(fit(cfg, run_dir=tmp_path / "run"))
    assert evs[-1].data["status"] == "finished", evs[-1].data
    mod = _import_script(export_script(tmp_path / "run", tmp_path / "out" / "mix_repro.py"))
    pipe = P.resolve(AUG_WITH_BATCH)
    img = torch.randint(0, 256, (1, 28, 28), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)
    for seed in range(4):
        torch.manual_seed(seed)
        ours = mod.augment_transform()(img)
        torch.manual_seed(seed)
        ref = pipe.build()(img)
        assert torch.equal(ours, ref)
    assert not torch.equal(ours, img.float() / 255)  # the affine step did move the pixels
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(6))
    y = torch.arange(8) % 10
    for seed in range(4):
        torch.manual_seed(seed)
        xs, ys = mod.augment_batch(x, y)
        torch.manual_seed(seed)
        xr, yr = pipe.build_batch(10)(x, y)
        assert torch.equal(xs, xr) and torch.equal(ys, yr)
        assert ys.shape == (8, 10) and not torch.equal(xs, x)  # mixed: soft labels, changed images
    calls = []
    real = mod.augment_batch

    def counting(xb, yb):
        out = real(xb, yb)
        calls.append((tuple(xb.shape), tuple(out[1].shape)))
        return out

    monkeypatch.setattr(mod, "augment_batch", counting)
    monkeypatch.setattr(sys, "argv", ["mix_repro.py", "--epochs", "1", "--max-steps", "3"])
    mod.main()
    assert calls == [((16, 1, 32, 32), (16, 10))] * 3


def _script_accuracy(stdout: str) -> float:
    accs = re.findall(r"test loss [\d.]+ acc ([\d.]+)", stdout)
    assert accs, stdout[-2000:]
    return float(accs[-1])


@pytest.mark.slow
def test_exported_script_run_uncapped_reaches_the_runs_test_accuracy_on_digits(tmp_path):
    """The script trained uncapped (all 4,500 digits, 2 epochs, its DataLoader and PIL per image) reaches the
    cnnviz run's test accuracy on the same 500 test digits within TOLERANCE. The two differ by design
    (shuffling, batching on the device), so they agree within noise: each accuracy near 0.93 on 500 images
    has a standard error of about 0.011, their difference about 0.016, and 0.04 is 2.5 of those (measured
    here: 0.938 vs 0.926 and 0.918 vs 0.940 for seeds 0 and 1). A broken recipe (test images not
    normalised, another model, schedule or label order) lands far outside it."""
    TOLERANCE = 0.04
    cfg = TrainConfig(model="lenet5", dataset="digits", augment="none", epochs=2, batch_size=128,
                      lr=3e-3, optimizer="adam", schedule="onecycle", device="cpu", seed=0)
    evs = list(fit(cfg, run_dir=tmp_path / "run"))
    assert evs[-1].data["status"] == "finished", evs[-1].data
    run_acc = evs[-1].data["test_acc"]
    script = export_script(tmp_path / "run", tmp_path / "out" / "digits_full.py")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    p = subprocess.run([sys.executable, "-I", str(script)], cwd=work, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("test loss") == 2
    script_acc = _script_accuracy(p.stdout)
    assert run_acc > 0.85 and abs(script_acc - run_acc) <= TOLERANCE, (script_acc, run_acc)
