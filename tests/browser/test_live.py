"""Live means live: a run training on the CPU shows a visible change on the Train page at least every
3 s (its progress line: status and progress redraw every second from the run directory)."""

from __future__ import annotations

import time

import pytest

from cnnviz import runs
from cnnviz.runs import Status, queue
from cnnviz.train import TrainConfig

from ..runtools import wait_for
from .server import exceptions, goto_via_sidebar

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

CHANGES = 8      # consecutive changes watched
MAX_GAP_S = 3.0  # the promise


def test_a_training_run_visibly_changes_at_least_every_three_seconds(app_page, app_url, app_runs, artifacts):
    page = app_page
    cfg = TrainConfig(model="lenet5", dataset="shapes", epochs=400, batch_size=32, device="cpu", limit_train=512,
                      limit_test=64)
    run_dir = queue.submit(cfg, app_runs)
    wait_for(lambda: runs.snapshot(run_dir).steps_logged > 0, "the run to log its first step")
    goto_via_sidebar(page, app_url, "train")
    card = page.locator(f".st-key-train_run_{run_dir.name}")
    bar = card.locator('[data-testid="stProgress"]').first
    bar.wait_for(timeout=60_000)
    gaps = []
    last = bar.inner_text()
    t_last = time.monotonic()
    for _ in range(CHANGES):
        # wait (at most the promise, plus a margin for a loaded machine to be told apart) for the text to change
        page.wait_for_function(
            "([sel, old]) => { const e = document.querySelector(sel); return e && e.innerText !== old; }",
            arg=[f'.st-key-train_run_{run_dir.name} [data-testid="stProgress"]', last], timeout=10_000, polling=50)
        now = time.monotonic()
        gaps.append(now - t_last)
        last, t_last = bar.inner_text(), now
    page.screenshot(path=str(artifacts / "train-live.png"), full_page=False)
    assert not exceptions(page)
    assert max(gaps) <= MAX_GAP_S, f"longest stretch without a visible change: {max(gaps):.2f} s ({gaps})"
    assert "step" in last and runs.snapshot(run_dir).status == Status.RUNNING
    runs.request_stop(run_dir)
    wait_for(lambda: runs.summary(run_dir).status == Status.STOPPED, "the run to stop")
