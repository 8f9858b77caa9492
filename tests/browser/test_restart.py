"""A run outlives the server that started it: start a run on the Train page, stop the `streamlit run`
process, start a new one on the same runs folder, and see the same run still advancing live."""

from __future__ import annotations

import re
import time

import pytest

from cnnviz import runs

from ..runtools import kill_runs_under
from .server import CHROMIUM, CHROMIUM_ARGS, exceptions, main_text, pick_segment, running_app, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]
RID = r"\d{8}-\d{6}-lenet5-shapes-[0-9a-f]{16}"


def _set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Tab")


def _progress(page, rid: str) -> str:
    """The run's progress line ('37% · epoch 3/200 · ETA ...'), or ''."""
    box = page.locator(f".st-key-train_run_{rid}")
    bars = box.locator('[data-testid="stProgress"]')
    return bars.first.inner_text() if bars.count() else ""


def _wait_progress_moves(page, rid: str, timeout: float = 120) -> tuple[str, str]:
    first, deadline = "", time.time() + timeout
    while time.time() < deadline:
        now = _progress(page, rid)
        if re.search(r"\d+% · epoch", now):
            if not first:
                first = now
            elif now != first:
                return first, now
        time.sleep(0.5)
    pytest.fail(f"run {rid} did not advance on the page (progress {first!r})")


def test_a_run_keeps_training_across_a_server_restart_and_the_new_server_shows_it_live(browser, artifacts,
                                                                                          tmp_path):
    root = tmp_path / "runs"
    env = {"CNNVIZ_RUNS": str(root), "CNNVIZ_MAX_RUNS": "1"}
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        with running_app(env_extra=env, timeout=120) as url:
            page.goto(f"{url}/train")
            wait_idle(page)
            assert not exceptions(page)
            _set_number(page, "Epochs", 200)
            _set_number(page, "Train images (0 = all)", 512)
            _set_number(page, "Test images (0 = all)", 128)
            page.get_by_role("button", name=re.compile("Start training")).click()
            deadline = time.time() + 120
            while time.time() < deadline and not re.search(RID, main_text(page)):
                time.sleep(0.3)
            rid = re.search(RID, main_text(page)).group(0)
            pick_segment(page, "train_refresh", "1 s")
            _wait_progress_moves(page, rid)
        # the server is gone; the run is not
        run_dir = root / rid
        pid, start = runs.liveness.read_pid(run_dir)
        assert runs.liveness.process_alive(pid, start), "the run died with the server"
        steps_then = len(runs.read_run(run_dir).steps)
        with running_app(env_extra=env, timeout=120) as url:
            page.goto(f"{url}/train")
            wait_idle(page)
            assert not exceptions(page)
            assert re.search(re.escape(rid) + r"\s*·\s*running", main_text(page)), main_text(page)[-1500:]
            pick_segment(page, "train_refresh", "1 s")
            before, after = _wait_progress_moves(page, rid)
            assert len(runs.read_run(run_dir).steps) > steps_then
            page.screenshot(path=str(artifacts / "browser-train-after-restart.png"), full_page=True)
            page.locator(f".st-key-train_run_{rid}").get_by_role("button", name=re.compile("Stop")).click()
            deadline = time.time() + 120
            while time.time() < deadline and runs.read_run(run_dir).status != "stopped":
                time.sleep(0.3)
            assert runs.read_run(run_dir).status == "stopped"
    finally:
        context.close()
        kill_runs_under(root)
