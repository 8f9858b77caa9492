"""Real-browser test of the Runs page's bundle: "Make bundle", then "Download bundle (.zip)" hands
over a zip with the ONNX bundle of the run, whose predict.py classifies an image."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile

import pytest

from .server import ROOT, exceptions, goto_via_sidebar, main_text, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


def test_runs_page_downloads_the_bundle(app_page, app_url, app_runs, artifacts, tmp_path):
    from cnnviz.train import TrainConfig, bundle, fit

    # a tiny finished run in the runs folder the app reads (CNNVIZ_RUNS, set before the server started)
    from cnnviz import runs

    # a tiny finished run in the runs folder the app reads (CNNVIZ_RUNS, set before the server started)
    run_dir = runs.layout.new_run_dir("lenet5", "shapes", app_runs)
    cfg = TrainConfig(model="lenet5", dataset="shapes", epochs=1, batch_size=32, device="cpu",
                      limit_train=128, limit_test=64)
    assert list(fit(cfg, run_dir=run_dir))[-1].data["status"] == "finished"

    page = app_page
    goto_via_sidebar(page, app_url, "runs")
    assert not exceptions(page)
    assert run_dir.name in main_text(page)  # the newest run is the one inspected
    page.get_by_role("button", name=re.compile("Make bundle")).click()
    download = page.get_by_role("button", name=re.compile(r"Download bundle \(\.zip\)"))
    download.wait_for(state="visible", timeout=180_000)
    wait_idle(page)
    assert not exceptions(page)
    assert "largest logit difference" in main_text(page)
    page.screenshot(path=str(artifacts / "runs-bundle.png"))
    with page.expect_download(timeout=60_000) as info:
        download.click()
    dl = info.value
    assert dl.suggested_filename == f"{run_dir.name}-bundle.zip"
    path = tmp_path / dl.suggested_filename
    dl.save_as(path)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == sorted(f"{run_dir.name}-bundle/{f}" for f in bundle.FILES)
        zf.extractall(tmp_path / "unzipped")
    folder = tmp_path / "unzipped" / f"{run_dir.name}-bundle"
    assert json.loads((folder / "labels.json").read_text())[0] == "circle"  # the shapes classes
    p = subprocess.run([sys.executable, str(folder / "predict.py"), str(ROOT / "assets" / "samples" / "cat.jpg"),
                        "--json", "--top", "2"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    top = json.loads(p.stdout)[0]["top"]
    assert len(top) == 2 and top[0]["probability"] >= top[1]["probability"]
