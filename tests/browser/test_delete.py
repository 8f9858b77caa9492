"""Real-browser test of deleting a run from the Train page: "Delete" asks, "Yes, delete" removes the
run's folder and its box, and another run stays. Headless Debian chromium, `streamlit run app.py`."""

from __future__ import annotations

import time

import pytest

from .server import exceptions, goto_via_sidebar, main_text, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def _finished_run(root, seed: int):
    from cnnviz.runs.layout import new_run_dir
    from cnnviz.train import TrainConfig, fit

    d = new_run_dir("lenet5", "shapes", root)
    evs = list(fit(TrainConfig(model="lenet5", dataset="shapes", epochs=1, batch_size=64, device="cpu", seed=seed,
                               limit_train=128, limit_test=64), run_dir=d))
    assert evs[-1].data["status"] == "finished", evs[-1].data
    return d


def test_delete_asks_then_yes_delete_removes_the_run(app_page, app_url, app_runs, artifacts):
    victim, other = _finished_run(app_runs, 0), _finished_run(app_runs, 1)
    page = app_page
    goto_via_sidebar(page, app_url, "train")
    assert not exceptions(page)
    box = page.locator(f".st-key-train_run_{victim.name}")
    box.wait_for()
    page.locator(f".st-key-train_delete_{victim.name} button").click()
    ask = page.get_by_text(f"Delete run {victim.name} and all its checkpoints?")
    ask.wait_for()
    wait_idle(page)
    assert victim.is_dir()  # asking deletes nothing
    page.screenshot(path=str(artifacts / "browser-train-delete-confirm.png"), full_page=True)
    yes = page.locator(f".st-key-train_delete_yes_{victim.name} button")
    assert "Yes, delete" in yes.inner_text()
    yes.click()
    deadline = time.time() + 60
    while time.time() < deadline and (victim.exists() or victim.name in main_text(page)):
        time.sleep(0.3)
    wait_idle(page)
    assert not victim.exists() and victim.name not in main_text(page)
    assert other.is_dir() and page.locator(f".st-key-train_run_{other.name}").count() == 1
    assert not exceptions(page)
