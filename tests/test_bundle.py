"""`python -m cnnviz export ... --bundle OUT`: an ONNX bundle whose predict.py runs without torch.

The shipped LeNet5 and ResNet checkpoints and a freshly trained `shapes` run are exported through
the CLI; predict.py then runs in a subprocess where importing torch (or cnnviz) fails, and must give
cnnviz's own top-1 and probabilities (within 1e-4) on the sample images and on awkward files (CMYK,
palette with transparency, 16-bit, EXIF-rotated, animated, 1-bit), with one stderr line for a file
that is not an image. A tampered graph fails the ONNX self-check; every registry model exports;
bad input gets one line and exit code 2 with nothing left behind.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnviz import models
from cnnviz.images import load_image, samples
from cnnviz.inspect import features, loading
from cnnviz.train import TrainConfig, bundle, fit
from cnnviz import runs

from .runtools import cli_here

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "assets" / "checkpoints"

BLOCKER = '''\
"""Test helper: make `import torch` (and torchvision, cnnviz) fail in this interpreter."""
import sys


class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "cnnviz"):
            raise ImportError(f"No module named {name!r} (blocked: predict.py must not need it)")
        return None


sys.meta_path.insert(0, _Blocked())
'''


def _cli(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "cnnviz", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def no_torch_env(tmp_path_factory) -> dict:
    """Environment for a subprocess in which importing torch fails (a sitecustomize import hook)."""
    d = tmp_path_factory.mktemp("no-torch")
    (d / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(d)
    p = subprocess.run([sys.executable, "-c", "import torch"], env=env, cwd=d, capture_output=True, text=True)
    assert p.returncode != 0 and "blocked" in p.stderr, "the torch blocker does not work"
    return env


def _predict(bundle_dir: Path, images: list[Path], env: dict, *extra: str) -> subprocess.CompletedProcess:
    work = bundle_dir.parent / "elsewhere"  # not the repository: cnnviz is not on the path either
    work.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, str(bundle_dir / "predict.py"), *map(str, images), *extra],
                          env=env, cwd=work, capture_output=True, text=True, timeout=180)


def _odd_images(folder: Path) -> list[Path]:
    """Pictures in modes cnnviz converts: CMYK, palette + transparency, 16-bit, EXIF-rotated, 1-bit, GIF."""
    folder.mkdir(parents=True, exist_ok=True)
    cat = load_image(samples()[0].path)
    out = []
    p = folder / "cmyk.jpg"
    cat.convert("CMYK").save(p, "JPEG", quality=90)
    out.append(p)
    p = folder / "palette.png"
    pal = cat.resize((120, 90)).convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    pal.info["transparency"] = 0
    pal.save(p, transparency=0)
    out.append(p)
    p = folder / "sixteen.png"
    arr = (np.asarray(cat.convert("L"), dtype=np.uint16) * 40 + 1000).astype(np.uint16)
    Image.fromarray(arr).save(p)  # uint16: mode I;16
    out.append(p)
    p = folder / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    cat.crop((0, 0, 300, 200)).save(p, "JPEG", quality=92, exif=exif.tobytes())
    out.append(p)
    p = folder / "onebit.png"
    cat.convert("1").save(p)
    out.append(p)
    p = folder / "animated.gif"
    frames = [cat.resize((64, 64)), cat.resize((64, 64)).rotate(90)]
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out.append(p)
    return out


def _cnnviz_probs(loaded: loading.Loaded, path: Path) -> np.ndarray:
    """cnnviz's own prediction for an image file: the Feature maps page's path (load, crop/resize, normalise)."""
    x, _ = features.preprocess(load_image(path), loaded.input_size, loaded.mean, loaded.std, loaded.in_channels)
    top = features.predict(loaded.model, x, loaded.classes, k=len(loaded.classes))
    probs = np.zeros(len(loaded.classes))
    for i, _name, p in top:
        probs[i] = p
    return probs


def _agree(bundle_dir: Path, loaded: loading.Loaded, images: list[Path], env: dict, junk: Path | None = None):
    """predict.py (torch blocked) vs cnnviz on `images`: same top-1, probabilities within 1e-4."""
    k = len(loaded.classes)
    args = images + ([junk] if junk else [])
    p = _predict(bundle_dir, args, env, "--json", "--top", str(k))
    assert p.returncode == (2 if junk else 0), p.stderr
    results = json.loads(p.stdout)
    assert [r["image"] for r in results] == [str(a) for a in args]
    if junk:
        assert "error" in results[-1] and "top" not in results[-1]
        err = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(err) == 1 and junk.name in err[0] and "not an image" in err[0], p.stderr
    worst = 0.0
    for path, res in zip(images, results):
        ours = _cnnviz_probs(loaded, path)
        theirs = np.zeros(k)
        for t in res["top"]:
            theirs[t["index"]] = t["probability"]
        assert res["top"][0]["index"] == int(ours.argmax()), path.name
        assert res["top"][0]["label"] == loaded.classes[int(ours.argmax())]
        worst = max(worst, float(np.abs(theirs - ours).max()))
    assert worst <= 1e-4, worst
    return worst


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory) -> Path:
    """A freshly trained tiny LeNet5 run on `shapes` (1 epoch)."""
    run_dir = tmp_path_factory.mktemp("bundle-run") / "run"
    cfg = TrainConfig(model="lenet5", dataset="shapes", epochs=1, batch_size=32, device="cpu", seed=0,
                      limit_train=256, limit_test=64)
    evs = list(fit(cfg, run_dir=run_dir))
    assert evs[-1].data["status"] == "finished", evs[-1].data
    return run_dir


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory) -> list[Path]:
    return _odd_images(tmp_path_factory.mktemp("odd-images"))


def _junk(folder: Path) -> Path:
    p = folder / "notes.txt"
    p.write_text("this is not an image\n")
    return p


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("name", ["lenet5", "resnet_small"])
def test_shipped_checkpoint_bundle_predicts_like_cnnviz_without_torch(name, tmp_path, no_torch_env, odd_images):
    ckpt = SHIPPED / f"{name}-cifar10.safetensors"
    if not ckpt.is_file():
        pytest.skip(f"{ckpt.name} is not shipped")
    out = tmp_path / "bundle"
    p = _cli("export", str(ckpt), "--bundle", str(out))
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout.strip().splitlines()[-1])
    assert info["opset"] == bundle.ONNX_OPSET and info["max_logit_diff"] <= bundle.MAX_LOGIT_DIFF
    assert sorted(os.listdir(out)) == sorted(bundle.FILES)
    loaded = loading.from_checkpoint(ckpt, name)
    assert json.loads((out / "labels.json").read_text()) == loaded.classes
    spec = json.loads((out / "preprocess.json").read_text())
    assert spec["input"] | {"channels": 3, "height": 32, "width": 32} == spec["input"]
    assert spec["color"] == "RGB" and spec["mean"] == pytest.approx(list(loaded.mean))
    readme = (out / "README.md").read_text()
    assert f"{info['max_logit_diff']:.3g}" in readme and "onnxruntime" in readme and "python predict.py" in readme
    # the safetensors in the bundle is the same weights
    again = loading.from_checkpoint(out / "model.safetensors", name)
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k])
    images = [s.path for s in samples()] + odd_images
    _agree(out, loaded, images, no_torch_env, junk=_junk(tmp_path))


def test_fresh_shapes_run_bundle_predicts_like_cnnviz_without_torch(shapes_run, tmp_path, no_torch_env):
    out = tmp_path / "b"
    p = _cli("export", str(shapes_run), "--bundle", str(out))
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout.strip().splitlines()[-1])
    assert "test images of shapes" in info["checked_on"] and info["checked_images"] == 32 + len(samples())
    run = runs.read_run(shapes_run)
    readme = (out / "README.md").read_text()
    assert f"{100 * run.epochs[-1]['test_acc']:.2f}%" in readme and "| epochs | 1 of 1 |" in readme
    loaded = loading.from_checkpoint(shapes_run / "last.safetensors", "lenet5")
    assert json.loads((out / "labels.json").read_text()) == loaded.classes  # the shapes classes
    _agree(out, loaded, [s.path for s in samples()], no_torch_env)
    # plain text output: one block per image, the top-3 lines
    p = _predict(out, [samples()[0].path], no_torch_env, "--top", "3")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].endswith(samples()[0].path.name) and len(lines) == 4 and lines[1].strip().startswith("1.")


def test_grayscale_model_bundle(tmp_path, no_torch_env, odd_images):
    """A 1-channel model: preprocess.json says grayscale and predict.py converts as cnnviz does."""
    from cnnviz.models.checkpoints import save_checkpoint

    torch.manual_seed(0)
    model = models.create("lenet5", num_classes=4, in_channels=1).eval()
    ckpt = tmp_path / "gray.safetensors"
    save_checkpoint(model, ckpt, {"model": "lenet5", "num_classes": 4, "in_channels": 1, "input_size": 32,
                                  "classes": ["a", "b", "c", "d"], "mean": [0.45], "std": [0.27], "epoch": 1})
    res = bundle.bundle_checkpoint(ckpt, tmp_path / "b")
    assert res.n_checked == len(samples()) and "sample images" in res.checked_on
    spec = json.loads((tmp_path / "b" / "preprocess.json").read_text())
    assert spec["color"] == "grayscale" and spec["input"]["channels"] == 1
    _agree(tmp_path / "b", loading.from_checkpoint(ckpt, "lenet5"), [s.path for s in samples()] + odd_images,
           no_torch_env)


# ----------------------------------------------------------------------------- the self-check

def _tamper(onnx_path: Path) -> None:
    """Change one weight of the graph (the first conv's first value) in place."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(onnx_path))
    init = next(i for i in m.graph.initializer if len(i.dims) == 4)
    arr = numpy_helper.to_array(init).copy()
    arr.flat[0] += 0.5
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(m, str(onnx_path))


def test_tampered_graph_fails_the_check(shapes_run, tmp_path):
    res = bundle.bundle_run(shapes_run, tmp_path / "b")
    assert res.max_diff <= bundle.MAX_LOGIT_DIFF
    src = bundle.source_from_run(shapes_run)
    x, _ = bundle.check_batch(src)
    diff, agree = bundle.check_onnx(tmp_path / "b" / "model.onnx", src.model, x)
    assert diff == pytest.approx(res.max_diff) and agree == len(x)
    _tamper(tmp_path / "b" / "model.onnx")
    with pytest.raises(bundle.BundleError, match=r"ONNX check failed: the largest logit difference .* above the "
                                                 r"1e-4 allowed"):
        bundle.check_onnx(tmp_path / "b" / "model.onnx", src.model, x)


def test_export_refuses_a_graph_that_disagrees_and_leaves_nothing(shapes_run, tmp_path, monkeypatch):
    real = bundle.export_onnx

    def export_then_tamper(model, path, example, name="the model", opset=bundle.ONNX_OPSET):
        real(model, path, example, name, opset)
        _tamper(path)

    monkeypatch.setattr(bundle, "export_onnx", export_then_tamper)
    out = tmp_path / "out" / "b"
    with pytest.raises(bundle.BundleError, match="ONNX check failed"):
        bundle.bundle_run(shapes_run, out)
    assert not out.exists() and os.listdir(tmp_path / "out") == []


def test_an_operator_onnx_cannot_express_is_named_with_its_layer(tmp_path):
    class CumMax(torch.nn.Module):
        def forward(self, x):
            return torch.cummax(x.flatten(1), 1)[0][:, :10]

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Sequential(torch.nn.ReLU(), CumMax())).eval()
    with pytest.raises(bundle.BundleError) as e:
        bundle.export_onnx(model, tmp_path / "m.onnx", torch.randn(2, 3, 8, 8), "odd")
    msg = str(e.value)
    assert "\n" not in msg and "aten.cummax" in msg and "`1.1` (CumMax)" in msg, msg
    assert not (tmp_path / "m.onnx").exists()


def _registry_cases():
    return [pytest.param(n, marks=pytest.mark.slow) for n in models.names()]


@pytest.mark.parametrize("name", _registry_cases())
def test_every_registry_model_exports_and_matches(name, tmp_path):
    """Random weights at a small input (32 px; 64 px for the ImageNet-sized ones), dynamic batch."""
    info = models.info(name)
    size = 32 if info.input_size <= 64 else 64
    torch.manual_seed(0)
    model = models.create(name, num_classes=10, in_channels=3).eval()
    path = tmp_path / f"{name}.onnx"
    try:
        bundle.export_onnx(model, path, torch.randn(2, 3, size, size), name)
        diff, agree = bundle.check_onnx(path, model, torch.randn(5, 3, size, size))  # another batch size
        print(f"{name}: largest logit difference {diff:.3g}")
        assert diff <= bundle.MAX_LOGIT_DIFF and agree == 5
        import onnx

        m = onnx.load(str(path), load_external_data=False)
        assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
        assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [bundle.ONNX_OPSET]
    finally:
        path.unlink(missing_ok=True)  # hundreds of MB for the VGGs: don't leave them in pytest's tmp


# ----------------------------------------------------------------------------- bad input

def _no_leftovers(parent: Path) -> None:
    assert not [p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_bad_input_is_one_line_and_exit_code_2(shapes_run, tmp_path, capsys, monkeypatch):
    def here(*args, cwd=ROOT):
        return cli_here(capsys, monkeypatch, *args, cwd=cwd)

    # a run with no checkpoint
    empty = tmp_path / "empty-run"
    empty.mkdir()
    shutil.copy(shapes_run / "config.json", empty / "config.json")
    p = _cli("export", str(empty), "--bundle", str(tmp_path / "a"))
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "has no checkpoint yet" in p.stderr
    assert not (tmp_path / "a").exists()
    # an epoch that was not kept
    p = here("export", str(shapes_run), "--bundle", str(tmp_path / "a"), "--epoch", "7")
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0
    assert "kept no checkpoint for epoch 7 (kept epochs: 1)" in p.stderr
    assert not (tmp_path / "a").exists()
    # an output folder that exists and is not empty: refused, untouched; --force replaces only an earlier bundle
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("keep me")
    p = here("export", str(shapes_run), "--bundle", str(full))
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "--force" in p.stderr
    assert os.listdir(full) == ["mine.txt"]
    p = here("export", str(shapes_run), "--bundle", str(full), "--force")
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0, p.stderr
    assert "--force replaces only an earlier bundle" in p.stderr and "'mine.txt'" in p.stderr
    assert os.listdir(full) == ["mine.txt"]
    (full / "mine.txt").unlink()
    assert here("export", str(shapes_run), "--bundle", str(full)).returncode == 0
    p = here("export", str(shapes_run), "--bundle", str(full), "--force")  # an earlier bundle: replaced
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(full)) == sorted(bundle.FILES)
    # an empty existing folder is fine
    (tmp_path / "empty-out").mkdir()
    assert here("export", str(shapes_run), "--bundle", str(tmp_path / "empty-out")).returncode == 0
    # --force never replaces the current folder (or anything above it)
    p = here("export", str(shapes_run), "--bundle", ".", "--force", cwd=full)
    assert p.returncode == 2 and "it is the current folder" in p.stderr
    assert sorted(os.listdir(full)) == sorted(bundle.FILES)
    _no_leftovers(tmp_path)


def test_a_run_still_training_exports_its_last_checkpoint_and_says_so(shapes_run, tmp_path):
    live = tmp_path / "live-run"
    shutil.copytree(shapes_run, live)
    lines = [ln for ln in (live / runs.METRICS_FILE).read_text().splitlines() if '"kind": "done"' not in ln]
    (live / runs.METRICS_FILE).write_text("\n".join(lines) + "\n")
    (live / runs.PID_FILE).write_text(str(os.getpid()))  # this test process: alive, so "running"
    p = _cli("export", str(live), "--bundle", str(tmp_path / "b"))
    assert p.returncode == 0, p.stderr
    notes = [ln for ln in p.stderr.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and "still training: exported its last checkpoint (epoch 1)" in notes[0]
    assert (tmp_path / "b" / "model.onnx").is_file()
    assert "still training" in (tmp_path / "b" / "README.md").read_text()


def test_bundle_zip_holds_the_files(shapes_run):
    import zipfile

    data, res = bundle.bundle_zip(bundle.source_from_run(shapes_run), folder_name="run-bundle")
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert sorted(names) == sorted(f"run-bundle/{f}" for f in bundle.FILES)
    assert res.max_diff <= bundle.MAX_LOGIT_DIFF
