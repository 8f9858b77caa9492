"""AppTest of pages/training.py: nothing starts before Start, bad input is one line, a tiny run
streams to the end with its charts, a second run stops from its Stop button.

Nothing here depends on how fast this machine trains: a run the page starts is held at a
`jobs.StepGate` (it logs exactly the steps the test allows), the charts' clock is the test's, and
a run's end is waited for on its thread, not by re-running the page until a deadline. Each test
has its own runs folder and its jobs are stopped and forgotten after it (tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from cnnviz.train import jobs, runs
from ui import live

from .pagetest import open_page, page_path

PAGE = page_path("training")
END_S = 120  # a safety cap on waiting for a run to end, never a measure of progress


def _page() -> AppTest:
    return open_page(PAGE, timeout=60)


def _tiny(at: AppTest, **kw) -> None:
    """Preset the form (a form's widgets only take effect on submit, like a user's typing)."""
    vals = {"train_model": "lenet5", "train_dataset": "shapes", "train_epochs": 1, "train_batch": 32,
            "train_device": "cpu", "train_limit_train": 192, "train_limit_test": 64, **kw}
    for k, v in vals.items():
        at.session_state[k] = v


def _not_started(at: AppTest) -> list[str]:
    """The form's own errors (other error boxes belong to runs listed on the page)."""
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


def _gate(monkeypatch, steps: int = 0) -> jobs.StepGate:
    """The next run the page starts logs `steps` steps, then waits at the returned gate for more."""
    gate = jobs.StepGate(steps)
    real = jobs.start_job

    def start_job(config, *args, **kw):
        return real(config, *args, gate=gate, **kw)

    monkeypatch.setattr(jobs, "start_job", start_job)
    return gate


def _ended(at: AppTest, rid: str) -> str:
    """Wait for run `rid`'s thread to end, then run the page: the run's header."""
    job = jobs.get_job(rid)
    job.join(END_S)
    assert not job.is_alive(), f"run {rid} did not end within {END_S} s; {job.snapshot()['status']!r}"
    at.run()
    assert not at.exception, at.exception
    return _header(at, rid)


class _Clock:
    """A clock the test moves (replaces ui.live.clock, which ChartHold reads)."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def test_page_renders_the_form_and_trains_nothing():
    n_jobs = len(jobs.list_jobs())
    n_runs = len(runs.list_runs())
    at = _page()
    assert at.button(key="train_start") is not None
    assert "lenet5 (LeNet)" in at.selectbox(key="train_model").options
    assert "shapes" in at.selectbox(key="train_dataset").options
    assert "auto" in at.selectbox(key="train_device").options
    assert len(jobs.list_jobs()) == n_jobs and len(runs.list_runs()) == n_runs


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


def test_tiny_run_streams_to_finished_with_charts(monkeypatch):
    gate = _gate(monkeypatch, 3)
    at = _page()
    _tiny(at)
    rid = _start(at)
    assert gate.wait_held() == 3
    at.run()  # the live view while the run trains: status and charts so far
    assert not at.exception, at.exception
    assert "running" in _header(at, rid)
    assert len(at.get("plotly_chart")) == 3
    assert _loss_captions(at) and " 3 steps logged" in _loss_captions(at)[0]
    gate.open()
    head = _ended(at, rid)
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


def test_second_run_stops_from_its_button_in_a_refreshed_page(monkeypatch):
    gate = _gate(monkeypatch, 2)  # held after two steps: still running whenever the test looks
    at = _page()
    _tiny(at, train_epochs=200, train_limit_train=1024)
    rid = _start(at)
    assert gate.wait_held() == 2
    at.run()
    assert "running" in _header(at, rid)
    # a refreshed page (a new session) reattaches to the live run and can stop it
    fresh = _page()
    assert "running" in _header(fresh, rid)
    fresh.button(key=f"train_stop_{rid}").click().run()
    assert not fresh.exception
    head = _ended(at, rid)
    assert "stopped" in head
    run = runs.load_run(jobs.get_job(rid).run_dir)
    assert run.status == "stopped" and run.last_checkpoint is not None
    assert len(run.steps) == 2  # it stopped where the gate held it
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
    head = _ended(at, rid)  # the first step's loss is NaN: the run ends by itself
    assert "diverged" in head
    errors = [e.value for e in at.error]
    assert any("loss became" in e.lower() and "step" in e for e in errors), errors
    assert any("learning rate" in i.value for i in at.info)


def _loss_captions(at: AppTest) -> list[str]:
    """The loss charts' captions on the page."""
    return [c.value for c in at.caption if "steps logged" in c.value]


def _metric(at: AppTest, label: str) -> str:
    found = [m.value for m in at.metric if m.label == label]
    assert len(found) == 1, [m.label for m in at.metric]
    return found[0]


def test_live_charts_hold_their_data_between_chart_redraws_and_the_status_does_not(monkeypatch):
    """With a 30 s refresh the charts renew every 90 s: a page run less than that after the last
    renewal shows the new status figures but the very same loss chart (so the browser need not
    redraw it); one a whole chart period later, and the ended run's view, show all of it.

    The run logs exactly the steps the test allows (a StepGate) and the charts' clock is the
    test's, so the outcome does not depend on the machine's speed or load."""
    clock = _Clock()
    monkeypatch.setattr(live, "clock", clock)
    gate = _gate(monkeypatch, 0)  # held at its start: no step logged until the test allows one
    at = _page()
    assert at.segmented_control(key="train_refresh").value == live.DEFAULT_REFRESH
    assert any(live.describe_refresh("auto") in c.value for c in at.caption)
    at.segmented_control(key="train_refresh").set_value(30).run()
    period = live.chart_period(30)
    assert any(f"refresh every 30 s (charts every {period:g} s)" in c.value for c in at.caption)
    _tiny(at, train_epochs=3, train_batch=16, train_limit_train=0)  # 1,250 steps an epoch
    rid = _start(at)
    assert gate.wait_held() == 0
    gate.allow(2)
    assert gate.wait_held() == 2
    at.run()  # the first steps show at once, not a chart period later
    held = len(at.session_state["train_chart_holds"][rid].steps)
    assert held == 2
    assert len(_loss_captions(at)) == 1 and f" {held} steps logged" in _loss_captions(at)[0], _loss_captions(at)

    gate.allow(3)  # the run moves on...
    assert gate.wait_held() == 5
    clock.advance(period - 1)  # ...and less than a chart period passes
    at.run()
    snap = jobs.get_job(rid).snapshot()
    now = len(snap["steps"])
    assert now == 5 and snap["alive"]
    assert _metric(at, "Loss (last step)") == f"{snap['steps'][-1]['loss']:.3f}"  # the status follows the run...
    assert len(at.session_state["train_chart_holds"][rid].steps) == held  # ...its charts do not
    assert len(_loss_captions(at)) == 1 and f" {held} steps logged" in _loss_captions(at)[0], _loss_captions(at)

    clock.advance(1)  # a whole chart period after the last renewal: the charts renew
    at.run()
    assert len(at.session_state["train_chart_holds"][rid].steps) == now
    assert len(_loss_captions(at)) == 1 and f" {now} steps logged" in _loss_captions(at)[0], _loss_captions(at)

    gate.allow(1)  # one step more than the charts show, then Stop
    assert gate.wait_held() == 6
    at.button(key=f"train_stop_{rid}").click().run()
    assert "stopped" in _ended(at, rid)
    n = len(jobs.get_job(rid).snapshot()["steps"])
    assert n == 6
    assert any(f" {n} steps logged" in c for c in _loss_captions(at))  # the ended run's charts show all of it


def test_page_lists_only_the_jobs_of_its_runs_folder(tmp_path):
    """A job of this process whose run lies in another folder (another runs root) is not listed."""
    from cnnviz.train import TrainConfig

    cfg = TrainConfig(model="lenet5", dataset="shapes", epochs=1, batch_size=32, device="cpu",
                      limit_train=192, limit_test=64)
    gate = jobs.StepGate(0)
    other = jobs.start_job(cfg, runs_root=tmp_path / "elsewhere", gate=gate)
    gate.wait_held()
    assert other.is_alive() and other in jobs.list_jobs()
    assert other not in jobs.list_jobs(runs.runs_root()) and other in jobs.list_jobs(tmp_path / "elsewhere")
    at = _page()
    assert _header(at, other.run_id) == ""
    assert any("No run started on this server yet" in i.value for i in at.info)
