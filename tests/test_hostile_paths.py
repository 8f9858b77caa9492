"""Hostile paths: what a browser names stays under the data roots and the designs folder.

`data.visitor_spec` is what the Datasets and Train pages pass a typed `folder:`/`zip:` path
through; `loading.from_checkpoint` is how the Feature maps page opens an upload, whose metadata may
name a `design:` file. Each runs in a child process whose real memory is measured (tests/hostile.py).
Refusals are one line, the same whether or not the path exists, and never quote a file's content.
The command line's user names paths explicitly and they work: `--model design:PATH` as `--dataset
folder:PATH`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import save

from cnnviz.models import design as Dz
from cnnviz.models.checkpoints import save_checkpoint
from cnnviz import models

from .hostile import ROOT, measure, refused, under_budget

BUDGET_MB = 256
SECRET = "TOKEN-5f1c0ffee"


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile-paths")
    data, designs, outside = base / "data", base / "designs", base / "outside"
    for d in (data / "pets" / "cat", designs, outside / "pets" / "dog"):
        d.mkdir(parents=True)
    (data / "out").symlink_to(outside)                      # a symlink out of the root
    (data / "pets.zip").symlink_to(outside / "x.zip")
    (outside / "secret.json").write_text(json.dumps({"name": SECRET, "layers": [{"type": SECRET}]}))
    (base / "wd-secret.json").write_text('{"api_key": "%s"}' % SECRET)  # under the working folder
    ckpts = {}
    for key, ref in (("design_outside", f"design:{outside / 'secret.json'}"),
                     ("design_climb", "design:../outside/secret.json"),
                     ("design_cwd", "design:wd-secret.json"),
                     ("design_missing", f"design:{outside / 'nothing.json'}")):
        ckpts[key] = base / f"{key}.safetensors"
        ckpts[key].write_bytes(save({"w": __import__("torch").zeros(1)},
                                    metadata={"format": "cnnviz-1", "meta": json.dumps({"model": ref})}))
    env = {"CNNVIZ_DATA_ROOTS": str(data), "CNNVIZ_DESIGNS": str(designs), "CNNVIZ_MAX_IMAGES": "500"}
    setup = "from pathlib import Path\nfrom cnnviz import data as D\nfrom cnnviz.inspect import loading\n"
    attacks = {
        "root": "D.visitor_spec('folder:/')",
        "etc": "D.visitor_spec('folder:/etc')",
        "missing": "D.visitor_spec('folder:/no/such/folder')",
        "symlink_out": f"D.visitor_spec('folder:{data / 'out' / 'pets'}')",
        "zip_symlink_out": f"D.visitor_spec('zip:{data / 'pets.zip'}')",
        "climb": f"D.visitor_spec('folder:{data}/../outside/pets')",
        "inside": f"RESULT = D.visitor_spec('folder:{data}/pets')",
        **{k: f"loading.from_checkpoint(Path({str(p)!r}).read_bytes(), 'lenet5')" for k, p in ckpts.items()},
    }
    r = measure(setup, attacks, BUDGET_MB, env, cwd=base)
    scan = measure("from cnnviz import data as D\n", {"scan_root": "D.source_key(D.visitor_spec('folder:/'))"},
                   BUDGET_MB, {"CNNVIZ_DATA_ROOTS": "/", "CNNVIZ_MAX_IMAGES": "500"}, cwd=base)
    return {**r, **scan, "data": data, "base": base}


WORDS = ("is not inside the folders this server reads", "CNNVIZ_DATA_ROOTS")


def test_folder_slash_is_refused(reports):
    refused(reports["root"], "DatasetError", "The path '/'", *WORDS)
    under_budget(reports["root"], BUDGET_MB)


def test_refusal_does_not_tell_whether_a_path_exists(reports):
    etc = refused(reports["etc"], "DatasetError", *WORDS)
    missing = refused(reports["missing"], "DatasetError", *WORDS)
    assert etc.replace("'/etc'", "X") == missing.replace("'/no/such/folder'", "X")
    for k in ("etc", "missing"):
        under_budget(reports[k], BUDGET_MB)


def test_symlinks_and_dot_dot_out_of_a_root_are_refused(reports):
    for k in ("symlink_out", "zip_symlink_out", "climb"):
        refused(reports[k], "DatasetError", *WORDS)
        under_budget(reports[k], BUDGET_MB)
    assert reports["inside"]["error"] is None
    assert reports["inside"]["result"] == f"folder:{(reports['data'] / 'pets').resolve()}"


def test_a_checkpoint_naming_a_design_outside_the_designs_folder(reports):
    msgs = {}
    for k in ("design_outside", "design_climb", "design_cwd", "design_missing"):
        msgs[k] = refused(reports[k], "ValueError", "is not a file in the designs folder")
        assert SECRET not in msgs[k] and "api_key" not in msgs[k]  # the file's content is never quoted
        under_budget(reports[k], BUDGET_MB)
    same = {m.split("'")[0] + m.split("'")[-1] for m in msgs.values()}
    assert len(same) == 1  # existing or not, the same words around the name


def test_a_root_of_slash_is_not_scanned_to_its_end(reports):
    refused(reports["scan_root"], "DatasetError", "Refused: the folder holds more than 2,000 files and folders",
            "CNNVIZ_MAX_IMAGES")
    under_budget(reports["scan_root"], BUDGET_MB)


def test_the_cli_uses_the_paths_its_user_names(tmp_path):
    """`train --model design:/elsewhere/net.json --dataset folder:/elsewhere/data` both work, as the
    issue asks (the design path used to be refused while the folder was accepted)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    net = tmp_path / "elsewhere" / "net.json"
    net.parent.mkdir()
    net.write_text(Dz.preset("lenet5").to_json())
    for cls, colour in (("red", (220, 0, 0)), ("blue", (0, 0, 220))):
        (tmp_path / "elsewhere" / "data" / cls).mkdir(parents=True)
        for i in range(6):
            arr = np.clip(rng.normal(colour, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / "elsewhere" / "data" / cls / f"{i}.png")
    env = dict(os.environ, PYTHONPATH=str(ROOT), CNNVIZ_DESIGNS=str(tmp_path / "designs"),
               CNNVIZ_DATA_ROOTS=str(tmp_path / "nowhere"), CNNVIZ_CACHE=str(tmp_path / "cache"))
    p = subprocess.run([sys.executable, "-m", "cnnviz", "train", "--model", f"design:{net}", "--dataset",
                        f"folder:{tmp_path / 'elsewhere' / 'data'}", "--epochs", "1", "--batch-size", "4",
                        "--device", "cpu", "--no-progress", "--run-dir", str(tmp_path / "run")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout.strip().splitlines()[-1])["status"] == "finished"


def test_an_ordinary_design_checkpoint_still_opens(tmp_path, monkeypatch):
    from cnnviz.inspect import loading

    monkeypatch.setenv("CNNVIZ_DESIGNS", str(tmp_path))
    Dz.save(Dz.preset("lenet5"))
    model = models.create("design:lenet5.json")
    save_checkpoint(model, tmp_path / "w.safetensors", {"model": "design:lenet5.json"})  # names it, no record
    assert loading.from_checkpoint(tmp_path / "w.safetensors", "lenet5").name == "design:lenet5.json"
