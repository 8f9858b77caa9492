"""AppTest of pages/training.py: nothing starts before Start, bad input is one line, a tiny run
streams to the end with its charts, a second run stops from its Stop button."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnnviz.train import jobs, runs
from ui import live

from .pagetest import open_page, page_path

PAGE = page_path("training")


@pytest.fixture(autouse=True)
def _own_runs_dir(monkeypatch, tmp_path):
    """Each test sees only its own runs on disk (other test files leave runs, some ended in error
    on purpose). Jobs of this process still show: the registry is process-wide by design."""
    monkeypatch.setenv("CNNVIZ_RUNS", str(tmp_path / "runs"))


def _page() -> AppTest:
    return open_page(PAGE, timeout=60)


def _tiny(at: AppTest, **kw) -> None:
    """Preset the form (a form's widgets only take effect on submit, like a user's typing)."""
    vals = {"train_model": "lenet5", "train_dataset": "shapes", "train_epochs": 1, "train_batch": 32,
            "train_device": "cpu", "train_limit_train": 192, "train_limit_test": 64, **kw}
    for k, v in vals.items():
        at.session_state[k] = v


def _not_started(at: AppTest) -> list[str]:
    """The form's own errors (other boxes belong to earlier jobs of this test process)."""
    return [e.value for e in at.error if "Not started" in e.value]


def _start(at: AppTest) -> str:
    before = {j.run_id for j in jobs.list_jobs()}
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    assert not [e.value for e in at.error if "Not started" in e.value]
    new = [j for j in jobs.list_jobs() if j.run_id not in before]
    assert len(new) == 1, "Start should start exactly one run"
    return new[0].run_id


def _header(at: AppTest, rid: str) -> str:
    heads = [m.value for m in at.markdown if rid in m.value and m.value.startswith("####")]
    return heads[0] if heads else ""


def _poll(at: AppTest, rid: str, until: str, timeout: float = 120) -> str:
    deadline = time.time() + timeout
    head = ""
    while time.time() < deadline:
        at.run()
        assert not at.exception, at.exception
        head = _header(at, rid)
        if until in head:
            return head
        time.sleep(0.3)
    pytest.fail(f"run {rid} never reached {until!r}; last header {head!r}")


def test_page_renders_the_form_and_trains_nothing():
    n_jobs = len(jobs.list_jobs())
    n_runs = len(runs.list_runs())
    at = _page()
    assert at.button(key="train_start") is not None
    assert "lenet5 (LeNet)" in at.selectbox(key="train_model").options
    assert "shapes" in at.selectbox(key="train_dataset").options
    assert "auto" in at.selectbox(key="train_device").options
    assert len(jobs.list_jobs()) == n_jobs and len(runs.list_runs()) == n_runs


def test_a_run_on_the_builtin_digits_with_the_digit_safe_preset_trains():
    at = _page()
    assert "digits" in at.selectbox(key="train_dataset").options
    assert {"tutorial-mnist", "digit-safe"} <= set(at.selectbox(key="train_augment").options)
    _tiny(at, train_dataset="digits", train_augment="digit-safe")
    rid = _start(at)
    head = _poll(at, rid, "finished")
    assert "digits" in rid or "digits" in head
    cfg = runs.load_run(runs.runs_root() / rid).config
    assert cfg["dataset"] == "digits" and cfg["augment"] == "digit-safe"


def test_models_offered_fit_small_inputs():
    from cnnviz import models

    at = _page()
    offered = at.selectbox(key="train_model").options
    names = [o.split(" (")[0] for o in offered]
    assert {"lenet5", "resnet_small", "resnet18_cifar"} <= set(names)
    assert all(models.info(n).input_size <= 64 for n in names)


def test_bad_input_is_one_line_and_starts_nothing():
    at = _page()
    _tiny(at, train_dataset="folder or zip (path below)", train_path="/no/such/folder")
    n = len(jobs.list_jobs())
    at.button(key="train_start").click().run()
    assert not at.exception
    said = _not_started(at)
    assert len(said) == 1 and "/no/such/folder" in said[0]
    assert len(jobs.list_jobs()) == n
    # an empty path is explained too
    _tiny(at, train_dataset="folder or zip (path below)", train_path="")
    at.button(key="train_start").click().run()
    said = _not_started(at)
    assert len(said) == 1 and "path" in said[0].lower()


def test_studio_pipeline_is_offered_when_the_studio_set_one():
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["augment_pipeline_json"] = '{"steps": []}'
    at.run()
    assert "studio pipeline" in at.selectbox(key="train_augment").options


def test_tiny_run_streams_to_finished_with_charts():
    at = _page()
    _tiny(at)
    rid = _start(at)
    head = _poll(at, rid, "finished")
    assert "finished" in head
    keys = {c.proto.id for c in at.get("plotly_chart")}
    assert len(at.get("plotly_chart")) >= 3, keys
    caps = " ".join(c.value for c in at.caption)
    assert "epoch 1: train" in caps  # the accuracy caption quotes the finished epoch
    snap = jobs.get_job(rid).snapshot()
    assert snap["status"] == "finished" and len(snap["epochs"]) == 1
    # ended runs offer resume, delete and the downloads
    assert at.button(key=f"train_delete_{rid}") is not None
    # delete asks first, then removes the run directory
    at.button(key=f"train_delete_{rid}").click().run()
    assert any("can't be undone" in w.value for w in at.warning)
    assert Path(snap["run_dir"]).is_dir()
    at.button(key=f"train_delete_yes_{rid}").click().run()
    assert not at.exception
    assert not Path(snap["run_dir"]).exists()
    assert _header(at, rid) == ""


def test_second_run_stops_from_its_button_in_a_refreshed_page():
    at = _page()
    _tiny(at, train_epochs=200, train_limit_train=1024)
    rid = _start(at)
    _poll(at, rid, "running")
    # a refreshed page (a new session) reattaches to the live run and can stop it
    fresh = _page()
    assert "running" in _header(fresh, rid)
    fresh.button(key=f"train_stop_{rid}").click().run()
    assert not fresh.exception
    head = _poll(at, rid, "stopped", timeout=60)
    assert "stopped" in head
    run = runs.load_run(jobs.get_job(rid).run_dir)
    assert run.status == "stopped" and run.last_checkpoint is not None
    # resume is offered for a stopped run
    assert any(b.key == f"train_resume_{rid}" for b in at.button)


def test_missing_dataset_is_said_before_starting(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNVIZ_DATA", str(tmp_path / "empty-data"))
    monkeypatch.setenv("CNNVIZ_CACHE", str(tmp_path / "empty-cache"))
    at = _page()
    _tiny(at, train_dataset="cifar10")
    n = len(jobs.list_jobs())
    at.button(key="train_start").click().run()
    assert not at.exception
    said = _not_started(at)
    assert len(said) == 1 and "cifar10" in said[0]
    assert len(jobs.list_jobs()) == n


def test_diverged_run_shows_the_message_and_advice(monkeypatch):
    """A batch made NaN on purpose (as the engine's own test does) ends 'diverged'; the page says why."""

    from cnnviz.train import engine

    class Poison(engine.Normalizer):
        def from_uint8(self, x):
            return super().from_uint8(x) * float("nan")

    monkeypatch.setattr(engine, "Normalizer", Poison)
    at = _page()
    _tiny(at)
    rid = _start(at)
    head = _poll(at, rid, "diverged")
    assert "diverged" in head
    errors = [e.value for e in at.error]
    assert any("loss became" in e.lower() and "step" in e for e in errors), errors
    assert any("learning rate" in i.value for i in at.info)


def _loss_captions(at: AppTest) -> list[str]:
    """The loss charts' captions on the page (other runs of this test process are listed too)."""
    return [c.value for c in at.caption if "steps logged" in c.value]


def test_live_charts_hold_their_data_between_chart_redraws_and_the_status_does_not():
    """With a 30 s refresh the charts renew every few minutes: two runs of the page a second apart
    show new status figures but the very same loss chart (so the browser need not redraw it); when
    the run ends, the charts show all of it."""
    at = _page()
    assert at.segmented_control(key="train_refresh").value == live.DEFAULT_REFRESH
    assert any(live.describe_refresh("auto") in c.value for c in at.caption)
    at.segmented_control(key="train_refresh").set_value(30).run()
    assert any(f"refresh every 30 s (charts every {live.chart_period(30):g} s)" in c.value for c in at.caption)
    _tiny(at, train_epochs=3, train_batch=16, train_limit_train=0)  # 1,250 steps an epoch
    rid = _start(at)
    deadline = time.time() + 60
    while time.time() < deadline and not jobs.get_job(rid).snapshot()["steps"]:
        time.sleep(0.2)
    at.run()
    held = len(at.session_state["train_chart_holds"][rid].steps)
    assert held and any(f" {held} steps logged" in c for c in _loss_captions(at)), _loss_captions(at)
    time.sleep(1.5)
    at.run()
    now = len(jobs.get_job(rid).snapshot()["steps"])
    assert now > held  # the run moved on...
    assert len(at.session_state["train_chart_holds"][rid].steps) == held  # ...and its charts did not
    assert any(f" {held} steps logged" in c for c in _loss_captions(at))
    assert not any(f" {now} steps logged" in c for c in _loss_captions(at))
    at.button(key=f"train_stop_{rid}").click().run()
    _poll(at, rid, "stopped", timeout=60)
    n = len(jobs.get_job(rid).snapshot()["steps"])
    assert any(f" {n} steps logged" in c for c in _loss_captions(at))  # the ended run's charts show all of it
