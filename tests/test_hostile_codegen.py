"""Hostile names in generated code, and `export --bundle --force` over folders that are not bundles.

A dataset folder (and a design file's folder) named with `\"\"\"` and a newline used to end the
standalone script's docstring and turn the rest of the name into code that runs on import. Every
user-influenced string now enters the script through `repr`. The export runs in a child process whose
real memory is measured (tests/hostile.py); the script is then parsed and run (`--help`) to show
that nothing of the names executes.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnviz.models import design as Dz

from .hostile import ROOT, measure, refused, under_budget

BUDGET_MB = 256
PAYLOAD = 'x"""\nopen("PWNED", "w").write("ran")\n"""y'


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """A one-epoch run of a design saved in a folder named PAYLOAD on a dataset folder named PAYLOAD,
    whose classes are named with quotes too."""
    from cnnviz.train import TrainConfig, fit

    base = tmp_path_factory.mktemp("hostile-codegen")
    data = base / f"data-{PAYLOAD}"
    rng = np.random.default_rng(0)
    for cls, colour in (("a'''b", (220, 40, 40)), ('c"""d', (40, 40, 220))):
        (data / cls).mkdir(parents=True)
        for i in range(6):
            arr = np.clip(rng.normal(colour, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(data / cls / f"{i}.png")
    net = base / f"design-{PAYLOAD}" / "net.json"
    net.parent.mkdir()
    net.write_text(Dz.preset("lenet5").to_json())
    old = os.environ.get("CNNVIZ_CACHE")
    os.environ["CNNVIZ_CACHE"] = str(base / "cache")
    try:
        cfg = TrainConfig(model=f"design:{net}", dataset=f"folder:{data}", epochs=1, batch_size=4, device="cpu")
        events = list(fit(cfg, run_dir=base / "run"))
    finally:
        if old is None:
            os.environ.pop("CNNVIZ_CACHE", None)
        else:
            os.environ["CNNVIZ_CACHE"] = old
    assert events[-1].data["status"] == "finished", events[-1].data
    return base


def test_a_dataset_folder_named_with_triple_quotes(hostile_run, tmp_path):
    out = tmp_path / "script.py"
    r = measure("from pathlib import Path\nfrom cnnviz.train.export import export_script\n",
                {"export": f"RESULT = export_script(Path({str(hostile_run / 'run')!r}), Path({str(out)!r})).name"},
                BUDGET_MB)["export"]
    assert r["error"] is None, r["error"]
    under_budget(r, BUDGET_MB)
    text = out.read_text()
    tree = ast.parse(text)
    doc = ast.get_docstring(tree)
    assert PAYLOAD in doc  # the names are there, as text, in the docstring
    top = [type(n).__name__ for n in tree.body]
    calls = [n for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    assert not calls and top[0] == "Expr"  # the docstring, then imports and definitions: no statement from a name
    consts = {n.targets[0].id: n.value for n in tree.body
              if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)}
    assert ast.literal_eval(consts["CLASSES"]) == ["a'''b", 'c"""d']
    assert ast.literal_eval(consts["CONFIG"])["dataset"] == f"folder:{hostile_run / ('data-' + PAYLOAD)}"
    p = subprocess.run([sys.executable, str(out), "--help"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120, env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})
    assert p.returncode == 0, p.stderr[-2000:]
    assert not (tmp_path / "PWNED").exists()


def test_in_doc_escapes_what_would_end_a_docstring_or_a_comment():
    import re

    from cnnviz.train.export import _in_doc

    for s in (PAYLOAD, "a\\", 'end"', "\r\n#", "\x00", "'''", '"""' * 3, "\u2028", '\\"'):
        text = _in_doc(s)
        assert not re.search(r'(?<!\\)(\\\\)*"', text), text  # every double quote escaped
        assert not set(text) & {"\n", "\r", "\x00", "\u2028"}
        tree = ast.parse(f'"""{text}"""\n# {text}\nx = 1\n')
        assert [type(n).__name__ for n in tree.body] == ["Expr", "Assign"]  # the docstring, then x = 1


@pytest.fixture(scope="module")
def force_reports(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile-force")
    targets = {
        "designs": {"net.json": "{}"},                       # e.g. the designs folder
        "data": {"pets/cat/1.png": "png"},                   # the data folder
        "fake_marker": {".cnnviz-bundle": "I am a bundle, honest", "model.onnx": "x", "notes.txt": "mine"},
        "marker_link": {"model.onnx": "x"},
    }
    for name, files in targets.items():
        for rel, text in files.items():
            (base / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / name / rel).write_text(text)
    (base / "marker_link" / ".cnnviz-bundle").symlink_to(base / "designs" / "net.json")
    ckpt = ROOT / "assets" / "checkpoints" / "lenet5-cifar10.safetensors"
    setup = f"from pathlib import Path\nfrom cnnviz.train import bundle\nB = Path({str(base)!r})\n"
    attacks = {name: f"bundle.bundle_checkpoint(Path({str(ckpt)!r}), B / {name!r}, force=True)" for name in targets}
    return base, targets, measure(setup, attacks, BUDGET_MB)


@pytest.mark.parametrize("name, words", [
    ("designs", "it holds files a bundle does not ('net.json')"),
    ("data", "it holds files a bundle does not ('pets')"),
    ("fake_marker", "it holds files a bundle does not ('notes.txt')"),
    ("marker_link", "its .cnnviz-bundle is not a plain file"),
])
def test_force_replaces_only_an_earlier_bundle(force_reports, name, words):
    base, targets, reports = force_reports
    refused(reports[name], "BundleError", f"Refusing to replace {base / name}", words,
            "--force replaces only an earlier bundle")
    under_budget(reports[name], BUDGET_MB)
    for rel, text in targets[name].items():  # untouched
        assert (base / name / rel).read_text() == text
