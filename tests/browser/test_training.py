"""Real-browser test of the Train page: a one-epoch shapes run streams its chart to the end,
and a second run stops from its Stop button. Headless Debian chromium, `streamlit run app.py`."""

from __future__ import annotations

import re
import time

import pytest

from .server import exceptions, goto_via_sidebar, main_text, pick_segment, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


def _set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Tab")  # commit without submitting the form


def _loss_caption(page, rid: str) -> str:
    """The loss chart's caption of run `rid` ('... N steps logged, last X.')."""
    box = page.locator(f".st-key-train_run_{rid}")
    caps = box.locator('[data-testid="stCaptionContainer"]').filter(has_text="steps logged")
    return caps.first.inner_text() if caps.count() else ""


def _open_form(page) -> None:
    """The form sits in the 'New run' expander (collapsed while a run trains)."""
    button = page.get_by_role("button", name=re.compile("Start training"))
    if not button.is_visible():
        page.locator('[data-testid="stExpander"] summary').filter(has_text="New run").click()
        button.wait_for(state="visible")


def _start(page, known: set[str]) -> str:
    _open_form(page)
    page.get_by_role("button", name=re.compile("Start training")).click()
    deadline = time.time() + 120
    while time.time() < deadline:
        ids = set(re.findall(r"\d{8}-\d{6}-lenet5-shapes-[0-9a-f]{16}", main_text(page))) - known
        if ids:
            return ids.pop()
        time.sleep(0.3)
    pytest.fail("no run appeared after Start")


def _status(page, rid: str) -> str:
    m = re.search(re.escape(rid) + r"\s*·\s*(\w+)", main_text(page))
    return m.group(1) if m else ""


def test_train_page_streams_a_run_and_stops_another(app_page, app_url, app_runs, artifacts):
    page = app_page
    before = {d.name for d in app_runs.iterdir()}  # earlier tests' runs share the server's runs folder
    goto_via_sidebar(page, app_url, "train")
    assert not exceptions(page)
    text = main_text(page)
    assert "New run" in text and "Start training" in text
    shown = set(re.findall(r"\d{8}-\d{6}-lenet5-shapes-[0-9a-f]{16}", text))
    assert shown <= before and {d.name for d in app_runs.iterdir()} == before, "a run started before Start"

    # run 1: LeNet5 on shapes, three epochs of 6,000 images in batches of 16, watched with the
    # fastest live refresh (1 s; charts every CHARTS_EVERY s) so the charts change while it trains
    pick_segment(page, "train_refresh", "1 s")
    assert "status every 1 s" in main_text(page)
    _set_number(page, "Epochs", 3)
    _set_number(page, "Train images (0 = all)", 6000)  # 375 steps an epoch: a few chart redraws, not minutes
    _set_number(page, "Test images (0 = all)", 1000)
    slider = page.get_by_role("slider").filter(has=page.locator("xpath=.")).nth(1)  # lr=0, batch=1
    slider.focus()
    for _ in range(3):  # 128 -> 64 -> 32 -> 16
        slider.press("ArrowLeft")
    known = set(re.findall(r"\d{8}-\d{6}-lenet5-shapes-[0-9a-f]{16}", main_text(page)))
    rid = _start(page, known)
    while_running: list[str] = []  # loss captions seen while the status said "running"
    deadline = time.time() + 600  # a cap for a much slower machine than expected, not a measurement
    while time.time() < deadline:
        status, cap = _status(page, rid), _loss_caption(page, rid)
        if status == "finished":
            break
        if status == "running" and cap and cap not in while_running:
            while_running.append(cap)
        time.sleep(0.25)
    assert _status(page, rid) == "finished", main_text(page)[-2000:]
    wait_idle(page)  # the rerun that draws the ended run's view
    steps = [int(m.group(1)) for m in (re.search(r"(\d+) steps logged", c) for c in while_running) if m]
    assert len(steps) >= 2 and steps[-1] > steps[0], f"the loss chart never changed while training: {while_running}"
    final = re.search(r"(\d+) steps logged", _loss_caption(page, rid))
    assert final and int(final.group(1)) >= steps[-1]  # the ended run's chart shows all of it
    box = page.locator(f".st-key-train_run_{rid}")
    assert box.locator('[data-testid="stPlotlyChart"]').count() == 3
    assert "test" in box.inner_text() and "%" in box.inner_text()
    assert not exceptions(page)
    page.screenshot(path=str(artifacts / "browser-train-finished.png"), full_page=True)

    # run 2: many epochs, then Stop
    _open_form(page)
    _set_number(page, "Epochs", 200)
    rid2 = _start(page, known | {rid})
    deadline = time.time() + 120
    while time.time() < deadline and _status(page, rid2) != "running":
        time.sleep(0.3)
    assert _status(page, rid2) == "running"
    page.wait_for_timeout(1500)
    page.screenshot(path=str(artifacts / "browser-train-running.png"), full_page=True)
    box2 = page.locator(f".st-key-train_run_{rid2}")

    # Paused: the live view stands still while the run trains on (the run's log grows); Refresh redraws it
    pick_segment(page, "train_refresh", "Paused")
    wait_idle(page)
    progress = box2.locator('[data-testid="stProgress"]')
    shown = progress.inner_text()
    log = app_runs / rid2 / "metrics.jsonl"
    steps_logged = log.read_text().count('"kind": "step"')
    deadline = time.time() + 120
    while time.time() < deadline and log.read_text().count('"kind": "step"') < steps_logged + 5:
        time.sleep(0.2)  # waits on the run's own log, not a count of seconds
    assert log.read_text().count('"kind": "step"') >= steps_logged + 5, "the run did not log 5 more steps"
    assert progress.inner_text() == shown, "a paused live view redrew"
    page.locator(".st-key-train_refresh_now button").first.click()
    wait_idle(page)
    assert progress.inner_text() != shown, "Refresh did not redraw the paused live view"
    pick_segment(page, "train_refresh", "1 s")

    box2.get_by_role("button", name=re.compile("Stop")).click()
    deadline = time.time() + 60
    while time.time() < deadline and _status(page, rid2) != "stopped":
        time.sleep(0.3)
    assert _status(page, rid2) == "stopped", main_text(page)[-2000:]
    wait_idle(page)
    assert _status(page, rid) == "finished"  # both runs visible
    assert not exceptions(page)
    page.screenshot(path=str(artifacts / "browser-train-stopped.png"), full_page=True)


def _select_value(page, key: str) -> str:
    """The shown value of the selectbox with widget key `key` (1.67: a combobox input)."""
    box = page.locator(f".st-key-{key}")
    inp = box.locator("input")
    if inp.count():
        return inp.first.input_value() or inp.first.get_attribute("aria-label") or box.inner_text()
    return box.inner_text()


def test_runs_page_cell_click_and_scrubber(app_page, app_url, app_runs, artifacts):
    """A click on a confusion-matrix cell picks that (true, predicted) pair; the scrubber tab draws maps."""
    from cnnviz.train import TrainConfig, fit

    # a tiny finished run on disk, in the server's runs folder
    from cnnviz import runs

    # a tiny finished run on disk, in the server's runs folder
    events = list(fit(TrainConfig(model="lenet5", dataset="shapes", epochs=2, batch_size=64, device="cpu",
                                  limit_train=512, limit_test=200),
                      run_dir=runs.layout.new_run_dir("lenet5", "shapes", app_runs)))
    assert events[-1].kind == "done" and events[-1].data["status"] == "finished"
    rid = events[0].data["run_id"]
    page = app_page
    goto_via_sidebar(page, app_url, "runs")
    assert not exceptions(page)
    # the newest run (ours) is the one inspected by default
    assert rid in _select_value(page, "runs_one")
    classes = events[0].data["classes"]
    plot = page.locator(".st-key-runs_cm rect.nsewdrag").first
    plot.wait_for()
    plot.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    bb = plot.bounding_box()
    k, r, c = len(classes), 2, 5
    page.mouse.click(bb["x"] + (c + 0.5) * bb["width"] / k, bb["y"] + (r + 0.5) * bb["height"] / k)
    page.wait_for_timeout(800)
    wait_idle(page)
    assert _select_value(page, "runs_true") == classes[r]
    assert _select_value(page, "runs_pred") == classes[c]
    text = main_text(page)
    assert f"{classes[r]} was predicted as {classes[c]}" in text or \
        f"class {classes[r]} predicted as {classes[c]}" in text
    assert not exceptions(page)
    page.get_by_role("tab", name="Feature maps across epochs").click()
    wait_idle(page)
    assert "conv_unit.0 at epoch 2" in main_text(page)
    assert page.locator('[data-testid="stMain"] [data-testid="stImage"] img').count() >= 2
    assert not exceptions(page)
    page.screenshot(path=str(artifacts / "browser-runs-inspect.png"))
